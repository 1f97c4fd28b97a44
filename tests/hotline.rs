//! 12345 tickets through the real binary: posted over HTTP, validated, matched to sites (credit
//! code, site id, address keywords), unmatched ones assigned by an operator, updates of the same
//! ticket, and three noise complaints raising a warning that lists them, delivered to the
//! construction bureau's signed webhook.

mod service;

use serde_json::Value;
use service::*;

fn ticket(number: &str, ts: i64, extra: &str) -> String {
    format!("{{\"number\": \"{number}\", \"channel\": \"phone\", \"category\": \"夜间施工噪声\", \"received_at\": {ts}, \"content\": \"半夜施工很吵\"{extra}}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_are_matched_counted_and_listed_as_evidence() {
    let rx = Receiver::default();
    let hook = rx.start().await;
    let setup = Setup::new("hotline", &hook, mosquitto(), "");
    std::fs::write(setup.path().join("sites.yaml"), SITES_WITH_ENTERPRISE).expect("sites");
    std::fs::write(setup.path().join("rules/test.yaml"), TICKET_RULES).expect("rules");
    let svc = Service::start(setup.path());
    svc.ready().await;
    let t0 = base_minute();

    // matched by the enterprise's credit code (lower case is fine)
    let (code, t) = svc
        .post("/api/v1/hotline/tickets", OPERATOR, &ticket("12345-001", t0 + 10_000, ", \"credit_code\": \"91330100ma27xl3q2u\", \"enterprise\": \"某建设有限公司\", \"industry\": \"建筑业\", \"department\": \"zjj\""))
        .await;
    assert_eq!(code, 201, "{t}");
    assert_eq!(
        (
            t["site"].as_str(),
            t["matched_by"].as_str(),
            t["concern"].as_str()
        ),
        (Some("cs-01"), Some("credit_code"), Some("noise"))
    );
    assert_eq!(t["problems"], serde_json::json!([]));
    // matched by an address keyword
    let (code, t) = svc
        .post(
            "/api/v1/hotline/tickets",
            OPERATOR,
            &ticket("12345-002", t0 + 20_000, ", \"address\": \"东湖路18号\""),
        )
        .await;
    assert_eq!((code, t["matched_by"].as_str()), (201, Some("keyword")));
    // no site found, and a bad credit code: kept, flagged, waiting for an operator
    let (code, t) = svc
        .post(
            "/api/v1/hotline/tickets",
            OPERATOR,
            &ticket(
                "12345-003",
                t0 + 30_000,
                ", \"credit_code\": \"91330100MA27XL3Q20\"",
            ),
        )
        .await;
    assert_eq!(code, 201);
    assert_eq!(t["site"], Value::Null);
    assert!(
        t["problems"][0]
            .as_str()
            .is_some_and(|p| p.contains("check character")),
        "{t}"
    );
    let (_, list) = svc
        .get("/api/v1/hotline/tickets?unmatched=true", OPERATOR)
        .await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    // the operator assigns it; it counts now
    let (code, t) = svc
        .post(
            "/api/v1/hotline/tickets/12345-003/assign",
            OPERATOR,
            "{\"site\": \"cs-01\"}",
        )
        .await;
    assert_eq!(
        (code, t["matched_by"].as_str()),
        (200, Some("manual")),
        "{t}"
    );
    let (code, _) = svc
        .post(
            "/api/v1/hotline/tickets/12345-003/assign",
            OPERATOR,
            "{\"site\": \"rv-01\"}",
        )
        .await;
    assert_eq!(code, 409, "a counted ticket does not move");
    // an update of the same ticket: status and result, not a second complaint
    let (code, t) = svc
        .post(
            "/api/v1/hotline/tickets",
            OPERATOR,
            "{\"number\": \"12345-001\", \"status\": \"处理中\", \"result\": \"已联系施工单位\"}",
        )
        .await;
    assert_eq!(
        (code, t["updates"].as_i64(), t["status"].as_str()),
        (200, Some(1), Some("处理中")),
        "{t}"
    );
    assert_eq!(t["content"], "半夜施工很吵");

    // the noise monitor's next minute closes the window: three complaints -> yellow, tickets as evidence
    setup.publish("cs-01", "cs-01-noise", &reading(t0 + 70_000, "noise", 50.0));
    let got = rx
        .wait_for(15, "the complaints warning", |g| {
            g.iter().any(|x| x.doc["rule"] == "noise_complaints")
        })
        .await;
    let w = got
        .iter()
        .find(|x| x.doc["rule"] == "noise_complaints")
        .expect("warning");
    assert_eq!(
        (
            w.department.as_str(),
            w.doc["level"].as_str(),
            w.doc["value"].as_f64()
        ),
        ("zjj", Some("yellow"), Some(3.0))
    );
    assert!(w.signature_ok);
    let mut numbers: Vec<&str> = w.doc["evidence"]["tickets"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    numbers.sort();
    assert_eq!(
        numbers,
        vec!["12345-001", "12345-002", "12345-003"],
        "{}",
        w.doc
    );

    // who may do what
    let (code, _) = svc
        .post("/api/v1/hotline/tickets", ZJJ, &ticket("x", t0, ""))
        .await;
    assert_eq!(code, 403, "departments do not post tickets");
    let (code, mine) = svc.get("/api/v1/hotline/tickets", ZJJ).await;
    assert_eq!(
        (code, mine["items"].as_array().map(Vec::len)),
        (200, Some(3))
    );
    let (_, theirs) = svc.get("/api/v1/hotline/tickets", SLJ).await;
    assert_eq!(
        theirs["items"].as_array().map(Vec::len),
        Some(0),
        "slj sees no construction tickets"
    );
    let (code, _) = svc
        .post(
            "/api/v1/hotline/tickets",
            OPERATOR,
            "{\"category\": \"噪声\"}",
        )
        .await;
    assert_eq!(code, 400, "a ticket without a number cannot be kept");
    assert_eq!(
        svc.metric("yujing_hotline_tickets_total{outcome=\"new\"}")
            .await,
        3.0
    );
    assert_eq!(
        svc.metric("yujing_hotline_tickets_total{outcome=\"flagged\"}")
            .await,
        1.0
    );
}
