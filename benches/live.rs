//! Sustained load through the live service: readings published with QoS 1 to a real Mosquitto,
//! taken by `yujing run` (this build's binary) with the embedded store, warnings delivered to a
//! signed webhook in this process. For each rate it reports what was published, what yujing
//! took, what was lost, and the reading -> webhook latency (p50, p99), plus yujing's RSS.
//!
//! ```text
//! cargo bench --bench live -- [--rates 5000,10000,20000,40000] [--seconds 20]
//!                             [--broker HOST:PORT] [--fsync true|false]
//!                             [--soak-minutes 30 --soak-rate 5000]
//! ```
//! `YUJING_BIN=path` runs another build's binary instead (to compare two builds in one run).
//! Without `--broker` it starts a Mosquitto of its own on a free port, configured as a broker
//! for this load should be: no limit on messages queued for a persistent session
//! (`max_queued_messages 0`; Mosquitto's default of 1,000 drops QoS 1 messages for a subscriber
//! that falls a second behind at 20 k/s).
//! Never a pass/fail: numbers to quote, measured in one run (see benches/README.md).

#[path = "support/process.rs"]
mod process;

use axum::extract::State;
use axum::routing::post;
use process::{metric, rss_kb};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SITES: usize = 100;
const DEVICES: usize = 10;
const SECRET: &str = "bench-secret";

fn now_ms() -> i64 {
    yujing::store::now_ms()
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn config(dir: &std::path::Path, broker: (&str, u16), hook: &str, run: &str) {
    let mut sites = String::from("departments:\n  - {id: zjj, name: 住建局}\nsites:\n");
    for s in 0..SITES {
        sites.push_str(&format!(
            "  - id: s{s}\n    name: 工地{s}\n    kind: construction\n    department: zjj\n    devices:\n"
        ));
        for d in 0..DEVICES {
            sites.push_str(&format!("      - {{id: s{s}-d{d}, metrics: [noise]}}\n"));
        }
    }
    std::fs::write(dir.join("sites.yaml"), sites).expect("sites");
    std::fs::create_dir_all(dir.join("rules")).expect("rules");
    std::fs::write(
        dir.join("rules/bench.yaml"),
        "rules:\n  - id: noise_max\n    title: 噪声\n    scope: {kind: construction}\n    metric: noise\n    window: {type: tumbling, size: 10s}\n    aggregate: max\n    above: {red: 85}\n    message: \"{site.name} {value}\"\n",
    )
    .expect("rule");
    std::fs::write(
        dir.join("routes.yaml"),
        format!("channels:\n  - {{id: h, type: webhook, url: \"{hook}\", secret: s}}\ndepartments:\n  zjj: {{channels: [h]}}\n"),
    )
    .expect("routes");
    std::fs::write(
        dir.join("yujing.toml"),
        format!(
            "[engine]\nout_of_orderness = \"0s\"\nidle_timeout = \"2s\"\n[http]\nlisten = \"127.0.0.1:0\"\n[mqtt]\nhost = \"{}\"\nport = {}\nclient_id = \"bench-{run}\"\ntopics = [\"bench-{run}/yujing/sensors/+/+\"]\n[store]\npath = \"data/y.db\"\nfsync = {}\ndead_letter = \"data/dead.jsonl\"\n[secrets]\ns = \"{SECRET}\"\n",
            broker.0,
            broker.1,
            arg("--fsync").as_deref() == Some("true")
        ),
    )
    .expect("toml");
}

#[derive(Default)]
struct Hooks {
    latencies: Mutex<Vec<i64>>,
}

async fn hook(State(h): State<Arc<Hooks>>, body: axum::body::Bytes) -> &'static str {
    let arrived = now_ms();
    if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&body) {
        // the window's end is when the reading that closed it was stamped (event time = clock)
        if let Some(end) = doc["window"]["end"].as_str() {
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(end) {
                if let Ok(mut l) = h.latencies.lock() {
                    l.push(arrived - t.timestamp_millis());
                }
            }
        }
    }
    "ok"
}

fn pct(v: &mut [i64], p: f64) -> i64 {
    if v.is_empty() {
        return -1;
    }
    v.sort_unstable();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

struct Outcome {
    /// Averages from yujing's own histograms: arrival -> transition stored, stored -> delivered.
    detect_ms: f64,
    dispatch_ms: f64,
    rate: u64,
    published: u64,
    taken: u64,
    warnings: usize,
    p50: i64,
    p99: i64,
    rss_start: u64,
    rss_end: u64,
    achieved: f64,
}

async fn one_run(broker: (&str, u16), rate: u64, seconds: u64, run: &str) -> Outcome {
    let hooks = Arc::new(Hooks::default());
    let app = axum::Router::new()
        .route("/", post(hook))
        .with_state(hooks.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook_url = format!("http://{}/", l.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(l, app).await });
    let dir = tempfile::tempdir().expect("tempdir");
    config(dir.path(), broker, &hook_url, run);
    // YUJING_BIN: another build's binary, to compare two in one run
    let bin = std::env::var("YUJING_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_yujing").into());
    let mut child = Command::new(bin)
        .args(["run", "-c"])
        .arg(dir.path().join("yujing.toml"))
        .args(["--log", "warn"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("yujing run");
    let mut base = String::new();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    for line in lines.by_ref().map_while(Result::ok) {
        if let Some(b) = line.strip_prefix("yujing: listening on ") {
            base = b.to_string();
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if metric(&http, &base, "yujing_connector_up{connector=\"mqtt\"}").await == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_start = rss_kb(child.id());

    let mut o = MqttOptions::new(format!("bench-pub-{run}"), broker.0, broker.1);
    o.set_keep_alive(Duration::from_secs(30)).set_inflight(1000);
    let (client, mut eventloop) = AsyncClient::new(o, 10_000);
    let acked = Arc::new(AtomicU64::new(0));
    let a2 = acked.clone();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    a2.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    let topics: Vec<String> = (0..SITES * DEVICES)
        .map(|i| {
            format!(
                "bench-{run}/yujing/sensors/s{}/s{}-d{}",
                i / DEVICES,
                i / DEVICES,
                i % DEVICES
            )
        })
        .collect();
    let start = Instant::now();
    let tick = Duration::from_millis(10);
    let per_tick = (rate as f64 / 100.0).max(1.0);
    let mut owed = 0.0;
    let mut sent = 0u64;
    let mut next = Instant::now();
    let mut i = 0usize;
    while start.elapsed() < Duration::from_secs(seconds) {
        owed += per_tick;
        let ts = now_ms();
        while owed >= 1.0 {
            owed -= 1.0;
            // one reading in 1,999 breaches, on a different device each time (at 20 k/s about ten
            // warnings raised per second, and as many cleared), the rest are quiet
            let v = if i.is_multiple_of(1_999) { 95.0 } else { 50.0 };
            let payload = format!("{{\"ts\": {ts}, \"metric\": \"noise\", \"value\": {v}}}");
            if client
                .publish(&topics[i % topics.len()], QoS::AtLeastOnce, false, payload)
                .await
                .is_ok()
            {
                sent += 1;
            }
            i += 1;
        }
        next += tick;
        tokio::time::sleep_until(next.into()).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    // drain: wait until the broker acknowledged everything and yujing took it
    let mut taken = 0.0;
    for _ in 0..300 {
        taken = metric(
            &http,
            &base,
            "yujing_input_readings_total{connector=\"mqtt\"}",
        )
        .await;
        if acked.load(Ordering::Relaxed) >= sent && taken >= sent as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_end = rss_kb(child.id());
    let avg = |sum: f64, count: f64| {
        if count > 0.0 {
            1000.0 * sum / count
        } else {
            -1.0
        }
    };
    let detect_ms = avg(
        metric(&http, &base, "yujing_engine_detect_latency_seconds_sum").await,
        metric(&http, &base, "yujing_engine_detect_latency_seconds_count").await,
    );
    let dispatch_ms = avg(
        metric(
            &http,
            &base,
            "yujing_dispatch_delivery_latency_seconds_sum{channel=\"webhook\"}",
        )
        .await,
        metric(
            &http,
            &base,
            "yujing_dispatch_delivery_latency_seconds_count{channel=\"webhook\"}",
        )
        .await,
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let mut lat = hooks
        .latencies
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    Outcome {
        detect_ms,
        dispatch_ms,
        rate,
        published: acked.load(Ordering::Relaxed),
        taken: taken as u64,
        warnings: lat.len(),
        p50: pct(&mut lat, 0.5),
        p99: pct(&mut lat, 0.99),
        rss_start,
        rss_end,
        achieved: sent as f64 / elapsed,
    }
}

/// A Mosquitto for the run: loopback, anonymous, no queue limit.
fn private_broker() -> (std::process::Child, u16, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = yujing_connectors::broker::free_port().expect("port");
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\nmax_inflight_messages 0\nuser root\n"),
    )
    .expect("conf");
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto (apt-get install mosquitto)");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, port, dir)
}

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut own = None;
    let broker_s = match arg("--broker") {
        Some(b) => b,
        None => {
            let (child, port, dir) = private_broker();
            own = Some((child, dir));
            format!("127.0.0.1:{port}")
        }
    };
    println!(
        "broker: {broker_s}{}",
        if own.is_some() {
            " (own Mosquitto, max_queued_messages 0)"
        } else {
            ""
        }
    );
    let (host, port) = broker_s.rsplit_once(':').expect("--broker HOST:PORT");
    let port: u16 = port.parse().expect("port");
    let seconds: u64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(20);
    println!("| target rate/s | published/s | broker-acked | taken by yujing | lost | warnings | reading->webhook p50 | p99 | of which: detect avg, store->webhook avg | RSS start -> end |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---|---|");
    let print = |o: &Outcome| {
        println!(
            "| {} | {:.0} | {} | {} | {} | {} | {} ms | {} ms | {:.1} ms, {:.1} ms | {} -> {} MB |",
            o.rate,
            o.achieved,
            o.published,
            o.taken,
            o.published.saturating_sub(o.taken),
            o.warnings,
            o.p50,
            o.p99,
            o.detect_ms,
            o.dispatch_ms,
            o.rss_start / 1024,
            o.rss_end / 1024
        )
    };
    if let Some(m) = arg("--soak-minutes").and_then(|s| s.parse::<u64>().ok()) {
        let rate = arg("--soak-rate")
            .and_then(|s| s.parse().ok())
            .unwrap_or(5000);
        let o = rt.block_on(one_run(
            (host, port),
            rate,
            m * 60,
            &format!("soak{}", std::process::id()),
        ));
        print(&o);
        return;
    }
    let rates: Vec<u64> = arg("--rates")
        .unwrap_or_else(|| "5000,10000,20000,40000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    for (k, rate) in rates.into_iter().enumerate() {
        let o = rt.block_on(one_run(
            (host, port),
            rate,
            seconds,
            &format!("r{k}-{}", std::process::id()),
        ));
        print(&o);
    }
}
