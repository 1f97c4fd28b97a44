//! `src/api/openapi.json` names every route the router serves, with its methods, and no other:
//! the router's paths are read from its source, and each path is asked with every method of a
//! running `yujing demo` (the demo serves its webhook receiver too), so a method the router
//! answers that the document does not name fails here, and so does one the document names that
//! the router does not answer.

mod service;

use serde_json::Value;
use std::collections::BTreeSet;

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// The paths `api::router` declares (`.route("/path", ...)`).
fn router_paths() -> BTreeSet<String> {
    let src = include_str!("../src/api/mod.rs");
    let start = src.find("pub fn router(").expect("api::router");
    let body = &src[start..];
    let body = &body[..body.find("\n}\n").expect("end of router")];
    let mut out = BTreeSet::new();
    let mut rest = body;
    while let Some(i) = rest.find(".route(") {
        rest = &rest[i + ".route(".len()..];
        let q = rest.find('"').expect("a path literal");
        let end = rest[q + 1..].find('"').expect("its end") + q + 1;
        out.insert(rest[q + 1..end].to_string());
    }
    out
}

/// (path, method) the document names.
fn documented() -> BTreeSet<(String, String)> {
    let doc: Value = serde_json::from_str(include_str!("../src/api/openapi.json")).expect("json");
    let mut out = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if ops.get(m.to_lowercase()).is_some() {
                out.insert((path.clone(), m.to_string()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_names_every_route_and_no_other() {
    let paths = router_paths();
    assert!(
        paths.len() > 20,
        "read {} paths from api::router",
        paths.len()
    );
    let doc = documented();
    let doc_paths: BTreeSet<String> = doc.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(
        paths, doc_paths,
        "the router's paths (left) and openapi.json's (right) differ"
    );
    let demo = service::Demo::start();
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .expect("client");
    let mut served = BTreeSet::new();
    for path in &paths {
        // a path parameter gets a value no warning, delivery or ticket has
        let concrete = path
            .replace("{department}", "zjj")
            .replace('{', "x-")
            .replace('}', "");
        for m in METHODS {
            let method = reqwest::Method::from_bytes(m.as_bytes()).expect("method");
            let resp = http
                .request(method, format!("{}{concrete}", demo.base))
                .bearer_auth(&demo.admin)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{m} {concrete}: {e}"));
            let status = resp.status().as_u16();
            // the server-sent events never end: the status is enough
            let body = if concrete.ends_with("/stream") {
                String::new()
            } else {
                resp.text().await.unwrap_or_default()
            };
            let unknown = status == 404 && body.contains("no such endpoint");
            if status != 405 && !unknown {
                served.insert((path.clone(), m.to_string()));
            }
        }
    }
    let only_served: Vec<_> = served.difference(&doc).collect();
    let only_doc: Vec<_> = doc.difference(&served).collect();
    assert!(
        only_served.is_empty() && only_doc.is_empty(),
        "served but not in openapi.json: {only_served:?}\nin openapi.json but not served: {only_doc:?}"
    );
}
