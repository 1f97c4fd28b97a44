//! Kafka end to end, against a real Kafka-protocol broker (Tansu, started here on a free port) with
//! `kcat` as the hotline system and the consumer of warnings: tickets and readings in, the warning
//! out on a topic keyed by site id, a bad message on the dead-letter topic with its reason in a
//! header; after kill -9 and a restart the group resumes without doubling the warning.
//!
//! Needs the Tansu broker and a kcat with a recent librdkafka under
//! `$TESTPEERS_HOME/bin` (default `~/.cache/yujing-testpeers/bin`); `.ci/peers.sh` installs both.

mod service;

use service::kafka::Broker;
use service::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_and_readings_over_kafka_warnings_back_without_doubles() {
    let broker = Broker::start();
    let rx = Receiver::default();
    let hook = rx.start().await;
    let setup = Setup::new("kafka", &hook, mosquitto(), "");
    let p = setup.path();
    let n = std::process::id();
    let (readings, tickets, warnings, dlq) = (
        format!("readings-{n}"),
        format!("tickets-{n}"),
        format!("warnings-{n}"),
        format!("dead-{n}"),
    );
    std::fs::write(p.join("sites.yaml"), SITES_WITH_ENTERPRISE).expect("sites");
    std::fs::write(p.join("rules/test.yaml"), TICKET_RULES).expect("rules");
    std::fs::write(
        p.join("routes.yaml"),
        format!("channels:\n  - {{id: k, type: kafka, topic: {warnings}}}\ndepartments:\n  zjj: {{channels: [k]}}\n  slj: {{channels: [k]}}\n  dcs: {{channels: [k]}}\nroutes:\n  - to: [site]\n"),
    )
    .expect("routes");
    let toml = std::fs::read_to_string(p.join("yujing.toml")).expect("toml")
        + &format!(
            "\n[kafka]\nbrokers = \"{}\"\ngroup_id = \"yujing-{n}\"\nreadings_topic = \"{readings}\"\ntickets_topic = \"{tickets}\"\ndead_letter_topic = \"{dlq}\"\n[kafka.client]\n\"session.timeout.ms\" = \"2000\"\n\"heartbeat.interval.ms\" = \"500\"\n\"topic.metadata.refresh.interval.ms\" = \"1000\"\n",
            broker.addr
        );
    std::fs::write(p.join("yujing.toml"), toml).expect("toml");
    let mut svc = Service::start(p);
    svc.ready().await;

    // the hotline system: three noise tickets about the enterprise of cs-01; a broken one
    let t0 = base_minute();
    let ticket = |no: &str, ts: i64| {
        format!("cs-01|{{\"number\":\"{no}\",\"category\":\"噪声\",\"received_at\":{ts},\"credit_code\":\"91330100MA27XL3Q2U\",\"content\":\"夜间施工\"}}")
    };
    broker.produce(
        &tickets,
        &[
            ticket("K-1", t0 + 10_000),
            ticket("K-2", t0 + 20_000),
            ticket("K-3", t0 + 30_000),
            "cs-01|{not json".into(),
        ],
    );
    // the noise monitor over Kafka closes the window
    let reading = |ts: i64| {
        format!("cs-01|{{\"ts\":{ts},\"site\":\"cs-01\",\"device\":\"cs-01-noise\",\"metric\":\"noise\",\"value\":50}}")
    };
    // wait until the tickets are taken before time moves on
    let start = Instant::now();
    loop {
        let (_, list) = svc.get("/api/v1/hotline/tickets", OPERATOR).await;
        if list["items"].as_array().map(Vec::len) == Some(3) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "tickets not taken from Kafka: {list}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    broker.produce(
        &readings,
        &[reading(t0 + 70_000), "cs-01|NaN-not-json".into()],
    );

    let start = Instant::now();
    loop {
        let (_, list) = svc.get("/api/v1/warnings", OPERATOR).await;
        if list["total"].as_u64() == Some(1) {
            break;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let log = std::fs::read_to_string(p.join("service.log")).unwrap_or_default();
            panic!("no warning raised: {list}\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let got = broker.wait_for(
        &warnings,
        "%k|%s\n",
        30,
        "the warning on the warnings topic",
        |s| s.contains("noise_complaints"),
    );
    let line = got
        .lines()
        .find(|l| l.contains("noise_complaints"))
        .expect("line");
    let (key, doc) = line.split_once('|').expect("key|doc");
    assert_eq!(key, "cs-01", "keyed by site id");
    let doc: serde_json::Value = serde_json::from_str(doc).expect("json");
    assert_eq!(
        (doc["level"].as_str(), doc["value"].as_f64()),
        (Some("yellow"), Some(3.0))
    );
    assert_eq!(
        doc["evidence"]["tickets"].as_array().map(Vec::len),
        Some(3),
        "{doc}"
    );
    let dead = broker.wait_for(&dlq, "%h|%s\n", 20, "two dead letters", |s| {
        s.lines().count() >= 2
    });
    assert!(dead.contains("yujing-reason=malformed"), "{dead}");
    assert!(dead.contains("not a ticket"), "{dead}");
    assert!(
        dead.contains(&format!("yujing-source-topic={readings}")),
        "{dead}"
    );
    let m = svc.metrics().await;
    assert!(
        m.contains("yujing_input_rejected_total{connector=\"kafka\",reason=\"malformed\"} 2"),
        "{m}"
    );

    // kill -9 once the offsets are committed (every 0.5 s), restart: nothing is doubled
    tokio::time::sleep(Duration::from_millis(1500)).await;
    svc.kill9();
    let svc = Service::start(p);
    svc.ready().await;
    broker.produce(&readings, &[reading(t0 + 130_000)]);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let all = broker.consume(&warnings, "%s\n");
    assert_eq!(
        all.lines()
            .filter(|l| l.contains("noise_complaints"))
            .count(),
        1,
        "no doubled warning:\n{all}"
    );
    let (_, list) = svc.get("/api/v1/warnings", OPERATOR).await;
    assert_eq!(list["total"].as_u64(), Some(1), "{list}");
    let (_, tk) = svc.get("/api/v1/hotline/tickets", OPERATOR).await;
    assert_eq!(tk["items"].as_array().map(Vec::len), Some(3));
}
