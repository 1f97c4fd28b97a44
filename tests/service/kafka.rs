//! A real Kafka-protocol broker for the tests: Tansu, started on a free port, and `kcat` as a
//! producer and consumer. Both come from `$TESTPEERS_HOME/bin` (default
//! `~/.cache/yujing-testpeers/bin`); `.ci/peers.sh` installs them.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn peers_bin(name: &str) -> PathBuf {
    super::peers::ensure();
    let home = std::env::var("TESTPEERS_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/yujing-testpeers")
        });
    let p = home.join("bin").join(name);
    assert!(
        p.exists(),
        "{} is missing: run .ci/peers.sh (it installs Tansu and kcat)",
        p.display()
    );
    p
}

pub struct Broker {
    child: Child,
    pub addr: String,
}

impl Broker {
    pub fn start() -> Broker {
        let port = yujing_connectors::broker::free_port().expect("port");
        let addr = format!("127.0.0.1:{port}");
        let url = format!("tcp://{addr}");
        let child = Command::new(peers_bin("tansu"))
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let start = Instant::now();
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "tansu did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker { child, addr }
    }

    /// Create a topic with `partitions` partitions (auto-created topics have one).
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let ok = Command::new(peers_bin("tansu"))
            .args([
                "topic",
                "create",
                "--broker",
                &format!("tcp://{}", self.addr),
                "--partitions",
                &partitions.to_string(),
                topic,
            ])
            .stdout(Stdio::null())
            .status()
            .expect("tansu topic create");
        assert!(ok.success(), "cannot create topic {topic}");
    }

    /// Produce `key|value` lines with kcat.
    pub fn produce(&self, topic: &str, lines: &[String]) {
        let mut c = Command::new(peers_bin("kcat"))
            .args(["-P", "-b", &self.addr, "-t", topic, "-K", "|"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("kcat -P");
        {
            let stdin = c.stdin.as_mut().expect("stdin");
            for l in lines {
                writeln!(stdin, "{l}").expect("write");
            }
        }
        drop(c.stdin.take());
        assert!(c.wait().expect("kcat").success(), "kcat -P failed");
    }

    /// Everything on a topic so far, formatted by kcat's `-f`.
    pub fn consume(&self, topic: &str, format: &str) -> String {
        let out = Command::new(peers_bin("kcat"))
            .args([
                "-C",
                "-b",
                &self.addr,
                "-t",
                topic,
                "-o",
                "beginning",
                "-e",
                "-q",
                "-f",
                format,
            ])
            .output()
            .expect("kcat -C");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Wait until `topic` holds something `pred` likes.
    pub fn wait_for(
        &self,
        topic: &str,
        format: &str,
        secs: u64,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let start = Instant::now();
        loop {
            let got = self.consume(topic, format);
            if pred(&got) {
                return got;
            }
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "timed out waiting for {what}; {topic} holds:\n{got}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
