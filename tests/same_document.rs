//! One warning document, however the readings arrive: the live service (`yujing run`, readings
//! over MQTT) stores, byte for byte, the documents `yujing replay` writes for the same readings.
//! Both go through `warnings::finish`; this holds them to it from outside.

mod service;

use service::*;
use sqlx::Row;
use std::collections::BTreeMap;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_and_replay_store_the_same_documents() {
    let rx = Receiver::default();
    let hook = rx.start().await;
    let setup = Setup::new("same-doc", &hook, mosquitto(), "");
    // red, then yellow, then quiet: a raise, a de-escalation and a clear; the last minute's
    // reading closes the minute before it
    let t0 = base_minute();
    let readings = [
        (t0 + 10_000, 91.0),
        (t0 + 70_000, 75.5),
        (t0 + 130_000, 50.0),
        (t0 + 190_000, 50.0),
    ];

    // live
    let mut svc = Service::start(setup.path());
    svc.ready().await;
    let payloads: Vec<String> = readings
        .iter()
        .map(|(ts, v)| reading(*ts, "noise", *v))
        .collect();
    setup.publish_lines("cs-01", "cs-01-noise", &payloads);
    rx.wait_for(20, "raise, de-escalation and clear delivered", |g| {
        g.iter().any(|w| w.doc["transition"] == "clear")
    })
    .await;
    assert!(svc.stop().success(), "the service stops cleanly");
    let store = yujing::store::Store::open(&setup.path().join("data/yujing.db"), false)
        .await
        .expect("open the store");
    let live: BTreeMap<(String, i64), String> =
        sqlx::query("SELECT warning_id, seq, doc FROM transitions")
            .fetch_all(store.reader())
            .await
            .expect("transitions")
            .iter()
            .map(|r| {
                (
                    (
                        r.try_get("warning_id").expect("id"),
                        r.try_get("seq").expect("seq"),
                    ),
                    r.try_get("doc").expect("doc"),
                )
            })
            .collect();
    store.close().await;

    // replay
    let csv: String = readings
        .iter()
        .map(|(ts, v)| format!("{ts},cs-01,cs-01-noise,noise,{v}\n"))
        .collect();
    let input = setup.path().join("in.csv");
    std::fs::write(&input, csv).expect("write input");
    let out = Command::new(env!("CARGO_BIN_EXE_yujing"))
        .args(["replay", "-q", "-c"])
        .arg(setup.path())
        .arg("-i")
        .arg(&input)
        .output()
        .expect("run yujing replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();

    let kinds: Vec<String> = replayed
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            v["transition"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(kinds, ["raise", "de-escalate", "clear"], "{replayed:#?}");
    assert_eq!(live.len(), replayed.len(), "{live:#?}");
    for line in &replayed {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
        let key = (
            v["id"].as_str().unwrap_or_default().to_string(),
            v["seq"].as_i64().unwrap_or(-1),
        );
        let stored = live
            .get(&key)
            .unwrap_or_else(|| panic!("live stored no transition {key:?}: {live:#?}"));
        assert_eq!(stored, line, "live and replay differ for {key:?}");
    }
}
