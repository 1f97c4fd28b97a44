//! CPU and memory per field connection of `yujing run` (this build's binary):
//!
//! 1. a baseline instance with the HJ 212 listener and no connection;
//! 2. the same instance holding `--monitors` HJ 212 connections (default 1,000), each sending a
//!    real-time upload (7 pollutants, acknowledgement asked) every `--interval` seconds
//!    (default 10; monitors in the field send every 30-60 s);
//! 3. a second instance with `--cameras` RTSP cameras (default 20), all sessions to one test
//!    camera (tests/peers/camera.py: H.264 640x360 at 15 fps plus an ONVIF metadata track,
//!    5 documents/s), health every 5 s, metadata parsed into counts and events.
//!
//! RSS from /proc/PID/status, CPU from utime + stime in /proc/PID/stat over `--seconds`
//! (default 20). Never pass/fail: numbers to quote from one run (benches/README.md).
//!
//! ```text
//! cargo bench --bench field -- [--monitors 1000] [--interval 10] [--cameras 20] [--seconds 20]
//! ```

#[path = "support/process.rs"]
mod process;

use process::{arg, cpu_ticks, rss_kb};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// CPU use (% of one core) and RSS (KiB, at the end) over `secs`.
async fn measure(pid: u32, secs: u64) -> (f64, u64) {
    let t0 = cpu_ticks(pid);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let ticks = cpu_ticks(pid) - t0;
    let pct = ticks as f64 / start.elapsed().as_secs_f64();
    (pct, rss_kb(pid))
}

fn write_config(dir: &Path, cameras: u64, camera_port: u16, monitors: u64) {
    let mut sites = String::from(
        "departments:\n  - {id: zjj, name: 住建局}\nsites:\n  - id: s0\n    name: 工地\n    kind: construction\n    department: zjj\n    devices:\n      - {id: dust, metrics: [pm10, pm2_5, tsp, noise, temperature, humidity, wind_speed], hj212_mn: BENCH0000000000000000001}\n",
    );
    for c in 0..cameras {
        sites.push_str(&format!(
            "      - {{id: cam{c}, type: camera, metrics: [people_count, motion], rtsp_url: \"rtsp://127.0.0.1:{camera_port}/cam\"}}\n"
        ));
    }
    std::fs::write(dir.join("sites.yaml"), sites).expect("sites");
    std::fs::create_dir_all(dir.join("rules")).expect("rules");
    std::fs::write(
        dir.join("rules/bench.yaml"),
        "rules:\n  - id: dust\n    title: 扬尘\n    metric: pm10\n    window: {type: sliding, size: 1h, step: 1m}\n    aggregate: avg\n    above: {blue: 150}\n    message: \"{value}\"\n",
    )
    .expect("rules");
    std::fs::write(
        dir.join("yujing.toml"),
        // every monitor connects from this one address
        format!("[engine]\ntimezone = \"Asia/Shanghai\"\n[http]\nlisten = \"127.0.0.1:0\"\n[hj212]\nlisten = \"127.0.0.1:0\"\nmax_connections = {}\nmax_connections_per_address = 0\n[store]\npath = \"data/y.db\"\ndead_letter = \"data/dead.jsonl\"\n[cameras]\nhealth_every = \"5s\"\n", monitors + 100),
    )
    .expect("toml");
}

struct Svc {
    child: Child,
    hj212: String,
    base: String,
}

impl Svc {
    /// One line of `/metrics`' values, e.g. `yujing_cameras_up`.
    async fn metric(&self, name: &str) -> f64 {
        process::metric(&reqwest::Client::new(), &self.base, name).await
    }
}

fn start(dir: &Path) -> Svc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_yujing"))
        .args(["run", "-c"])
        .arg(dir.join("yujing.toml"))
        .args(["--log", "error"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("yujing run");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut hj212, mut base) = (String::new(), String::new());
    for l in lines.by_ref().map_while(Result::ok) {
        if let Some(a) = l.strip_prefix("yujing: HJ 212 listening on ") {
            hj212 = a.trim().to_string();
        }
        if let Some(b) = l.strip_prefix("yujing: listening on ") {
            base = b.trim().to_string();
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Svc { child, hj212, base }
}

fn packet(qn: u64) -> String {
    let now = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Shanghai);
    let t = now.format("%Y%m%d%H%M%S");
    let data = format!(
        "QN={t}{:03};ST=22;CN=2011;PW=123456;MN=BENCH0000000000000000001;Flag=5;CP=&&DataTime={t};a34002-Rtd=80.4,a34002-Flag=N;a34004-Rtd=41.2,a34004-Flag=N;a34001-Rtd=180.0,a34001-Flag=N;LA-Rtd=62.5,LA-Flag=N;a01001-Rtd=12.3,a01001-Flag=N;a01002-Rtd=65.0,a01002-Flag=N;a01007-Rtd=2.1,a01007-Flag=N&&",
        qn % 1000
    );
    yujing_connectors::hj212::frame(&data)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let monitors = arg("--monitors", 1000);
    let interval = arg("--interval", 10);
    let cameras = arg("--cameras", 20);
    let secs = arg("--seconds", 20);

    // 1-2: HJ 212
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), 0, 1, monitors);
    let mut svc = start(dir.path());
    let pid = svc.child.id();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu0, rss0) = measure(pid, secs.min(10)).await;
    println!(
        "baseline (listener, no connection): CPU {cpu0:.1} %, RSS {} KiB",
        rss0
    );
    let addr = svc.hj212.clone();
    let mut tasks = Vec::new();
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    for i in 0..monitors {
        let addr = addr.clone();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(s) = tokio::net::TcpStream::connect(&addr).await else {
                return;
            };
            let mut r = tokio::io::BufReader::new(s);
            // spread the uploads over the interval, as monitors' clocks do
            tokio::time::sleep(Duration::from_millis(i * interval * 1000 / monitors.max(1))).await;
            let mut qn = 0u64;
            loop {
                qn += 1;
                if r.get_mut().write_all(packet(qn).as_bytes()).await.is_err() {
                    return;
                }
                let mut line = String::new();
                match r.read_line(&mut line).await {
                    Ok(n) if n > 0 => {
                        acked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    _ => return,
                }
                tokio::time::sleep(Duration::from_secs(interval)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(interval.max(2))).await;
    let before = acked.load(std::sync::atomic::Ordering::Relaxed);
    let (cpu1, rss1) = measure(pid, secs).await;
    println!(
        "  connections open: {}",
        svc.metric("yujing_hj212_connections").await
    );
    let during = acked.load(std::sync::atomic::Ordering::Relaxed) - before;
    println!(
        "{monitors} HJ 212 connections, one upload per {interval} s each ({:.0} packets/s acknowledged): CPU {cpu1:.1} %, RSS {} KiB",
        during as f64 / secs as f64,
        rss1
    );
    println!(
        "  per connection: {:.2} KiB RSS, {:.4} % of a core",
        (rss1 as f64 - rss0 as f64) / monitors as f64,
        (cpu1 - cpu0) / monitors as f64
    );
    for t in tasks {
        t.abort();
    }
    let _ = svc.child.kill();
    let _ = svc.child.wait();

    // 3: cameras
    if cameras == 0 {
        return;
    }
    let port = yujing_connectors::broker::free_port().expect("port");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/camera.py");
    let mut cam = Command::new("/usr/bin/python3")
        .arg(script)
        .args(["--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the test camera (see .ci/peers.sh)");
    let mut cam_out = BufReader::new(cam.stdout.take().expect("stdout")).lines();
    let ready = cam_out.next().and_then(Result::ok).unwrap_or_default();
    assert!(ready.starts_with("READY"), "camera: {ready}");
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), cameras, port, monitors);
    let mut svc = start(dir.path());
    let pid = svc.child.id();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let frames0 = svc
        .metric("yujing_camera_events_total{kind=\"frame\"}")
        .await;
    let (cpu2, rss2) = measure(pid, secs).await;
    let frames = svc
        .metric("yujing_camera_events_total{kind=\"frame\"}")
        .await
        - frames0;
    println!(
        "  cameras playing: {} of {cameras}; metadata frames taken: {:.0}/s; readings in total: {}",
        svc.metric("yujing_cameras_up").await,
        frames / secs as f64,
        svc.metric("yujing_input_readings_total{connector=\"camera\"}")
            .await
    );
    println!("{cameras} cameras (H.264 15 fps ~85 kbit/s + ONVIF metadata 5 docs/s each): CPU {cpu2:.1} %, RSS {} KiB", rss2);
    println!(
        "  per camera: {:.1} KiB RSS, {:.2} % of a core",
        (rss2 as f64 - rss0 as f64) / cameras as f64,
        (cpu2 - cpu0) / cameras as f64
    );
    let _ = svc.child.kill();
    let _ = svc.child.wait();
    let _ = cam.kill();
    let _ = cam.wait();
}
