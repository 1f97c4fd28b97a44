//! Kafka -> engine throughput of `yujing run` (this build's binary): readings produced to a topic
//! of 8 partitions on a Tansu broker started here (memory storage), then consumed from the
//! beginning by one instance (SQLite store), one instance with `[cluster]` and two instances with
//! `[cluster]` (PostgreSQL store, checkpoints every 2 s), each run in a consumer group of its own;
//! the rate is taken from yujing's own counters (summed over the instances) between the first
//! and the last reading taken. Never pass/fail: numbers to quote (benches/README.md).
//!
//! ```text
//! cargo bench --bench kafka -- [--readings 1000000]
//! ```
//! Needs Tansu under `$TESTPEERS_HOME/bin` (`.ci/peers.sh` installs it) and, for the cluster runs,
//! PostgreSQL at 127.0.0.1:5432 (or `YUJING_TEST_PG`).

#[path = "support/process.rs"]
mod process;
// the tests' Tansu broker and PostgreSQL helpers
#[path = "../tests/service/kafka.rs"]
#[allow(dead_code)]
mod kafka;
#[path = "../tests/service/peers.rs"]
mod peers;
#[path = "../tests/service/pg.rs"]
mod pg;

use kafka::Broker;
use pg::fresh_database;
use process::arg;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = arg("--readings", 1_000_000);
    let broker = Broker::start();
    let addr = broker.addr.clone();

    // produce: 100 sites x 10 devices, one reading a second each, keyed by site
    let topic = format!("bench-readings-{}", std::process::id());
    broker.create_topic(&topic, 8);
    broker.create_topic(&format!("{topic}-tickets"), 8);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &addr)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let base = yujing::store::now_ms() - (n as i64 / 1000) * 1000 - 3_600_000;
    let t0 = Instant::now();
    let mut pending = Vec::with_capacity(10_000);
    for i in 0..n {
        let site = i % 100;
        let dev = (i / 100) % 10;
        let ts = base + (i as i64 / 1000) * 1000;
        let payload = format!(
            "{{\"ts\":{ts},\"site\":\"s{site}\",\"device\":\"s{site}-d{dev}\",\"metric\":\"noise\",\"value\":{}}}",
            50 + (i % 30)
        );
        let key = format!("s{site}");
        let p = producer.clone();
        let t = topic.clone();
        pending.push(tokio::spawn(async move {
            let _ = p
                .send(
                    FutureRecord::to(&t).key(&key).payload(&payload),
                    Duration::from_secs(30),
                )
                .await;
        }));
        if pending.len() == 10_000 {
            for h in pending.drain(..) {
                let _ = h.await;
            }
        }
    }
    for h in pending.drain(..) {
        let _ = h.await;
    }
    println!("produced {n} readings in {:?}", t0.elapsed());

    // the config: the sites and one rule over them
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    let mut sites = String::from("departments:\n  - {id: zjj, name: 住建局}\nsites:\n");
    for s in 0..100 {
        sites.push_str(&format!("  - id: s{s}\n    name: 工地{s}\n    kind: construction\n    department: zjj\n    devices:\n"));
        for d in 0..10 {
            sites.push_str(&format!("      - {{id: s{s}-d{d}, metrics: [noise]}}\n"));
        }
    }
    std::fs::write(p.join("sites.yaml"), sites).expect("sites");
    std::fs::create_dir_all(p.join("rules")).expect("rules");
    std::fs::write(
        p.join("rules/bench.yaml"),
        "rules:\n  - id: noise_max\n    title: 噪声\n    scope: {kind: construction}\n    metric: noise\n    window: {type: tumbling, size: 1m}\n    aggregate: max\n    above: {red: 85}\n    message: \"{value}\"\n",
    )
    .expect("rule");
    let toml = |group: &str, extra: &str| {
        format!(
            "[engine]\ntimezone = \"Asia/Shanghai\"\nmax_past = \"30d\"\n[http]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"data/y.db\"\ndead_letter = \"data/dead.jsonl\"\n{extra}\n[kafka]\nbrokers = \"{addr}\"\ngroup_id = \"{group}\"\nreadings_topic = \"{topic}\"\ntickets_topic = \"{topic}-tickets\"\n[kafka.client]\n\"session.timeout.ms\" = \"2000\"\n\"heartbeat.interval.ms\" = \"500\"\n"
        )
    };
    let http = reqwest::Client::new();
    std::fs::write(p.join("yujing.toml"), toml("bench-one", "")).expect("toml");
    report("one instance", &run(p, 1, n, &http).await);
    let db = fresh_database("yj_bench_kafka").await;
    let cluster = format!("url = \"{db}\"\n[cluster]\ncheckpoint_every = \"2s\"");
    std::fs::write(p.join("yujing.toml"), toml("bench-cluster-1", &cluster)).expect("toml");
    report("one instance, [cluster]", &run(p, 1, n, &http).await);
    std::fs::write(p.join("yujing.toml"), toml("bench-cluster-2", &cluster)).expect("toml");
    report("two instances, [cluster]", &run(p, 2, n, &http).await);
    drop(broker);
}

/// What a run measured: readings taken, seconds from the first to the last, RSS per instance.
struct Run {
    taken: f64,
    secs: f64,
    rss_kb: Vec<u64>,
}

fn report(what: &str, r: &Option<Run>) {
    match r {
        Some(r) => println!(
            "{what}: {:.0} readings taken in {:.2} s after the first: {:.0} readings/s from Kafka (RSS {:?} KiB)",
            r.taken,
            r.secs,
            r.taken / r.secs,
            r.rss_kb
        ),
        None => println!("{what}: took nothing from Kafka"),
    }
}

/// Start `k` instances on the config in `dir` and wait until they took `n` readings together.
async fn run(dir: &std::path::Path, k: usize, n: u64, http: &reqwest::Client) -> Option<Run> {
    let mut children = Vec::new();
    let mut apis = Vec::new();
    for i in 0..k {
        let mut child = Command::new(env!("CARGO_BIN_EXE_yujing"))
            .args(["run", "-c"])
            .arg(dir.join("yujing.toml"))
            .args(["--log", "error", "--instance", &format!("bench-{i}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("yujing run");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        for l in lines.by_ref().map_while(Result::ok) {
            if let Some(b) = l.strip_prefix("yujing: listening on ") {
                apis.push(b.trim().to_string());
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        children.push(child);
    }
    let name = "yujing_input_readings_total{connector=\"kafka\"}";
    let mut first: Option<(Instant, f64)> = None;
    let mut last = (Instant::now(), 0.0);
    let start = Instant::now();
    loop {
        let mut v = 0.0;
        for api in &apis {
            v += process::metric(http, api, name).await;
        }
        let now = Instant::now();
        if v > 0.0 && first.is_none() {
            first = Some((now, v));
        }
        if v > last.1 {
            last = (now, v);
        }
        if v >= n as f64 || start.elapsed() > Duration::from_secs(300) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_kb = children.iter().map(|c| process::rss_kb(c.id())).collect();
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    let (t1, v1) = first?;
    Some(Run {
        taken: last.1 - v1,
        secs: last.0.duration_since(t1).as_secs_f64().max(1e-3),
        rss_kb,
    })
}
