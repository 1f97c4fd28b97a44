//! Shared harness for the live-service tests: a config directory, the real `yujing run` binary on
//! port 0, `mosquitto_pub` as the device, and a webhook receiver that verifies signatures.

#![allow(dead_code)]

pub mod hj212;
pub mod kafka;
pub mod peers;
pub mod pg;

use axum::extract::{Path as AxPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const SECRET: &str = "test-hook-secret";
pub const OPERATOR: &str = "tok-operator";
pub const ZJJ: &str = "tok-zjj";
pub const SLJ: &str = "tok-slj";
pub const ADMIN: &str = "tok-admin";

pub const SITES: &str = "departments:
  - {id: zjj, name: 住房和城乡建设局}
  - {id: slj, name: 水利局}
  - {id: dcs, name: 县政府督查室}
sites:
  - id: cs-01
    name: 城东工地
    kind: construction
    department: zjj
    devices:
      - {id: cs-01-noise, metrics: [noise]}
  - id: cs-02
    name: 城西工地
    kind: construction
    department: zjj
    devices:
      - {id: cs-02-noise, metrics: [noise]}
  - id: cs-03
    name: 城北工地
    kind: construction
    department: zjj
    devices:
      - {id: cs-03-noise, metrics: [noise]}
  - id: rv-01
    name: 城关水文站
    kind: water
    department: slj
    params: {warning_level_m: 42.0}
    devices:
      - {id: rv-01-gauge, metrics: [water_level]}
";

pub const RULES: &str = "rules:
  - id: noise_max
    title: 施工噪声超标
    scope: {kind: construction}
    metric: noise
    window: {type: tumbling, size: 1m}
    aggregate: max
    above: {yellow: 70, red: 85}
    message: \"{site.name}噪声最大值{value:.1}dB(A)，超过{level}阈值{threshold}\"
  - id: water_level
    title: 水位超警戒
    scope: {kind: water}
    metric: water_level
    window: {type: tumbling, size: 1m}
    aggregate: max
    above: {red: site.warning_level_m}
    message: \"{site.name}水位{value:.2}米，超过警戒水位{threshold}米\"
";

/// One construction site whose contractor has a credit code (tickets match it), and a gauge.
pub const SITES_WITH_ENTERPRISE: &str = "departments:
  - {id: zjj, name: 住房和城乡建设局}
  - {id: slj, name: 水利局}
  - {id: dcs, name: 县政府督查室}
sites:
  - id: cs-01
    name: 城东工地
    kind: construction
    department: zjj
    keywords: [东湖路]
    enterprises:
      - {credit_code: 91330100MA27XL3Q2U, name: 某建设有限公司}
    devices:
      - {id: cs-01-noise, metrics: [noise]}
  - id: rv-01
    name: 城关水文站
    kind: water
    department: slj
    params: {warning_level_m: 42.0}
    devices:
      - {id: rv-01-gauge, metrics: [water_level]}
";

/// Three noise tickets within a minute at a construction site: yellow.
pub const TICKET_RULES: &str = "rules:
  - id: noise_complaints
    title: 工地噪声投诉集中
    scope: {kind: construction}
    metric: tickets.noise
    window: {type: tumbling, size: 1m}
    aggregate: count
    above: {yellow: 2}
    message: \"{site.name}噪声投诉{value:.0}件\"
";

pub fn routes(hook: &str, deadlines: &str) -> String {
    format!(
        "channels:
  - {{id: zjj-hook, type: webhook, url: \"{hook}/zjj\", secret: hook}}
  - {{id: slj-hook, type: webhook, url: \"{hook}/slj\", secret: hook}}
  - {{id: dcs-hook, type: webhook, url: \"{hook}/dcs\", secret: hook}}
departments:
  zjj: {{channels: [zjj-hook]}}
  slj: {{channels: [slj-hook]}}
  dcs: {{channels: [dcs-hook]}}
supervisor: dcs
{deadlines}
routes:
  - to: [site]
"
    )
}

pub fn token_entry(name: &str, role: &str, token: &str) -> String {
    format!(
        "[[tokens]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{}\"\n",
        yujing::dispatch::channel::token_hash(token)
    )
}

/// A config directory for one test: its own topic prefix and client id on the broker.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub prefix: String,
    pub mqtt_port: u16,
    /// Extra `mosquitto_pub` arguments (TLS, credentials).
    pub pub_args: Vec<String>,
}

impl Setup {
    pub fn new(name: &str, hook: &str, mqtt_port: u16, deadlines: &str) -> Setup {
        Self::with_mqtt(name, hook, mqtt_port, deadlines, "host = \"127.0.0.1\"")
    }

    /// `mqtt` replaces the `host = ...` line of the [mqtt] table (credentials, TLS).
    pub fn with_mqtt(name: &str, hook: &str, mqtt_port: u16, deadlines: &str, mqtt: &str) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let prefix = format!("t{}-{name}", std::process::id());
        let p = dir.path();
        std::fs::write(p.join("sites.yaml"), SITES).expect("sites");
        std::fs::create_dir(p.join("rules")).expect("rules dir");
        std::fs::write(p.join("rules/test.yaml"), RULES).expect("rules");
        std::fs::write(p.join("routes.yaml"), routes(hook, deadlines)).expect("routes");
        let toml = format!(
            "[engine]
timezone = \"Asia/Shanghai\"
out_of_orderness = \"0s\"
[http]
listen = \"127.0.0.1:0\"
[mqtt]
{mqtt}
port = {mqtt_port}
client_id = \"{prefix}\"
topics = [\"{prefix}/yujing/sensors/+/+\"]
dead_letter_topic = \"{prefix}/dead-letter\"
[store]
path = \"data/yujing.db\"
dead_letter = \"data/dead.jsonl\"
[dispatch]
max_attempts = 50
retry_base = \"100ms\"
retry_max = \"500ms\"
timeout = \"5s\"
[secrets]
hook = \"{SECRET}\"
{}{}{}{}",
            token_entry("ops", "operator", OPERATOR),
            token_entry("zjj-duty", "department:zjj", ZJJ),
            token_entry("slj-duty", "department:slj", SLJ),
            token_entry("root", "admin", ADMIN),
        );
        std::fs::write(p.join("yujing.toml"), toml).expect("toml");
        Setup {
            dir,
            prefix,
            mqtt_port,
            pub_args: vec!["-h".into(), "127.0.0.1".into()],
        }
    }

    /// Start `mosquitto_sub` on a topic under this test's prefix; it exits after `count`
    /// messages (or 15 s). Join the handle for what it printed.
    pub fn subscribe(&self, topic: &str, count: usize) -> std::thread::JoinHandle<String> {
        self.subscribe_exact(&format!("{}/{topic}", self.prefix), count)
    }

    /// As [`Setup::subscribe`], for a topic outside the test's prefix.
    pub fn subscribe_exact(&self, topic: &str, count: usize) -> std::thread::JoinHandle<String> {
        let child = Command::new("mosquitto_sub")
            .args(&self.pub_args)
            .args(["-p", &self.mqtt_port.to_string(), "-q", "1", "-W", "15"])
            .args(["-C", &count.to_string(), "-t", topic])
            .stdout(Stdio::piped())
            .spawn()
            .expect("mosquitto_sub");
        // give it a moment to subscribe
        std::thread::sleep(Duration::from_millis(300));
        std::thread::spawn(move || {
            child
                .wait_with_output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        })
    }

    pub fn write_routes(&self, text: &str) {
        std::fs::write(self.path().join("routes.yaml"), text).expect("routes");
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Publish one message with QoS 1 as a device would.
    pub fn publish(&self, site: &str, device: &str, payload: &str) {
        let topic = format!("{}/yujing/sensors/{site}/{device}", self.prefix);
        let st = Command::new("mosquitto_pub")
            .args(&self.pub_args)
            .args(["-p", &self.mqtt_port.to_string(), "-q", "1"])
            .args(["-t", &topic, "-m", payload])
            .status()
            .expect("mosquitto_pub (install mosquitto-clients)");
        assert!(st.success(), "mosquitto_pub failed");
    }

    /// Publish many messages in one connection (one per line of stdin).
    pub fn publish_lines(&self, site: &str, device: &str, payloads: &[String]) {
        use std::io::Write;
        let topic = format!("{}/yujing/sensors/{site}/{device}", self.prefix);
        let mut child = Command::new("mosquitto_pub")
            .args(&self.pub_args)
            .args(["-p", &self.mqtt_port.to_string(), "-q", "1"])
            .args(["-t", &topic, "-l"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("mosquitto_pub");
        {
            let stdin = child.stdin.as_mut().expect("stdin");
            for p in payloads {
                writeln!(stdin, "{p}").expect("write");
            }
        }
        drop(child.stdin.take());
        assert!(child.wait().expect("wait").success());
    }
}

/// `{"ts": ms, "metric": m, "value": v}`
pub fn reading(ts: i64, metric: &str, value: f64) -> String {
    format!("{{\"ts\": {ts}, \"metric\": \"{metric}\", \"value\": {value}}}")
}

/// A minute boundary a little in the past, so windows close as time moves on.
pub fn base_minute() -> i64 {
    let now = yujing::store::now_ms();
    (now / 60_000 - 10) * 60_000
}

/// The running service.
pub struct Service {
    pub child: Child,
    pub base: String,
    /// The HJ 212 listener's address, when the config has one.
    pub hj212: Option<String>,
    pub http: reqwest::Client,
    log: PathBuf,
}

impl Service {
    pub fn start(dir: &Path) -> Service {
        let mut child = Command::new(env!("CARGO_BIN_EXE_yujing"))
            .args(["run", "-c"])
            .arg(dir.join("yujing.toml"))
            .args(["--log", "info"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start yujing run");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut base = String::new();
        let mut hj212 = None;
        for line in lines.by_ref() {
            let line = line.expect("read stdout");
            if let Some(a) = line.strip_prefix("yujing: HJ 212 listening on ") {
                hj212 = Some(a.trim().to_string());
            }
            if let Some(b) = line.strip_prefix("yujing: listening on ") {
                base = b.trim().to_string();
                break;
            }
        }
        // keep draining stdout so the child never blocks on a full pipe
        std::thread::spawn(move || for _ in lines {});
        let stderr = child.stderr.take().expect("stderr");
        let log = dir.join("service.log");
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .expect("log file");
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(f, "{l}");
            }
        });
        if base.is_empty() {
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(300));
            let log = std::fs::read_to_string(dir.join("service.log")).unwrap_or_default();
            panic!("yujing run did not start:\n{log}");
        }
        Service {
            child,
            base,
            hj212,
            http: reqwest::Client::new(),
            log: dir.join("service.log"),
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn post(&self, path: &str, token: &str, body: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .unwrap_or_default()
    }

    /// A counter's value from /metrics (0 when absent).
    pub async fn metric(&self, line_prefix: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find(|l| l.starts_with(line_prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    /// Wait until MQTT is connected (readyz).
    pub async fn ready(&self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.base)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("service not ready after 20 s");
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for the drain.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("--- service log (last 40 lines) ---");
            for l in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{l}");
            }
            let dead = self.log.with_file_name("data").join("dead.jsonl");
            eprintln!(
                "--- dead letters ---\n{}",
                std::fs::read_to_string(dead).unwrap_or_default()
            );
        }
    }
}

/// One webhook as received.
#[derive(Clone, Debug)]
pub struct Got {
    pub department: String,
    pub key: String,
    pub signature_ok: bool,
    pub doc: Value,
    pub at: Instant,
}

/// A webhook endpoint that checks `X-Yujing-Signature` and records what arrives; it can be
/// made to fail (503) or to answer slowly (after it has recorded the delivery).
#[derive(Clone, Default)]
pub struct Receiver {
    pub got: Arc<Mutex<Vec<Got>>>,
    pub down: Arc<AtomicBool>,
    pub delay_ms: Arc<AtomicU64>,
    pub refused: Arc<AtomicU64>,
}

async fn hook(
    State(r): State<Receiver>,
    AxPath(department): AxPath<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    if r.down.load(Ordering::SeqCst) {
        r.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let signature_ok = yujing::dispatch::channel::verify_webhook(
        SECRET,
        &body,
        &h("x-yujing-timestamp"),
        &h("x-yujing-signature"),
        now,
        yujing::dispatch::channel::WEBHOOK_TOLERANCE_S,
    )
    .is_ok();
    let doc: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Ok(mut g) = r.got.lock() {
        g.push(Got {
            department,
            key: h("x-yujing-delivery"),
            signature_ok,
            doc,
            at: Instant::now(),
        });
    }
    // a slow answer: the receiver has the warning, the sender does not know yet
    let delay = r.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    StatusCode::OK
}

impl Receiver {
    /// Start on a free port; returns the base URL.
    pub async fn start(&self) -> String {
        let app = axum::Router::new()
            .route("/{department}", post(hook))
            .with_state(self.clone());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        format!("http://{addr}")
    }

    pub fn all(&self) -> Vec<Got> {
        self.got.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// The first webhook carrying a transition of `kind` (`raise`, `clear`, ...) of warning
    /// `id` (any warning when `None`), waiting for it up to `secs`.
    pub async fn wait_for_transition(&self, secs: u64, kind: &str, id: Option<&Value>) -> Got {
        let matches = |x: &Got| x.doc["transition"] == kind && id.is_none_or(|i| x.doc["id"] == *i);
        let got = self
            .wait_for(secs, &format!("a {kind} transition"), |g| {
                g.iter().any(matches)
            })
            .await;
        got.into_iter().find(|x| matches(x)).expect("found")
    }

    /// Wait until `pred` holds over what arrived (or panic after `secs`).
    pub async fn wait_for(&self, secs: u64, what: &str, pred: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let start = Instant::now();
        loop {
            let all = self.all();
            if pred(&all) {
                return all;
            }
            if start.elapsed() > Duration::from_secs(secs) {
                panic!(
                    "timed out waiting for {what}; received: {:#?}",
                    all.iter()
                        .map(|g| (&g.department, &g.key))
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub async fn wait_until<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        if start.elapsed() > Duration::from_secs(secs) {
            panic!("timed out after {secs} s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A Mosquitto of this test's own (persistent, on a free port), so it can be restarted.
pub struct PrivateBroker {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: std::process::Child,
}

impl PrivateBroker {
    pub fn start() -> Option<PrivateBroker> {
        Self::start_with(|_, port| format!("listener {port} 127.0.0.1\nallow_anonymous true\n"))
    }

    /// A broker that takes only TLS (a test CA and a leaf for localhost) with user `iot`,
    /// password `iotpass`. Its CA certificate is `dir/ca.crt`.
    pub fn start_secure() -> Option<PrivateBroker> {
        Self::start_with(|dir, port| {
            let d = dir.display();
            let sh = format!(
                "set -e; cd {d}
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=yujing-test-CA -keyout ca.key -out ca.crt
openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nkeyUsage=digitalSignature,keyEncipherment\\nextendedKeyUsage=serverAuth\\n' > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -extfile server.ext -out server.crt
chmod 644 server.key
touch passwd; mosquitto_passwd -b passwd iot iotpass; chmod 644 passwd"
            );
            let ok = Command::new("sh")
                .args(["-c", &sh])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "could not make test certificates (openssl, mosquitto_passwd)"
            );
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {d}/passwd\ncafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\ntls_version tlsv1.2\n"
            )
        })
    }

    fn start_with(listener: impl Fn(&std::path::Path, u16) -> String) -> Option<PrivateBroker> {
        let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())?;
        let dir = tempfile::tempdir().ok()?;
        let port = yujing_connectors::broker::free_port().ok()?;
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "{}user root\npersistence true\npersistence_location {}/\nautosave_interval 1\n",
                listener(dir.path(), port),
                dir.path().display()
            ),
        )
        .ok()?;
        let child = Self::spawn(bin, &conf)?;
        let b = PrivateBroker { port, dir, child };
        b.wait_up();
        Some(b)
    }

    fn spawn(bin: &str, conf: &std::path::Path) -> Option<std::process::Child> {
        std::process::Command::new(bin)
            .arg("-c")
            .arg(conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()
    }

    fn wait_up(&self) {
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("private mosquitto did not start");
    }

    /// SIGTERM (it saves its sessions), then start again on the same port.
    pub fn restart(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        // long enough that the client's reconnect backoff has grown: what is published right
        // after the restart can reach it only through its persisted session
        std::thread::sleep(Duration::from_millis(1500));
        let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("mosquitto");
        self.child = Self::spawn(bin, &self.dir.path().join("mosquitto.conf")).expect("restart");
        self.wait_up();
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The broker the tests share: Mosquitto on 127.0.0.1:1883 when it runs (as on the service
/// machines and in CI), else a private one started for this test process.
pub fn mosquitto() -> u16 {
    peers::ensure();
    static SHARED: std::sync::OnceLock<Option<PrivateBroker>> = std::sync::OnceLock::new();
    if std::net::TcpStream::connect(("127.0.0.1", 1883)).is_ok() {
        return 1883;
    }
    SHARED
        .get_or_init(PrivateBroker::start)
        .as_ref()
        .map(|b| b.port)
        .expect("no MQTT broker on 127.0.0.1:1883 and no mosquitto binary: install mosquitto and mosquitto-clients (.ci/run does)")
}

/// `yujing demo` as the README runs it (free ports, 1500x), with the banner's address and
/// tokens; stderr is collected while it runs. Killed when dropped.
pub struct Demo {
    pub child: Child,
    pub base: String,
    pub operator: String,
    pub zjj: String,
    pub admin: String,
    stderr: Option<std::thread::JoinHandle<Vec<String>>>,
    pub data: tempfile::TempDir,
}

impl Demo {
    pub fn start() -> Demo {
        let data = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_yujing"))
            .args([
                "demo",
                "--listen",
                "127.0.0.1:0",
                "--mqtt-port",
                "0",
                "--speed",
                "1500",
                "--data",
            ])
            .arg(data.path())
            // as an installed binary runs: no configuration at hand, the built-in sample county
            .current_dir(data.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start yujing demo");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (mut base, mut operator, mut zjj, mut admin) =
            (String::new(), String::new(), String::new(), String::new());
        for line in lines.by_ref().map_while(Result::ok) {
            if let Some(b) = line.strip_prefix("yujing: listening on ") {
                base = b.trim().to_string();
            }
            match line.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["operator", t] => operator = t.to_string(),
                ["department", "zjj", t, ..] => zjj = t.to_string(),
                ["admin", t] => admin = t.to_string(),
                _ => {}
            }
            if line.contains("Ctrl-C stops") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let err = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            BufReader::new(err)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        assert!(
            !base.is_empty() && !operator.is_empty() && !zjj.is_empty() && !admin.is_empty(),
            "the demo's banner is incomplete"
        );
        Demo {
            child,
            base,
            operator,
            zjj,
            admin,
            stderr: Some(stderr),
            data,
        }
    }

    /// Everything it wrote on stderr (once it has exited).
    pub fn stderr(&mut self) -> String {
        self.stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
            .join("\n")
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `yujing query --format json --archive DIR SQL`: the rows, as JSON.
pub fn query_archive(archive: &Path, sql: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_yujing"))
        .args(["query", "--format", "json", "--archive"])
        .arg(archive)
        .arg(sql)
        .output()
        .expect("yujing query");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}
