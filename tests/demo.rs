//! `yujing demo`, the README's run command, as a newcomer runs it: no external service, warnings
//! of several levels within minutes at the API, on the live stream and at the departments'
//! (signed) webhooks; a department acknowledges and reports back; Ctrl-C drains and stops.

mod service;

use serde_json::Value;

use std::process::Command;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_raises_warnings_of_several_levels_and_departments_answer_them() {
    let mut demo = service::Demo::start();
    let (base, operator, zjj) = (demo.base.clone(), demo.operator.clone(), demo.zjj.clone());
    let http = reqwest::Client::new();
    let get = |path: String, token: String| {
        let http = http.clone();
        async move {
            let r = http.get(path).bearer_auth(token).send().await.expect("get");
            let t = r.text().await.unwrap_or_default();
            serde_json::from_str::<Value>(&t).unwrap_or(Value::Null)
        }
    };
    // warnings of at least three levels, from the simulated feeds over the embedded broker
    let start = Instant::now();
    let levels = loop {
        let v = get(
            format!("{base}/api/v1/warnings?limit=500"),
            operator.clone(),
        )
        .await;
        let levels: std::collections::BTreeSet<String> = v["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|w| w["level"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let mine = get(
            format!("{base}/api/v1/warnings?department=zjj"),
            zjj.clone(),
        )
        .await;
        if levels.len() >= 3 && mine["total"].as_u64().unwrap_or(0) > 0 {
            break levels;
        }
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "only {levels:?} after 4 minutes"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!("levels seen after {:?}: {levels:?}", start.elapsed());

    // the construction bureau's dust warning: acknowledge, report, read the timeline
    let v = get(
        format!("{base}/api/v1/warnings?department=zjj"),
        zjj.clone(),
    )
    .await;
    let id = v["items"][0]["id"]
        .as_str()
        .expect("a zjj warning")
        .to_string();
    let post = |path: String, body: &'static str| {
        let http = http.clone();
        let zjj = zjj.clone();
        async move {
            http.post(path)
                .bearer_auth(zjj)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("post")
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        post(format!("{base}/api/v1/warnings/{id}/ack"), "").await,
        200
    );
    assert_eq!(
        post(
            format!("{base}/api/v1/warnings/{id}/feedback"),
            r#"{"measures": "洒水降尘，停止土方作业", "result": "PM10已回落"}"#
        )
        .await,
        200
    );
    let d = get(format!("{base}/api/v1/warnings/{id}"), zjj.clone()).await;
    let kinds: Vec<&str> = d["timeline"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["kind"].as_str()).collect())
        .unwrap_or_default();
    for want in ["raised", "delivered", "acknowledged", "feedback"] {
        assert!(kinds.contains(&want), "{want} missing in {kinds:?}");
    }
    // the departments' webhooks arrived signed (the demo's receiver refuses bad signatures
    // and stale timestamps); the list of what arrived needs a token, and a department sees
    // its own
    let hooks = get(format!("{base}/demo/hooks"), operator.clone()).await;
    assert!(hooks["count"].as_u64().unwrap_or(0) >= 3, "{hooks}");
    let anonymous = http
        .get(format!("{base}/demo/hooks"))
        .send()
        .await
        .expect("hooks")
        .status()
        .as_u16();
    assert_eq!(anonymous, 401);
    let own = get(format!("{base}/demo/hooks"), zjj.clone()).await;
    assert!(own["items"]
        .as_array()
        .is_some_and(|a| a.iter().all(|h| h["department"] == "zjj")));
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    assert!(
        metrics
            .contains("yujing_dispatch_deliveries_total{channel=\"mqtt\",outcome=\"delivered\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("yujing_connector_up{connector=\"mqtt\"} 1"));

    // field devices: the HJ 212 dust monitors' readings on cs-02's page, camera counts and
    // events on sa-01's and cs-01's
    let via = |site: Value, device: &str, metric: &str, connector: &str| {
        site["devices"].as_array().is_some_and(|ds| {
            ds.iter().any(|d| {
                d["id"] == device
                    && d["readings"].as_array().is_some_and(|r| {
                        r.iter()
                            .any(|x| x["metric"] == metric && x["via"] == connector)
                    })
            })
        })
    };
    let cs02 = get(format!("{base}/api/v1/sites/cs-02"), operator.clone()).await;
    assert!(via(cs02.clone(), "cs-02-dust", "pm10", "hj212"), "{cs02}");
    assert!(via(cs02, "cs-02-dust-w", "tsp", "hj212"));
    let sa01 = get(format!("{base}/api/v1/sites/sa-01"), operator.clone()).await;
    assert!(
        via(sa01.clone(), "sa-01-cam1", "people_count", "mqtt"),
        "{sa01}"
    );
    assert!(via(sa01, "sa-01-cam1", "fps", "mqtt"));
    assert!(
        metrics.contains("yujing_hj212_packets_total{result=\"ok\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("yujing_camera_events_total{kind=\"edge\"}"),
        "{metrics}"
    );

    // history: the archive answers SQL through the API (operators; not departments)
    let query = |sql: &'static str, token: String| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let r = http
                .post(format!("{base}/api/v1/query"))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(serde_json::json!({ "sql": sql }).to_string())
                .send()
                .await
                .expect("query");
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            (
                status,
                serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
            )
        }
    };
    let daily = "SELECT site, day, count(*) AS n, max(value) AS max FROM readings \
                 WHERE metric = 'pm10' GROUP BY site, day ORDER BY site, day";
    let start = Instant::now();
    let rows = loop {
        // readings are sealed as Parquet every 10 s in the demo
        let (status, v) = query(daily, operator.clone()).await;
        assert_eq!(status, 200, "{v}");
        let rows = v["rows"].as_array().cloned().unwrap_or_default();
        if !rows.is_empty() {
            break rows;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{v}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        rows.iter()
            .any(|r| r["site"] == "cs-01" && r["n"].as_u64().unwrap_or(0) > 0),
        "{rows:?}"
    );
    let (status, v) = query("SELECT count(*) FROM warnings", zjj.clone()).await;
    assert_eq!(status, 403, "{v}");
    let (status, v) = query("DROP TABLE readings", operator.clone()).await;
    assert_eq!(status, 400, "{v}");

    // Ctrl-C (SIGINT) drains and stops
    let _ = Command::new("kill")
        .args(["-INT", &demo.child.id().to_string()])
        .status();
    let status = demo.child.wait().expect("wait");
    let err = demo.stderr();
    assert!(status.success(), "{err}");
    assert!(err.contains("yujing: stopped"), "{err}");

    // after the stop the archive holds every warning the store has, and `yujing query` reads it
    let archive = demo.data.path().join("archive");
    let store = demo.data.path().join("yujing-demo.db");
    let v = service::query_archive(
        &archive,
        "SELECT count(*) AS n, count(DISTINCT id) AS ids FROM warnings",
    );
    let stored = stored_warnings(&store).await;
    assert_eq!(v[0]["n"].as_u64(), Some(stored), "{v}");
    assert_eq!(v[0]["ids"].as_u64(), Some(stored), "{v}");
    let out = Command::new(env!("CARGO_BIN_EXE_yujing"))
        .args(["query", "--archive"])
        .arg(&archive)
        .arg("SELEC 1")
        .output()
        .expect("yujing query");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SELEC"));
}

/// Warnings in the demo's SQLite store.
async fn stored_warnings(db: &std::path::Path) -> u64 {
    let store = yujing::store::Store::open(db, false).await.expect("store");
    let (_, total) = store
        .list(&yujing::store::Filter {
            limit: 1,
            ..Default::default()
        })
        .await
        .expect("list");
    store.close().await;
    total as u64
}
