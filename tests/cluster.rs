//! Scale-out end to end: two `yujing run` instances in one Kafka consumer group share a readings
//! topic of 8 partitions (and so the sites) and one PostgreSQL store. One is killed with kill -9
//! mid-stream; the other takes its partitions over, restores their window and alert state from
//! the checkpoints in the store, and reads on. The warnings stored (ids, levels, transition
//! counts) equal those of a single instance that read the same input.
//!
//! Needs Tansu and kcat (`.ci/peers.sh`) and PostgreSQL at 127.0.0.1:5432 (or `YUJING_TEST_PG`).

mod service;

use serde_json::Value;
use service::hj212::{upload, Monitor};
use service::kafka::Broker;
use service::pg::fresh_database;
use service::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

const SITES: usize = 16;
/// Readings flow this long (event time is the clock, as from live devices) ...
const LOUD: Duration = Duration::from_secs(24);
/// ... then quiet ones this long, past the lateness: every window with a warning in it is final.
const QUIET: Duration = Duration::from_secs(14);

fn sites_yaml() -> String {
    let mut s = String::from(
        "departments:\n  - {id: zjj, name: 住房和城乡建设局}\n  - {id: slj, name: 水利局}\n  - {id: dcs, name: 县政府督查室}\nsites:\n",
    );
    for i in 0..SITES {
        s += &format!(
            "  - id: s-{i:02}\n    name: 工地{i}\n    kind: construction\n    department: zjj\n    devices:\n      - {{id: s-{i:02}-noise, metrics: [noise]}}\n"
        );
    }
    s
}

const RULES: &str = "rules:
  - id: noise_avg
    title: 施工噪声超标
    scope: {kind: construction}
    metric: noise
    window: {type: tumbling, size: 2s}
    aggregate: avg
    above: {yellow: 55, red: 70}
    message: \"{site.name}噪声{value:.1}dB(A)\"
";

/// A config directory: the sites and rules above, 5 s of lateness (more than a takeover takes:
/// the session timeout, 2 s, and a rebalance), and the given store and Kafka.
fn config(hook: &str, name: &str, store: &str, kafka: &str) -> Setup {
    let setup = Setup::new(name, hook, mosquitto(), "");
    let p = setup.path();
    std::fs::write(p.join("sites.yaml"), sites_yaml()).expect("sites");
    std::fs::write(p.join("rules/test.yaml"), RULES).expect("rules");
    let toml = std::fs::read_to_string(p.join("yujing.toml"))
        .expect("toml")
        .replace(
            "out_of_orderness = \"0s\"",
            "out_of_orderness = \"5s\"\nidle_timeout = \"5s\"",
        )
        .replace("[store]\n", &format!("[store]\n{store}\n"))
        + kafka;
    std::fs::write(p.join("yujing.toml"), toml).expect("toml");
    setup
}

/// `[kafka]` and `[cluster]` for one instance of a group.
fn kafka_table(broker: &Broker, group: &str, topic: &str, instance: &str) -> String {
    format!(
        "\n[kafka]\nbrokers = \"{}\"\ngroup_id = \"{group}\"\nreadings_topic = \"{topic}\"\ntickets_topic = \"{topic}-tickets\"\n[kafka.client]\n\"session.timeout.ms\" = \"2000\"\n\"heartbeat.interval.ms\" = \"500\"\n\"topic.metadata.refresh.interval.ms\" = \"1000\"\n[cluster]\ninstance = \"{instance}\"\ncheckpoint_every = \"300ms\"\n",
        broker.addr
    )
}

/// One reading per site at `ts`; each site is loud for three 2-s windows in twelve, at its own
/// phase (while `loud`).
fn batch(ts: i64, loud: bool) -> Vec<String> {
    (0..SITES as i64)
        .map(|i| {
            let value = if loud && (ts / 2_000 / 3 + i) % 4 == 0 {
                60.0
            } else {
                40.0
            };
            format!("s-{i:02}|{{\"ts\":{ts},\"site\":\"s-{i:02}\",\"device\":\"s-{i:02}-noise\",\"metric\":\"noise\",\"value\":{value}}}")
        })
        .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What the store holds: (id, level, status, seq) of every warning.
async fn warnings(svc: &Service) -> BTreeSet<(String, String, String, i64)> {
    let (_, list) = svc.get("/api/v1/warnings?limit=500", OPERATOR).await;
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|w: &Value| {
            (
                w["id"].as_str().unwrap_or_default().to_string(),
                w["level"].as_str().unwrap_or_default().to_string(),
                w["status"].as_str().unwrap_or_default().to_string(),
                w["seq"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

/// Wait until the store's warnings stop changing (nothing new for `quiet`).
async fn settled(svc: &Service, quiet: Duration) -> BTreeSet<(String, String, String, i64)> {
    let mut last = warnings(svc).await;
    let mut since = Instant::now();
    let start = Instant::now();
    while since.elapsed() < quiet {
        assert!(start.elapsed() < Duration::from_secs(90), "never settled");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = warnings(svc).await;
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
    last
}

async fn partitions(svc: &Service) -> f64 {
    svc.metric("yujing_cluster_partitions").await
}

fn log(p: &Path) -> String {
    std::fs::read_to_string(p.join("service.log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_joins_mid_stream_then_dies_and_no_warning_is_lost_or_doubled() {
    let broker = Broker::start();
    let n = std::process::id();
    let topic = format!("cluster-readings-{n}");
    broker.create_topic(&topic, 8);
    broker.create_topic(&format!("{topic}-tickets"), 8);
    let rx = Receiver::default();
    let hook = rx.start().await;
    // two instances, one group, one PostgreSQL store
    let db = fresh_database("yj_cluster_test").await;
    let group = format!("yj-cluster-{n}");
    let store = format!("url = \"{db}\"");
    let a_cfg = config(
        &hook,
        "cluster-a",
        &store,
        &kafka_table(&broker, &group, &topic, "yj-a"),
    );
    let b_cfg = config(
        &hook,
        "cluster-b",
        &store,
        &kafka_table(&broker, &group, &topic, "yj-b"),
    );
    let a = Service::start(a_cfg.path());
    a.ready().await;
    wait_until(30, "instance a takes all 8 partitions", || async {
        partitions(&a).await == 8.0
    })
    .await;
    // readings as live devices send them; a quarter of the way in b joins (a's state of the
    // partitions b is given moves over with them), two thirds in b dies without a word
    let start = Instant::now();
    let mut b: Option<Service> = None;
    let mut killed = false;
    while start.elapsed() < LOUD + QUIET {
        broker.produce(&topic, &batch(now_ms(), start.elapsed() < LOUD));
        tokio::time::sleep(Duration::from_millis(250)).await;
        let t = start.elapsed();
        if b.is_none() && t > LOUD / 4 {
            let joined = Service::start(b_cfg.path());
            joined.ready().await;
            b = Some(joined);
        }
        if let (false, Some(joined)) = (killed, b.as_mut()) {
            // b has its partitions, has checkpointed them and raised warnings of its own
            if t > LOUD * 2 / 3
                && partitions(joined).await == 4.0
                && joined
                    .metric("yujing_checkpoints_total{result=\"saved\"}")
                    .await
                    > 0.0
            {
                joined.kill9();
                killed = true;
            }
        }
    }
    assert!(killed, "b joined and was killed:\n{}", log(b_cfg.path()));
    let b_log = log(b_cfg.path());
    assert!(
        b_log
            .lines()
            .any(|l| l.contains("partitions assigned") && !l.contains("restored=0")),
        "b took its partitions with a's state:\n{b_log}"
    );
    wait_until(30, "instance a takes b's partitions over", || async {
        partitions(&a).await == 8.0
    })
    .await;
    let cluster = settled(&a, Duration::from_secs(8)).await;

    // the same input through one instance alone (its own group and store)
    let reference = config(
        &hook,
        "cluster-ref",
        "",
        &kafka_table(&broker, &format!("yj-ref-{n}"), &topic, "yj-one"),
    );
    let one = Service::start(reference.path());
    one.ready().await;
    let expected = settled(&one, Duration::from_secs(8)).await;

    assert!(
        expected.len() >= SITES,
        "every site was loud at least once: {expected:?}\n{}",
        log(reference.path())
    );
    assert_eq!(
        cluster,
        expected,
        "two instances, one killed, store what one instance stores\n--- a ---\n{}",
        log(a_cfg.path())
    );
    // a took b's partitions over with their state, and nothing came too late for a window
    let a_log = log(a_cfg.path());
    let takeover = a_log
        .lines()
        .filter(|l| {
            l.contains("partitions assigned") && l.contains("partitions=[0, 1, 2, 3, 4, 5, 6, 7]")
        })
        .nth(1)
        .unwrap_or_else(|| panic!("a never took all partitions back:\n{a_log}"));
    assert!(
        !takeover.contains("restored=0"),
        "state restored from the checkpoints: {takeover}"
    );
    assert_eq!(
        a.metric("yujing_input_rejected_total{connector=\"kafka\",reason=\"late\"}")
            .await,
        0.0
    );
    // the departments heard of every warning (at least once; the idempotency key says which)
    let raised: BTreeSet<String> = cluster.iter().map(|w| w.0.clone()).collect();
    rx.wait_for(20, "every warning delivered", |got| {
        let keys: BTreeSet<&str> = got.iter().map(|g| g.key.as_str()).collect();
        raised
            .iter()
            .all(|id| keys.iter().any(|k| k.starts_with(id.as_str())))
    })
    .await;
}

/// Three noise complaints in a minute: yellow; with the site's noise monitor above 70 dB(A) in
/// the same minute: orange.
const TICKET_RULES: &str = "rules:
  - id: noise_complaints
    title: 工地噪声投诉集中
    scope: {kind: construction}
    metric: tickets.noise
    window: {type: tumbling, size: 1m}
    aggregate: count
    above: {yellow: 2}
    message: \"{site.name}噪声投诉{value:.0}件\"
  - id: noise_complaints_confirmed
    title: 噪声投诉与监测超标同时出现
    scope: {kind: construction}
    window: {type: tumbling, size: 1m}
    all:
      - {metric: tickets.noise, aggregate: count, above: 2}
      - {metric: noise, aggregate: max, above: 70}
    level: orange
    message: \"{site.name}噪声投诉与监测超标同时出现\"
";

/// The partitions an instance logged as its own last.
fn owned_partitions(p: &Path) -> Vec<i32> {
    let log = log(p);
    let line = log
        .lines()
        .rfind(|l| l.contains("partitions assigned"))
        .unwrap_or_default();
    line.split("partitions=[")
        .nth(1)
        .and_then(|r| r.split(']').next())
        .map(|l| {
            l.split(", ")
                .filter_map(|x| x.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The README's walk-through: tickets from the hotline system with kcat, readings from the
/// site's noise monitor over MQTT (a subscription the instances share), a correlated orange
/// warning with the tickets as evidence; the instance that has the site is killed, and the other
/// carries the warning on (it clears when the next minute is quiet) without a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_with_kcat_and_readings_over_mqtt_survive_the_sites_instance() {
    let broker = Broker::start();
    let n = std::process::id();
    let (readings, tickets) = (format!("c2-readings-{n}"), format!("c2-tickets-{n}"));
    broker.create_topic(&readings, 8);
    broker.create_topic(&tickets, 8);
    let rx = Receiver::default();
    let hook = rx.start().await;
    let db = fresh_database("yj_cluster_walkthrough").await;
    let group = format!("yj-c2-{n}");
    let kafka = |instance: &str| {
        format!(
            "\n[kafka]\nbrokers = \"{}\"\ngroup_id = \"{group}\"\nreadings_topic = \"{readings}\"\ntickets_topic = \"{tickets}\"\n[kafka.client]\n\"session.timeout.ms\" = \"2000\"\n\"heartbeat.interval.ms\" = \"500\"\n\"topic.metadata.refresh.interval.ms\" = \"1000\"\n[cluster]\ninstance = \"{instance}\"\ncheckpoint_every = \"300ms\"\n",
            broker.addr
        )
    };
    let mut setups = Vec::new();
    for name in ["c2-a", "c2-b"] {
        let setup = Setup::new(name, &hook, mosquitto(), "");
        let p = setup.path();
        // the noise monitor also speaks HJ 212
        let sites = SITES_WITH_ENTERPRISE.replace(
            "{id: cs-01-noise, metrics: [noise]}",
            "{id: cs-01-noise, metrics: [noise], hj212_mn: MN0000000000000000CS0102}",
        );
        std::fs::write(p.join("sites.yaml"), sites).expect("sites");
        std::fs::write(p.join("rules/test.yaml"), TICKET_RULES).expect("rules");
        let toml = std::fs::read_to_string(p.join("yujing.toml"))
            .expect("toml")
            .replace("[store]\n", &format!("[store]\nurl = \"{db}\"\n"))
            + "[hj212]\nlisten = \"127.0.0.1:0\"\n"
            + &kafka(name);
        std::fs::write(p.join("yujing.toml"), toml).expect("toml");
        setups.push(setup);
    }
    // both subscribe to the same topics (the first one's), shared
    let (a_cfg, b_cfg) = (&setups[0], &setups[1]);
    let b_toml = std::fs::read_to_string(b_cfg.path().join("yujing.toml"))
        .expect("toml")
        .replace(
            &format!("topics = [\"{}/", b_cfg.prefix),
            &format!("topics = [\"{}/", a_cfg.prefix),
        );
    std::fs::write(b_cfg.path().join("yujing.toml"), b_toml).expect("toml");
    let mut a = Service::start(a_cfg.path());
    a.ready().await;
    let mut b = Service::start(b_cfg.path());
    b.ready().await;
    wait_until(30, "the group splits the partitions 4 and 4", || async {
        a.metric("yujing_cluster_partitions").await == 4.0
            && b.metric("yujing_cluster_partitions").await == 4.0
    })
    .await;

    // who has cs-01 (the producers' partitioner: CRC-32 of the key)
    let partition = {
        const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
        (CRC.checksum(b"cs-01") % 8) as i32
    };
    let a_has_it = owned_partitions(a_cfg.path()).contains(&partition);
    // the hotline system: two noise complaints about cs-01's contractor over Kafka, and one
    // posted to the API of the instance that does not have cs-01 (it passes it on)
    let t0 = base_minute();
    let ticket = |no: &str, ts: i64| {
        format!("cs-01|{{\"number\":\"{no}\",\"category\":\"噪声\",\"received_at\":{ts},\"credit_code\":\"91330100MA27XL3Q2U\",\"content\":\"夜间施工\"}}")
    };
    broker.produce(
        &tickets,
        &[ticket("W-1", t0 + 10_000), ticket("W-2", t0 + 20_000)],
    );
    let other = if a_has_it { &b } else { &a };
    let body = ticket("W-3", t0 + 30_000);
    let (status, posted) = other
        .post(
            "/api/v1/hotline/tickets",
            OPERATOR,
            body.split_once('|').map(|(_, j)| j).unwrap_or_default(),
        )
        .await;
    assert_eq!(status, 201, "{posted}");
    wait_until(30, "the tickets are counted", || async {
        let (_, list) = a.get("/api/v1/hotline/tickets", OPERATOR).await;
        list["items"]
            .as_array()
            .is_some_and(|l| l.len() == 3 && l.iter().all(|t| t["fed"] == true))
    })
    .await;
    // the noise monitor: loud within the minute over HJ 212 to the instance that does not have
    // cs-01 (acknowledged once Kafka has it), then the next minute begins, over MQTT
    let mut monitor = Monitor::connect(other.hj212.as_deref().expect("HJ 212 listener")).await;
    monitor
        .send(&upload(
            "MN0000000000000000CS0102",
            1,
            t0 + 40_000,
            5,
            "LA-Rtd=75.0,LA-Flag=N",
        ))
        .await;
    assert!(
        monitor.ack(10_000).await.is_some(),
        "the packet is acknowledged once passed on"
    );
    a_cfg.publish("cs-01", "cs-01-noise", &reading(t0 + 61_000, "noise", 50.0));
    let got = rx
        .wait_for(30, "the orange warning", |got| {
            got.iter()
                .any(|g| g.doc["rule"] == "noise_complaints_confirmed")
        })
        .await;
    let orange = got
        .iter()
        .find(|g| g.doc["rule"] == "noise_complaints_confirmed")
        .expect("orange");
    assert_eq!(orange.doc["level"], "orange", "{}", orange.doc);
    let mut evidence: Vec<&str> = orange.doc["evidence"]["tickets"]
        .as_array()
        .map(|l| l.iter().filter_map(|t| t.as_str()).collect())
        .unwrap_or_default();
    evidence.sort();
    assert_eq!(evidence, ["W-1", "W-2", "W-3"], "{}", orange.doc);

    // the instance that has cs-01 dies; the other takes its partitions and its state
    let (owner, survivor, survivor_cfg) = if a_has_it {
        (&mut a, &b, b_cfg)
    } else {
        (&mut b, &a, a_cfg)
    };
    // once the owner has checkpointed since (its state holds the firing warnings)
    let saved = owner
        .metric("yujing_checkpoints_total{result=\"saved\"}")
        .await;
    wait_until(15, "the owner checkpoints after the warning", || async {
        owner
            .metric("yujing_checkpoints_total{result=\"saved\"}")
            .await
            >= saved + 2.0
    })
    .await;
    owner.kill9();
    wait_until(30, "the survivor takes all partitions", || async {
        survivor.metric("yujing_cluster_partitions").await == 8.0
    })
    .await;
    // a quiet minute: the orange warning clears (the survivor knew it was firing) ...
    a_cfg.publish("cs-01", "cs-01-noise", &reading(t0 + 90_000, "noise", 50.0));
    a_cfg.publish(
        "cs-01",
        "cs-01-noise",
        &reading(t0 + 125_000, "noise", 50.0),
    );
    rx.wait_for_transition(40, "clear", Some(&orange.doc["id"]))
        .await;
    // ... and three more complaints continue the yellow one instead of raising a second
    broker.produce(
        &tickets,
        &[
            ticket("W-4", t0 + 130_000),
            ticket("W-5", t0 + 140_000),
            ticket("W-6", t0 + 150_000),
        ],
    );
    wait_until(30, "the new tickets are counted", || async {
        let (_, list) = survivor.get("/api/v1/hotline/tickets", OPERATOR).await;
        list["items"]
            .as_array()
            .is_some_and(|l| l.len() == 6 && l.iter().all(|t| t["fed"] == true))
    })
    .await;
    let judged = survivor
        .metric("yujing_engine_rule_evaluations_total")
        .await;
    a_cfg.publish(
        "cs-01",
        "cs-01-noise",
        &reading(t0 + 185_000, "noise", 50.0),
    );
    wait_until(30, "the minute of the new tickets is judged", || async {
        // both rules: the tickets' window and the quiet monitor's
        survivor
            .metric("yujing_engine_rule_evaluations_total")
            .await
            >= judged + 2.0
    })
    .await;
    let (_, list) = survivor.get("/api/v1/warnings", OPERATOR).await;
    let mut rules: Vec<(&str, &str, &str)> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|w| {
            (
                w["rule"].as_str().unwrap_or_default(),
                w["level"].as_str().unwrap_or_default(),
                w["status"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    rules.sort();
    assert_eq!(
        rules,
        [
            ("noise_complaints", "yellow", "open"),
            ("noise_complaints_confirmed", "orange", "cleared")
        ],
        "one warning per rule, carried on by the survivor\n{}",
        log(survivor_cfg.path())
    );
}
