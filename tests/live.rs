//! The live service end to end: the real `yujing run` binary, the real Mosquitto broker
//! (127.0.0.1:1883, or a private one where a test restarts it), `mosquitto_pub` as the device,
//! and a webhook receiver that checks every signature.

mod service;

use serde_json::Value;
use service::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

fn ids(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|w| w["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn kinds(timeline: &Value) -> Vec<String> {
    timeline
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["kind"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breach_reaches_the_department_signed_and_the_department_answers() {
    let rx = Receiver::default();
    let hook = rx.start().await;
    let setup = Setup::new(
        "breach",
        &hook,
        mosquitto(),
        "deadlines:\n  red: {ack: 15m, handle: 2h}",
    );
    let svc = Service::start(setup.path());
    svc.ready().await;

    // no token, a bad token: 401
    let r = svc
        .http
        .get(format!("{}/api/v1/warnings", svc.base))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(svc.get("/api/v1/warnings", "nope").await.0, 401);

    // the department's live stream, opened before the breach
    let mut stream = svc
        .http
        .get(format!("{}/api/v1/stream", svc.base))
        .bearer_auth(ZJJ)
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status().as_u16(), 200);

    // 91 dB(A) at cs-01 in one minute; the next minute's reading closes that window
    let t0 = base_minute();
    setup.publish("cs-01", "cs-01-noise", &reading(t0 + 10_000, "noise", 91.0));
    let sent = Instant::now();
    setup.publish("cs-01", "cs-01-noise", &reading(t0 + 61_000, "noise", 50.0));
    let got = rx.wait_for(10, "the red warning", |g| !g.is_empty()).await;
    let latency = got[0].at.duration_since(sent);
    println!("reading -> signed webhook: {latency:?}");
    let w = &got[0];
    assert!(w.signature_ok, "signature must verify");
    assert_eq!(w.department, "zjj");
    assert_eq!(w.doc["level"], "red");
    assert_eq!(w.doc["rule"], "noise_max");
    assert_eq!(w.doc["site"]["id"], "cs-01");
    assert!(w.key.ends_with(":0:transition:zjj:zjj-hook"), "{}", w.key);
    let id = w.doc["id"].as_str().expect("id").to_string();

    // the stream carried it
    let mut seen = String::new();
    let until = Instant::now() + Duration::from_secs(5);
    while !seen.contains(&id) && Instant::now() < until {
        if let Ok(Ok(Some(c))) = tokio::time::timeout(Duration::from_secs(1), stream.chunk()).await
        {
            seen.push_str(&String::from_utf8_lossy(&c));
        }
    }
    assert!(
        seen.contains("event: transition") && seen.contains(&id),
        "stream: {seen}"
    );

    // departments see their own only
    let (s, list) = svc.get("/api/v1/warnings", ZJJ).await;
    assert_eq!(s, 200);
    assert_eq!(ids(&list), vec![id.clone()]);
    let (s, list) = svc.get("/api/v1/warnings", SLJ).await;
    assert_eq!((s, ids(&list).len()), (200, 0));
    assert_eq!(svc.get(&format!("/api/v1/warnings/{id}"), SLJ).await.0, 403);
    assert_eq!(svc.get("/api/v1/warnings?department=zjj", SLJ).await.0, 403);
    assert_eq!(
        svc.post(&format!("/api/v1/warnings/{id}/ack"), SLJ, "")
            .await
            .0,
        403
    );
    assert_eq!(svc.post("/api/v1/reload", ZJJ, "").await.0, 403);
    assert_eq!(svc.get("/api/v1/warnings/w-nope", OPERATOR).await.0, 404);

    // the department acts: ack, feedback, close; each step in the timeline with its actor
    let (s, v) = svc
        .post(&format!("/api/v1/warnings/{id}/close"), ZJJ, "")
        .await;
    assert_eq!(s, 409, "closing before feedback: {v}");
    let (s, v) = svc
        .post(
            &format!("/api/v1/warnings/{id}/ack"),
            ZJJ,
            r#"{"note": "已派人核查"}"#,
        )
        .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (200, Some("acknowledged")),
        "{v}"
    );
    assert_eq!(
        svc.post(&format!("/api/v1/warnings/{id}/ack"), ZJJ, "")
            .await
            .0,
        409
    );
    let (s, _) = svc
        .post(
            &format!("/api/v1/warnings/{id}/feedback"),
            ZJJ,
            r#"{"measures": ""}"#,
        )
        .await;
    assert_eq!(s, 400);
    let (s, v) = svc
        .post(
            &format!("/api/v1/warnings/{id}/feedback"),
            ZJJ,
            r#"{"measures": "责令停止夜间打桩", "result": "噪声已降至55dB(A)以下"}"#,
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("handled")), "{v}");
    let (s, v) = svc
        .post(
            &format!("/api/v1/warnings/{id}/close"),
            ZJJ,
            r#"{"note": "办结"}"#,
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("closed")), "{v}");

    let (s, detail) = svc.get(&format!("/api/v1/warnings/{id}"), OPERATOR).await;
    assert_eq!(s, 200);
    let k = kinds(&detail["timeline"]);
    for want in ["raised", "delivered", "acknowledged", "feedback", "closed"] {
        assert!(k.iter().any(|x| x == want), "timeline lacks {want}: {k:?}");
    }
    let fb = detail["timeline"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["kind"] == "feedback"))
        .expect("feedback entry");
    assert_eq!(fb["actor"], "zjj-duty (department:zjj)");
    assert_eq!(fb["detail"]["measures"], "责令停止夜间打桩");
    assert_eq!(detail["deliveries"][0]["state"], "delivered");
    assert!(
        detail["deadlines"]["ack"].is_string(),
        "red has an ack deadline: {detail}"
    );

    // sites: latest readings and device health
    let (s, site) = svc.get("/api/v1/sites/cs-01", OPERATOR).await;
    assert_eq!(s, 200);
    assert_eq!(site["devices"][0]["status"], "online");
    assert_eq!(site["devices"][0]["readings"][0]["metric"], "noise");
    assert_eq!(site["firing"][0][0], "noise_max", "{site}");
    // another department sees the site, not what fires there
    let (_, other) = svc.get("/api/v1/sites/cs-01", SLJ).await;
    assert_eq!(other["firing"].as_array().map(Vec::len), Some(0), "{other}");
    assert_eq!(
        other["warnings"].as_array().map(Vec::len),
        Some(0),
        "{other}"
    );
    let (_, sites) = svc.get("/api/v1/sites", ZJJ).await;
    assert_eq!(sites["items"].as_array().map(Vec::len), Some(4));

    // bad input is counted by reason and dead-lettered (file and topic); the service keeps going
    let dead_topic = setup.subscribe("dead-letter", 6);
    setup.publish("cs-01", "cs-01-noise", "{not json");
    setup.publish("cs-01", "nobody", &reading(t0 + 62_000, "noise", 50.0));
    setup.publish(
        "cs-01",
        "cs-01-noise",
        &format!(
            "{{\"ts\": {}, \"metric\": \"noise\", \"value\": \"NaN\"}}",
            t0 + 63_000
        ),
    );
    setup.publish(
        "cs-01",
        "cs-01-noise",
        &reading(4_200_000_000_000, "noise", 50.0),
    );
    // a device clock five minutes fast: its reading is refused (it would make everyone late)
    let fast = yujing::store::now_ms() + 5 * 60_000;
    setup.publish("cs-02", "cs-02-noise", &reading(fast, "noise", 50.0));
    setup.publish("cs-02", "cs-02-noise", &reading(t0 + 64_000, "noise", 50.0));
    let big = format!(
        "{{\"ts\": {}, \"metric\": \"noise\", \"value\": 1, \"pad\": \"{}\"}}",
        t0,
        "x".repeat(70_000)
    );
    setup.publish("cs-01", "cs-01-noise", &big);
    wait_until(10, "rejections in /metrics", || async {
        let m = svc.metrics().await;
        [
            ("malformed", 1),
            ("unknown_device", 1),
            ("non_finite", 1),
            ("bad_timestamp", 2),
            ("oversize", 1),
            ("late", 0),
        ]
        .iter()
        .all(|(r, n)| {
            m.contains(&format!(
                "yujing_input_rejected_total{{connector=\"mqtt\",reason=\"{r}\"}} {n}"
            ))
        })
    })
    .await;
    let on_topic = dead_topic.join().unwrap_or_default();
    assert_eq!(on_topic.lines().count(), 6, "{on_topic}");
    assert!(on_topic.contains("\"reason\":\"malformed\""), "{on_topic}");
    let dead = std::fs::read_to_string(setup.path().join("data/dead.jsonl")).unwrap_or_default();
    assert!(
        dead.contains("\"reason\":\"unknown_device\"") && dead.contains("\"reason\":\"oversize\""),
        "{dead}"
    );
    assert_eq!(svc.get("/healthz", OPERATOR).await.0, 200);
    let (s, doc) = svc.get("/api/v1/openapi.json", "").await;
    assert_eq!((s, doc["openapi"].as_str()), (200, Some("3.1.0")));
    let m = svc.metrics().await;
    assert!(
        m.contains("yujing_dispatch_deliveries_total{channel=\"webhook\",outcome=\"delivered\"} 1"),
        "{m}"
    );
    assert!(m.contains(
        "yujing_warnings_transitions_total{kind=\"raise\",level=\"red\",rule=\"noise_max\"} 1"
    ));
    assert!(m.contains("yujing_api_refused_total{status=\"403\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_rule_file_on_reload_leaves_the_old_rules_running() {
    let rx = Receiver::default();
    let hook = rx.start().await;
    let setup = Setup::new("reload", &hook, mosquitto(), "");
    let svc = Service::start(setup.path());
    svc.ready().await;
    let t0 = base_minute();
    // a window of cs-02 is open when the edit comes
    setup.publish("cs-02", "cs-02-noise", &reading(t0 + 5_000, "noise", 75.0));

    let broken = RULES.replace(
        "aggregate: max\n    above: {yellow: 70",
        "aggregate: maxx\n    above: {yellow: 70",
    );
    std::fs::write(setup.path().join("rules/test.yaml"), &broken).expect("write");
    let (s, res) = svc.post("/api/v1/reload", ADMIN, "").await;
    assert_eq!(s, 422, "{res}");
    let errors: Vec<String> = res["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("rules/test.yaml:7:16:") && e.contains("maxx")),
        "{errors:?}"
    );
    let (_, rules) = svc.get("/api/v1/rules", OPERATOR).await;
    assert_eq!(rules["last_reload"]["ok"], false);
    assert_eq!(rules["rules"].as_array().map(Vec::len), Some(2));
    assert!(
        svc.metric("yujing_config_reloads_total{result=\"error\"}")
            .await
            >= 1.0
    );

    // the old rules still run, with the window that was open before the edit
    setup.publish("cs-02", "cs-02-noise", &reading(t0 + 61_000, "noise", 40.0));
    let got = rx
        .wait_for(10, "a warning from the old rules", |g| !g.is_empty())
        .await;
    assert_eq!(got[0].doc["site"]["id"], "cs-02");
    assert_eq!(got[0].doc["level"], "yellow");

    // a fixed file (one rule edited) reloads by file watch; the unchanged rule keeps its state
    let edited = RULES.replace(
        "above: {red: site.warning_level_m}",
        "above: {orange: site.warning_level_m - 0.5, red: site.warning_level_m}",
    );
    std::fs::write(setup.path().join("rules/test.yaml"), &edited).expect("write");
    wait_until(10, "the file-watch reload", || async {
        let (_, r) = svc.get("/api/v1/rules", OPERATOR).await;
        r["last_reload"]["ok"] == true && r["last_reload"]["trigger"] == "file change"
    })
    .await;
    let (_, r) = svc.get("/api/v1/rules", OPERATOR).await;
    assert_eq!(
        (
            r["last_reload"]["kept"].as_u64(),
            r["last_reload"]["reset"].as_u64()
        ),
        (Some(1), Some(1)),
        "{r}"
    );
    // SIGHUP reloads too
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &svc.child.id().to_string()])
        .status();
    wait_until(10, "the SIGHUP reload", || async {
        let (_, r) = svc.get("/api/v1/rules", OPERATOR).await;
        r["last_reload"]["trigger"] == "SIGHUP"
    })
    .await;
    // the warning raised before the reload clears under the same id (state kept)
    setup.publish(
        "cs-02",
        "cs-02-noise",
        &reading(t0 + 121_000, "noise", 40.0),
    );
    let id = got[0].doc["id"].clone();
    rx.wait_for_transition(10, "clear", Some(&id)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_delivery_then_restart_delivers_every_warning_once() {
    let rx = Receiver::default();
    // a slow endpoint: deliveries have arrived but are not answered when the process dies
    rx.delay_ms
        .store(3_000, std::sync::atomic::Ordering::SeqCst);
    let hook = rx.start().await;
    let setup = Setup::new("kill9", &hook, mosquitto(), "");
    let mut svc = Service::start(setup.path());
    svc.ready().await;
    let t0 = base_minute();
    // one source: event time is shared, so every device's minute goes before the next minute
    let devices = [
        ("rv-01", "rv-01-gauge", "water_level", 42.5, 41.0),
        ("cs-01", "cs-01-noise", "noise", 90.0, 50.0),
        ("cs-02", "cs-02-noise", "noise", 90.0, 50.0),
        ("cs-03", "cs-03-noise", "noise", 90.0, 50.0),
    ];
    for (i, minute) in [1_000, 61_000, 121_000].into_iter().enumerate() {
        for (site, dev, metric, high, low) in devices {
            setup.publish(
                site,
                dev,
                &reading(t0 + minute, metric, if i == 0 { high } else { low }),
            );
        }
    }
    // a raise and a clear at each of four sites: 8 transitions, one delivery each
    wait_until(10, "transitions stored", || async {
        svc.metric(
            "yujing_warnings_transitions_total{kind=\"clear\",level=\"red\",rule=\"noise_max\"}",
        )
        .await
            >= 3.0
    })
    .await;
    rx.wait_for(10, "deliveries under way", |g| g.len() >= 4)
        .await;
    svc.kill9();
    let before = rx.all().len();
    println!("received, unanswered, at kill -9: {before}");
    rx.delay_ms.store(0, std::sync::atomic::Ordering::SeqCst);

    let svc = Service::start(setup.path());
    svc.ready().await;
    let got = rx
        .wait_for(20, "every transition delivered", |g| {
            g.iter()
                .map(|x| x.key.as_str())
                .collect::<BTreeSet<_>>()
                .len()
                >= 8
        })
        .await;
    // nothing more arrives: no warning doubled by the restart
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got2 = rx.all();
    let keys: BTreeMap<&str, usize> = got2.iter().fold(BTreeMap::new(), |mut m, g| {
        *m.entry(g.key.as_str()).or_default() += 1;
        m
    });
    assert_eq!(keys.len(), 8, "distinct deliveries: {keys:#?}");
    assert!(got.iter().all(|g| g.signature_ok));
    // a repeat can only be a delivery that was under way at the kill, and it carries the same
    // idempotency key, so the receiver acts on each warning transition once
    let repeats: usize = keys.values().map(|n| n - 1).sum();
    println!("repeated deliveries (under way at kill -9, same key): {repeats}");
    assert!(repeats <= before, "{keys:#?}");
    assert!(keys.values().all(|&n| n <= 2), "{keys:#?}");
    let (_, list) = svc.get("/api/v1/warnings", OPERATOR).await;
    assert_eq!(list["total"], 4, "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_is_down_for_a_while_gets_everything_once_it_is_back() {
    let rx = Receiver::default();
    rx.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let hook = rx.start().await;
    let setup = Setup::new("down", &hook, mosquitto(), "");
    let svc = Service::start(setup.path());
    svc.ready().await;
    let t0 = base_minute();
    setup.publish_lines(
        "cs-01",
        "cs-01-noise",
        &[
            reading(t0 + 1_000, "noise", 88.0),
            reading(t0 + 61_000, "noise", 50.0),
            reading(t0 + 121_000, "noise", 50.0),
        ],
    );
    wait_until(10, "failed attempts", || async {
        rx.refused.load(std::sync::atomic::Ordering::SeqCst) >= 4
    })
    .await;
    let (_, list) = svc.get("/api/v1/warnings", OPERATOR).await;
    let id = ids(&list)[0].clone();
    let (_, d) = svc.get(&format!("/api/v1/warnings/{id}"), OPERATOR).await;
    assert!(
        kinds(&d["timeline"]).iter().any(|k| k == "delivery_failed"),
        "{d}"
    );
    assert!(
        svc.metric("yujing_dispatch_deliveries_total{channel=\"webhook\",outcome=\"failed\"}")
            .await
            >= 4.0
    );
    rx.down.store(false, std::sync::atomic::Ordering::SeqCst);
    let got = rx
        .wait_for(10, "raise and clear delivered", |g| g.len() >= 2)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.all().len(), 2, "each delivered once: {got:#?}");
    let (_, d) = svc.get(&format!("/api/v1/warnings/{id}"), OPERATOR).await;
    assert!(
        d["deliveries"]
            .as_array()
            .is_some_and(|a| a.iter().all(|x| x["state"] == "delivered")),
        "{d}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_deadline_reminds_the_department_then_copies_the_supervisor() {
    let rx = Receiver::default();
    let hook = rx.start().await;
    let setup = Setup::new(
        "deadline",
        &hook,
        mosquitto(),
        "deadlines:\n  red: {ack: 1s, handle: 1h}",
    );
    let svc = Service::start(setup.path());
    svc.ready().await;
    let t0 = base_minute();
    setup.publish_lines(
        "rv-01",
        "rv-01-gauge",
        &[
            reading(t0 + 1_000, "water_level", 42.4),
            reading(t0 + 61_000, "water_level", 42.6),
        ],
    );
    let got = rx
        .wait_for(15, "warning, reminder, supervisor copy", |g| {
            g.iter().any(|x| x.department == "dcs")
                && g.iter().any(|x| x.key.contains(":reminder-ack:slj:"))
        })
        .await;
    let sup = got
        .iter()
        .find(|x| x.department == "dcs")
        .expect("supervisor copy");
    assert_eq!(sup.doc["notice"]["kind"], "supervisor");
    assert_eq!(sup.doc["notice"]["overdue"], "ack");
    let id = sup.doc["id"].as_str().expect("id");
    let (_, d) = svc.get(&format!("/api/v1/warnings/{id}"), SLJ).await;
    let k = kinds(&d["timeline"]);
    let pos = |w: &str| k.iter().position(|x| x == w);
    assert!(
        pos("raised") < pos("reminder") && pos("reminder") < pos("supervisor_notified"),
        "{k:?}"
    );
    assert_eq!(d["overdue"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_restarted_mid_stream_loses_no_qos1_reading() {
    let Some(mut broker) = PrivateBroker::start() else {
        eprintln!("skipped: no mosquitto binary");
        return;
    };
    let rx = Receiver::default();
    let hook = rx.start().await;
    let setup = Setup::new("restart", &hook, broker.port, "");
    let svc = Service::start(setup.path());
    svc.ready().await;
    let t0 = base_minute();
    let first: Vec<String> = (0..200)
        .map(|i| reading(t0 + i * 100, "noise", 50.0))
        .collect();
    setup.publish_lines("cs-01", "cs-01-noise", &first);
    wait_until(10, "the first 200 readings", || async {
        svc.metric("yujing_input_readings_total{connector=\"mqtt\"}")
            .await
            >= 200.0
    })
    .await;
    broker.restart();
    // published while yujing is still reconnecting: the broker keeps them for its session
    let second: Vec<String> = (200..400)
        .map(|i| reading(t0 + i * 100, "noise", 50.0))
        .collect();
    setup.publish_lines("cs-01", "cs-01-noise", &second);
    wait_until(30, "all 400 readings", || async {
        svc.metric("yujing_input_readings_total{connector=\"mqtt\"}")
            .await
            >= 400.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        svc.metric("yujing_input_readings_total{connector=\"mqtt\"}")
            .await,
        400.0
    );
    assert_eq!(
        svc.metric("yujing_connector_up{connector=\"mqtt\"}").await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_over_tls_with_a_password_and_a_refused_login_keeps_the_service_up() {
    let Some(broker) = PrivateBroker::start_secure() else {
        eprintln!("skipped: no mosquitto binary");
        return;
    };
    let ca = broker.dir.path().join("ca.crt");
    let rx = Receiver::default();
    let hook = rx.start().await;
    let mqtt = format!(
        "host = \"localhost\"\nusername = \"iot\"\npassword = \"iotpass\"\nca_file = \"{}\"",
        ca.display()
    );
    let mut setup = Setup::with_mqtt("tls", &hook, broker.port, "", &mqtt);
    setup.pub_args = [
        "-h",
        "localhost",
        "--cafile",
        &ca.display().to_string(),
        "-u",
        "iot",
        "-P",
        "iotpass",
    ]
    .map(String::from)
    .to_vec();
    let svc = Service::start(setup.path());
    svc.ready().await;
    let t0 = base_minute();
    setup.publish_lines(
        "cs-01",
        "cs-01-noise",
        &[
            reading(t0 + 1_000, "noise", 86.0),
            reading(t0 + 61_000, "noise", 50.0),
        ],
    );
    let got = rx
        .wait_for(10, "a warning over TLS", |g| !g.is_empty())
        .await;
    assert_eq!(got[0].doc["level"], "red");

    // a wrong password: the service runs, is not ready, and says so
    let bad = mqtt.replace("iotpass", "wrong");
    let setup2 = Setup::with_mqtt("tls-bad", &hook, broker.port, "", &bad);
    let svc2 = Service::start(setup2.path());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = svc2
        .http
        .get(format!("{}/readyz", svc2.base))
        .send()
        .await
        .expect("readyz");
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(
        svc2.metric("yujing_connector_up{connector=\"mqtt\"}").await,
        0.0
    );
    assert_eq!(svc2.get("/healthz", "").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wecom_and_dingtalk_robots_get_their_formats_and_dingtalk_its_signed_url() {
    use axum::extract::{Query, State};
    use std::sync::{Arc, Mutex};
    /// (robot kind, body, query parameters)
    type Call = (String, Value, BTreeMap<String, String>);
    #[derive(Clone, Default)]
    struct Robots {
        got: Arc<Mutex<Vec<Call>>>,
        fail_first: Arc<std::sync::atomic::AtomicBool>,
    }
    async fn robot(
        State(r): State<Robots>,
        axum::extract::Path(kind): axum::extract::Path<String>,
        Query(q): Query<BTreeMap<String, String>>,
        body: axum::body::Bytes,
    ) -> String {
        if kind == "dingtalk" {
            // DingTalk's check: sign = base64(HMAC-SHA256(secret, "<timestamp>\n<secret>"))
            let ts: i64 = q.get("timestamp").and_then(|t| t.parse().ok()).unwrap_or(0);
            let want = yujing::dispatch::channel::dingtalk_url("http://x/?a=b", "SECding", ts)
                .expect("url");
            let sign = q.get("sign").cloned().unwrap_or_default();
            let expected: BTreeMap<String, String> = url::Url::parse(&want)
                .expect("url")
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            if expected.get("sign") != Some(&sign)
                || (yujing::store::now_ms() - ts).abs() > 3_600_000
            {
                return r#"{"errcode": 310000, "errmsg": "sign not match"}"#.into();
            }
        }
        if r.fail_first
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return r#"{"errcode": 45009, "errmsg": "api freq out of limit"}"#.into();
        }
        let doc: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if let Ok(mut g) = r.got.lock() {
            g.push((kind, doc, q));
        }
        r#"{"errcode": 0, "errmsg": "ok"}"#.into()
    }
    let robots = Robots::default();
    robots
        .fail_first
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let app = axum::Router::new()
        .route("/{kind}", axum::routing::post(robot))
        .with_state(robots.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", l.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(l, app).await });

    let setup = Setup::new("robots", "http://127.0.0.1:9", mosquitto(), "");
    setup.write_routes(&format!(
        "channels:
  - {{id: zjj-wecom, type: wecom, url: \"{base}/wecom?key=k1\"}}
  - {{id: zjj-ding, type: dingtalk, url: \"{base}/dingtalk?access_token=t1\", secret: ding}}
  - {{id: board, type: mqtt}}
departments:
  zjj: {{channels: [zjj-wecom, zjj-ding, board]}}
"
    ));
    let toml = std::fs::read_to_string(setup.path().join("yujing.toml")).expect("toml");
    std::fs::write(
        setup.path().join("yujing.toml"),
        toml.replace("[secrets]\n", "[secrets]\nding = \"SECding\"\n"),
    )
    .expect("toml");
    let svc = Service::start(setup.path());
    svc.ready().await;
    // the MQTT channel: yujing/warnings/{department} (outside the test's prefix, as configured)
    let board = setup.subscribe_exact("yujing/warnings/zjj", 1);
    let t0 = base_minute();
    setup.publish_lines(
        "cs-02",
        "cs-02-noise",
        &[
            reading(t0 + 1_000, "noise", 87.5),
            reading(t0 + 61_000, "noise", 50.0),
        ],
    );
    wait_until(15, "both robots", || async {
        robots.got.lock().map(|g| g.len() >= 2).unwrap_or(false)
    })
    .await;
    let got = robots.got.lock().map(|g| g.clone()).unwrap_or_default();
    let wecom = got.iter().find(|g| g.0 == "wecom").expect("wecom");
    assert_eq!(wecom.1["msgtype"], "markdown");
    let content = wecom.1["markdown"]["content"].as_str().unwrap_or("");
    assert!(
        content.contains("【红色预警·发布】城西工地施工噪声超标"),
        "{content}"
    );
    assert_eq!(wecom.2.get("key").map(String::as_str), Some("k1"));
    let ding = got.iter().find(|g| g.0 == "dingtalk").expect("dingtalk");
    assert!(
        ding.1["markdown"]["text"]
            .as_str()
            .unwrap_or("")
            .contains("城西工地噪声最大值87.5"),
        "{}",
        ding.1
    );
    assert_eq!(ding.2.get("access_token").map(String::as_str), Some("t1"));
    let on_board: Value =
        serde_json::from_str(board.join().unwrap_or_default().trim()).expect("warning on MQTT");
    assert_eq!(on_board["site"]["id"], "cs-02");
    assert_eq!(on_board["rule"], "noise_max");
    // the robot's first refusal (errcode 45009) was retried
    let (_, list) = svc.get("/api/v1/warnings", OPERATOR).await;
    let id = list["items"][0]["id"].as_str().expect("id").to_string();
    let (_, d) = svc.get(&format!("/api/v1/warnings/{id}"), OPERATOR).await;
    let failed = d["timeline"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["kind"] == "delivery_failed"))
        .expect("a failed attempt");
    assert!(
        failed["detail"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("45009"),
        "{failed}"
    );
    wait_until(10, "the MQTT delivery confirmed by PUBACK", || async {
        let (_, d) = svc.get(&format!("/api/v1/warnings/{id}"), OPERATOR).await;
        d["timeline"].as_array().is_some_and(|a| {
            a.iter()
                .any(|e| e["kind"] == "delivered" && e["detail"]["status"] == "PUBACK")
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_a_firing_warning_continues_under_its_id() {
    let rx = Receiver::default();
    let hook = rx.start().await;
    let setup = Setup::new("resume", &hook, mosquitto(), "");
    let mut svc = Service::start(setup.path());
    svc.ready().await;
    let t0 = base_minute();
    setup.publish_lines(
        "cs-03",
        "cs-03-noise",
        &[
            reading(t0 + 1_000, "noise", 90.0),
            reading(t0 + 61_000, "noise", 90.0),
        ],
    );
    let first = rx.wait_for(10, "the raise", |g| !g.is_empty()).await;
    let id = first[0].doc["id"].clone();
    let status = svc.stop();
    assert!(status.success(), "SIGTERM drains and exits 0: {status:?}");
    let svc = Service::start(setup.path());
    svc.ready().await;
    // the window still open at the stop was not judged early; the next ones clear the warning
    setup.publish_lines(
        "cs-03",
        "cs-03-noise",
        &[
            reading(t0 + 121_000, "noise", 40.0),
            reading(t0 + 181_000, "noise", 40.0),
        ],
    );
    let clear = rx.wait_for_transition(10, "clear", None).await;
    assert_eq!(clear.doc["id"], id, "the same warning, not a new one");
    assert_eq!(clear.doc["seq"], 1);
    let (_, list) = svc.get("/api/v1/warnings", OPERATOR).await;
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["items"][0]["status"], "cleared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_rule_starts_afresh_but_its_firing_warning_keeps_its_id() {
    let rx = Receiver::default();
    let hook = rx.start().await;
    let setup = Setup::new("edit", &hook, mosquitto(), "");
    let svc = Service::start(setup.path());
    svc.ready().await;
    let t0 = base_minute();
    setup.publish_lines(
        "cs-01",
        "cs-01-noise",
        &[
            reading(t0 + 1_000, "noise", 90.0),
            reading(t0 + 61_000, "noise", 90.0),
        ],
    );
    let first = rx.wait_for(10, "the raise", |g| !g.is_empty()).await;
    let id = first[0].doc["id"].clone();
    // edit the firing rule itself: its windows start empty, its warning carries on
    std::fs::write(
        setup.path().join("rules/test.yaml"),
        RULES.replace("title: 施工噪声超标", "title: 建筑施工噪声超标"),
    )
    .expect("write");
    wait_until(10, "the reload", || async {
        let (_, r) = svc.get("/api/v1/rules", OPERATOR).await;
        r["last_reload"]["ok"] == true && r["last_reload"]["reset"] == 1
    })
    .await;
    setup.publish_lines(
        "cs-01",
        "cs-01-noise",
        &[
            reading(t0 + 121_000, "noise", 40.0),
            reading(t0 + 181_000, "noise", 40.0),
        ],
    );
    let clear = rx.wait_for_transition(10, "clear", None).await;
    assert_eq!(clear.doc["id"], id, "the same warning");
    assert_eq!(clear.doc["seq"], 1);
    let (_, list) = svc.get("/api/v1/warnings", OPERATOR).await;
    assert_eq!(list["total"], 1, "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_department_response_report() {
    let rx = Receiver::default();
    let hook = rx.start().await;
    let setup = Setup::new("report", &hook, mosquitto(), "");
    let mut svc = Service::start(setup.path());
    svc.ready().await;
    let t0 = base_minute();
    setup.publish("cs-01", "cs-01-noise", &reading(t0 + 10_000, "noise", 91.0));
    setup.publish("cs-01", "cs-01-noise", &reading(t0 + 61_000, "noise", 50.0));
    let w = rx.wait_for_transition(10, "raise", None).await;
    let id = w.doc["id"].as_str().expect("id").to_string();
    assert_eq!(
        svc.post(&format!("/api/v1/warnings/{id}/ack"), ZJJ, "")
            .await
            .0,
        200
    );
    let body = r#"{"measures": "停止夜间施工", "result": "噪声已达标"}"#;
    assert_eq!(
        svc.post(&format!("/api/v1/warnings/{id}/feedback"), ZJJ, body)
            .await
            .0,
        200
    );

    let (code, r) = svc.get("/api/v1/report", OPERATOR).await;
    assert_eq!(code, 200, "{r}");
    let zjj = r["departments"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["department"] == "zjj"))
        .cloned()
        .expect("zjj row");
    assert_eq!(
        (
            zjj["warnings"].as_u64(),
            zjj["acknowledged"].as_u64(),
            zjj["handled"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(zjj["by_level"]["red"], 1);
    assert_eq!(zjj["feedback_completeness"], 1.0);
    assert!(zjj["ack_minutes_median"].as_f64().is_some_and(|m| m >= 0.0));
    let (_, mine) = svc.get("/api/v1/report", SLJ).await;
    assert_eq!(
        mine["departments"].as_array().map(Vec::len),
        Some(0),
        "a department sees only its own row"
    );

    // the command line, over the same store, after the service stopped
    assert!(svc.stop().success());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_yujing"))
        .args(["report", "-c"])
        .arg(setup.path().join("yujing.toml"))
        .args(["--from", "2020-01-01", "--to", "2100-01-01", "--csv"])
        .arg(setup.path().join("r.csv"))
        .arg("--html")
        .arg(setup.path().join("r.html"))
        .output()
        .expect("yujing report");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("zjj 住房和城乡建设局"), "{stdout}");
    let csv = std::fs::read_to_string(setup.path().join("r.csv")).expect("csv");
    assert!(
        csv.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("zjj,\"住房和城乡建设局\",1,0,0,0,1,1,1,0,")),
        "{csv}"
    );
    let html = std::fs::read_to_string(setup.path().join("r.html")).expect("html");
    assert!(html.contains("部门预警处置考评") && html.contains("<svg"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_logins_are_limited_and_cookies_secure_behind_https() {
    let rx = Receiver::default();
    let hook = rx.start().await;
    let setup = Setup::new("logins", &hook, mosquitto(), "");
    let svc = Service::start(setup.path());
    svc.ready().await;
    let login = |token: &str, https: bool| {
        let mut r = svc
            .http
            .post(format!("{}/ui/login", svc.base))
            .header("content-type", "application/json")
            .body(format!("{{\"token\": \"{token}\"}}"));
        if https {
            r = r.header("x-forwarded-proto", "https");
        }
        r.send()
    };
    let ok = login(OPERATOR, true).await.expect("login");
    assert_eq!(ok.status().as_u16(), 200);
    let cookie = ok
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    for _ in 0..10 {
        assert_eq!(
            login("guess", false)
                .await
                .expect("login")
                .status()
                .as_u16(),
            401
        );
    }
    assert_eq!(
        login("guess", false)
            .await
            .expect("login")
            .status()
            .as_u16(),
        429,
        "the eleventh failed login within a minute is refused"
    );
}

/// The history archive across a `kill -9`: readings processed before the kill (some sealed as
/// Parquet, the rest still in the staging file) and after the restart are all in the archive,
/// once each, and `yujing query` counts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_keeps_every_reading_across_a_kill_9() {
    let rx = Receiver::default();
    let hook = rx.start().await;
    let setup = Setup::new("archive", &hook, mosquitto(), "");
    let toml = setup.path().join("yujing.toml");
    let mut text = std::fs::read_to_string(&toml).expect("toml");
    text.push_str("[archive]\ndir = \"data/archive\"\nflush_every = \"3s\"\n");
    std::fs::write(&toml, text).expect("toml");
    let mut svc = Service::start(setup.path());
    svc.ready().await;
    let t0 = base_minute();
    let readings = |from: i64, n: i64| -> Vec<String> {
        (from..from + n)
            .map(|i| reading(t0 + i * 5_000, "noise", 50.0 + (i % 7) as f64))
            .collect()
    };
    setup.publish_lines("cs-01", "cs-01-noise", &readings(0, 30));
    wait_until(20, "30 readings taken", || async {
        svc.metric("yujing_input_readings_total{connector=\"mqtt\"}")
            .await
            >= 30.0
    })
    .await;
    // sealed once at least, then more readings that (mostly) are still in the staging file at
    // the kill
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    setup.publish_lines("cs-01", "cs-01-noise", &readings(30, 20));
    wait_until(20, "50 readings taken", || async {
        svc.metric("yujing_input_readings_total{connector=\"mqtt\"}")
            .await
            >= 50.0
    })
    .await;
    // the broker has the acknowledgements (a message processed but not yet acknowledged at the
    // kill would come again: at least once)
    tokio::time::sleep(Duration::from_millis(300)).await;
    svc.kill9();
    let staging = setup.path().join("data/archive/staging");
    let left: usize = std::fs::read_dir(&staging)
        .expect("staging")
        .flatten()
        .map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .lines()
                .count()
        })
        .sum();
    println!("readings in staging at kill -9: {left}");

    let mut svc = Service::start(setup.path());
    svc.ready().await;
    setup.publish_lines("cs-01", "cs-01-noise", &readings(50, 10));
    wait_until(20, "10 more readings taken", || async {
        svc.metric("yujing_input_readings_total{connector=\"mqtt\"}")
            .await
            >= 10.0
    })
    .await;
    assert!(svc.stop().success());
    let v = query_archive(
        &setup.path().join("data/archive"),
        "SELECT count(*) AS n, count(DISTINCT ts) AS times, min(source) AS source \
         FROM readings WHERE device = 'cs-01-noise'",
    );
    assert_eq!(v[0]["times"], 60, "{v}");
    assert_eq!(v[0]["n"], 60, "every reading once: {v}");
    assert_eq!(v[0]["source"], "mqtt");
    // nothing left to seal after a clean stop
    let pending = std::fs::read_dir(&staging)
        .expect("staging")
        .flatten()
        .filter(|e| {
            std::fs::metadata(e.path())
                .map(|m| m.len() > 0)
                .unwrap_or(false)
        })
        .count();
    assert_eq!(pending, 0);
}
