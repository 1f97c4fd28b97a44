//! Hostile input and hostile load against the real binary on 127.0.0.1, as an attacker or a
//! careless integrator would try it (docs/security.md): deep and huge SQL, queries abandoned by
//! their clients, robot endpoints down with keys in their URLs, connection floods on the HTTP and
//! HJ 212 ports, HJ 212 packets with wrong passwords and megabytes of garbage, devices inventing
//! metrics, guessed logins, revoked tokens, the 12345 system's token used for anything else. Each
//! checks the service stays healthy and that nothing secret appears in an answer, a timeline or
//! a log line; and that what is refused is counted and dead-lettered, never silently dropped.

mod service;

use proptest::prelude::*;
use serde_json::Value;
use service::hj212::{upload_pw, Monitor};
use service::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Add lines to a table of the setup's yujing.toml (after its header line), or a new table.
fn toml_add(setup: &Setup, table: &str, lines: &str) {
    let p = setup.path().join("yujing.toml");
    let t = std::fs::read_to_string(&p).expect("toml");
    let header = format!("[{table}]\n");
    let t = if t.contains(&header) {
        t.replacen(&header, &format!("{header}{lines}\n"), 1)
    } else {
        format!("{t}\n{header}{lines}\n")
    };
    std::fs::write(p, t).expect("toml");
}

/// The service's peak resident memory so far (VmHWM) in MiB: a spike between two looks
/// counts.
fn rss_mib(svc: &Service) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", svc.child.id())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

async fn healthy(svc: &Service) {
    let r = svc
        .http
        .get(format!("{}/healthz", svc.base))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("/healthz answers");
    assert_eq!(r.status().as_u16(), 200);
}

fn log_of(setup: &Setup) -> String {
    std::fs::read_to_string(setup.path().join("service.log")).unwrap_or_default()
}

fn dead_letters(setup: &Setup) -> Vec<Value> {
    std::fs::read_to_string(setup.path().join("data/dead.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

async fn query(svc: &Service, sql: &str) -> (u16, Value) {
    svc.post(
        "/api/v1/query",
        OPERATOR,
        &serde_json::json!({ "sql": sql }).to_string(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sql_that_would_overflow_a_stack_or_eat_memory_is_refused_and_the_service_lives() {
    let setup = Setup::new("hostile-sql", "http://127.0.0.1:9", mosquitto(), "");
    toml_add(
        &setup,
        "archive",
        "dir = \"data/archive\"\nquery_memory_mib = 16\nquery_answer_mib = 1\nquery_timeout = \"20s\"",
    );
    let svc = Service::start(setup.path());
    svc.ready().await;
    let rss0 = rss_mib(&svc);

    // the issue's two: a thousand-term sum, a WHERE of 1,500 ORs (over 16 KiB)
    let sum = format!("SELECT {}1", "1+".repeat(1_000));
    let (code, v) = query(&svc, &sum).await;
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("deep")),
        "{v}"
    );
    let ors = format!(
        "SELECT count(*) FROM readings WHERE {}",
        (0..1_500)
            .map(|i| format!("value = {i}"))
            .collect::<Vec<_>>()
            .join(" OR ")
    );
    let (code, v) = query(&svc, &ors).await;
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("16384")),
        "{v}"
    );
    // deep in other shapes: parentheses, NOT, nested subqueries, CASE
    for sql in [
        format!("SELECT {}1{}", "(".repeat(3_000), ")".repeat(3_000)),
        format!("SELECT {}true", "NOT ".repeat(2_000)),
        format!("SELECT {}1{}", "(SELECT ".repeat(400), ")".repeat(400)),
        format!(
            "SELECT {} 1 {}",
            "CASE WHEN true THEN".repeat(300),
            " END".repeat(300)
        ),
    ] {
        let (code, v) = query(&svc, &sql).await;
        assert_eq!(code, 400, "{}: {v}", &sql[..60]);
        healthy(&svc).await;
    }
    // one query only: EXPLAIN would plan what the checks did not look at
    let (code, v) = query(&svc, &format!("EXPLAIN SELECT {}1", "1+".repeat(300))).await;
    assert_eq!(code, 400, "{v}");
    // within the limits, deep still works
    let (code, v) = query(&svc, &format!("SELECT {}1 AS n", "1+".repeat(200))).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["rows"][0]["n"], 201);

    // memory: an aggregate over millions of rows past the query's 16 MiB is a 400, not 1.7 GB
    let (code, v) = query(
        &svc,
        "SELECT count(DISTINCT (value * 7919) % 5000011) AS n FROM range(0, 5000000) t(value)",
    )
    .await;
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("16 MiB")),
        "{v}"
    );
    // memory no pool sees: a string built to 2 GB ends the query's worker process, not the
    // service
    let concat = format!(
        "WITH a AS (SELECT repeat('x', 10000000) AS s) SELECT length(concat({})) AS n FROM a",
        vec!["s"; 200].join(", ")
    );
    let (code, v) = query(&svc, &concat).await;
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("memory")),
        "{v}"
    );
    healthy(&svc).await;
    // answers: cut at 1 MiB however many rows were asked for
    let (code, v) = query(&svc, "SELECT repeat('x', 100000) AS big FROM range(0, 100)").await;
    assert_eq!(code, 200, "{v}");
    let rows = v["rows"].as_array().map_or(0, Vec::len);
    assert!((1..20).contains(&rows), "{rows} rows of 100 KB under 1 MiB");
    assert_eq!(v["truncated"], true);
    // a long column name is repeated in every row of the JSON: the cap counts the JSON
    let alias = "c".repeat(10_000);
    let r = svc
        .http
        .post(format!("{}/api/v1/query", svc.base))
        .bearer_auth(OPERATOR)
        .header("content-type", "application/json")
        .body(serde_json::json!({ "sql": format!("SELECT 1 AS {alias} FROM range(0, 10000)"), "limit": 10000 }).to_string())
        .send()
        .await
        .expect("query");
    assert_eq!(r.status().as_u16(), 200);
    let bytes = r.bytes().await.expect("body").len();
    assert!(bytes <= (1 << 20) + 64, "{bytes} bytes");

    // clients that give up: their queries are cancelled, never more than two run, and the
    // places come back once the threads have ended
    let heavy = "SELECT sum(value * 2) AS s FROM range(0, 100000000000) t(value)";
    let mut peak = 0.0f64;
    for _ in 0..6 {
        let http = reqwest::Client::new();
        let _ = http
            .post(format!("{}/api/v1/query", svc.base))
            .bearer_auth(OPERATOR)
            .header("content-type", "application/json")
            .body(serde_json::json!({ "sql": heavy }).to_string())
            .timeout(Duration::from_millis(400))
            .send()
            .await;
        peak = peak.max(svc.metric("yujing_api_queries_running").await);
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        peak = peak.max(svc.metric("yujing_api_queries_running").await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(peak <= 2.0, "{peak} queries ran at once");
    wait_until(15, "abandoned queries to stop", || async {
        svc.metric("yujing_api_queries_running").await == 0.0
    })
    .await;
    let (code, v) = query(&svc, "SELECT 1 AS one").await;
    assert_eq!((code, &v["rows"][0]["one"]), (200, &Value::from(1)), "{v}");
    assert!(
        svc.metric("yujing_api_queries_total{outcome=\"refused\"}")
            .await
            >= 7.0
    );
    healthy(&svc).await;
    let rss = rss_mib(&svc);
    println!("peak RSS {rss0} -> {rss} MiB");
    // the queries' memory was their workers': the service's peak hardly moved
    assert!(rss < rss0 + 150, "peak RSS grew from {rss0} to {rss} MiB");
}

/// The SQL of the query endpoint, as any text: an answer or a refusal, never a panic or an
/// abort, however deep or strange (the same function `POST /api/v1/query` and `yujing query`
/// call, on the service's limits).
fn sql_text() -> impl Strategy<Value = String> {
    let word = prop::sample::select(vec![
        "SELECT",
        "1",
        "+",
        "-",
        "*",
        "/",
        "(",
        ")",
        "OR",
        "AND",
        "NOT",
        "value",
        "FROM",
        "readings",
        "WHERE",
        "site",
        "=",
        "'s1'",
        "count(*)",
        "GROUP BY",
        "ORDER BY",
        "CASE",
        "WHEN",
        "THEN",
        "ELSE",
        "END",
        "IN",
        "(1, 2)",
        ",",
        "array_agg(value)",
        "range(3)",
        "UNION ALL",
        "LIMIT",
        "10",
        "day",
        "ts",
        "NULL",
        "true",
        "'",
        "\"",
        ";",
        "--",
        "sum(value)",
        "AS",
        "x",
        "JOIN",
        "ON",
        "sites",
    ]);
    let soup = prop::collection::vec(word, 0..40).prop_map(|w| w.join(" "));
    let deep = (0usize..4_000, 0usize..9).prop_map(|(n, shape)| match shape {
        0 => format!("SELECT {}1", "1+".repeat(n)),
        1 => format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n)),
        2 => format!("SELECT {}true", "NOT ".repeat(n)),
        3 => format!("SELECT {}1{}", "(SELECT ".repeat(n / 4), ")".repeat(n / 4)),
        4 => format!(
            "SELECT * FROM readings WHERE {}",
            vec!["value = 1"; n.max(1)].join(" OR ")
        ),
        5 => format!("EXPLAIN SELECT {}1", "1+".repeat(n)),
        6 => format!("SELECT 1 AS x{}", " UNION ALL SELECT 1".repeat(n / 8)),
        7 => format!(
            "SELECT count(*) FROM range(2) t0 {}",
            (1..n / 16 + 1)
                .map(|i| format!("JOIN range(2) t{i} ON t0.value = t{i}.value"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        _ => format!("SELECT {}1", "-".repeat(n)),
    });
    prop_oneof![soup, deep]
}

fn sample_archive() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tmp");
    let tz: chrono_tz::Tz = "Asia/Shanghai".parse().expect("tz");
    let mut r = yujing::archive::Recorder::open(tmp.path(), tz).expect("open");
    let t0 = 1_795_793_400_000;
    for i in 0..8 {
        let ts = t0 + i * 1_800_000;
        r.record("s1", "s1-pm", "pm10", 100.0 + i as f64, ts, ts, "mqtt");
    }
    let f = r.rotate().expect("rotate").expect("file");
    yujing::archive::seal(tmp.path(), &f, tz).expect("seal");
    tmp
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn any_sql_text_is_answered_or_refused(sql in sql_text()) {
        use yujing::archive::query::{run_isolated, Limits};
        static ARCHIVE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
        let dir = ARCHIVE.get_or_init(sample_archive).path().to_path_buf();
        let limits = Limits { timeout: Duration::from_secs(10), ..Limits::API };
        let r = run_isolated(dir, sql, 100, limits, tokio_util::sync::CancellationToken::new());
        // an answer, or an error that says what (no panic got through, the process lives)
        if let Err(e) = r {
            prop_assert!(!e.to_string().is_empty());
            prop_assert!(!e.to_string().contains("panicked"), "{e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robot_endpoints_down_never_show_their_keys_and_departments_see_their_own_deliveries() {
    // a port nothing listens on: the robots are down
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let setup = Setup::new("hostile-robots", "http://127.0.0.1:9", mosquitto(), "");
    let wecom_key = "ROBOTKEY-zjj-5b2c7e1f9a";
    let ding_token = "DINGTOKEN-slj-77aa31";
    let ding_secret = "SECdingsecret-slj-0042";
    setup.write_routes(&format!(
        "channels:
  - {{id: zjj-wecom, type: wecom, url: \"http://127.0.0.1:{closed}/cgi-bin/webhook/send?key={wecom_key}\"}}
  - {{id: slj-ding, type: dingtalk, url: \"http://127.0.0.1:{closed}/robot/send?access_token={ding_token}\", secret: ding}}
departments:
  zjj: {{channels: [zjj-wecom]}}
  slj: {{channels: [slj-ding]}}
routes:
  - to: [site, slj]
"
    ));
    toml_add(&setup, "secrets", &format!("ding = \"{ding_secret}\""));
    let svc = Service::start(setup.path());
    svc.ready().await;
    // noise of 90 dB(A) at cs-01 (red), then the next minute closes the window
    let t0 = base_minute();
    setup.publish("cs-01", "cs-01-noise", &reading(t0 + 5_000, "noise", 90.0));
    setup.publish("cs-01", "cs-01-noise", &reading(t0 + 65_000, "noise", 50.0));
    wait_until(30, "both robots' deliveries to fail", || async {
        let (_, d) = svc.get("/api/v1/deliveries", OPERATOR).await;
        let failed = |ch: &str| {
            d["items"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|x| x["channel"] == ch && x["last_error"].is_string())
            })
        };
        failed("zjj-wecom") && failed("slj-ding")
    })
    .await;
    let (_, list) = svc.get("/api/v1/warnings", OPERATOR).await;
    let id = list["items"][0]["id"]
        .as_str()
        .expect("a warning")
        .to_string();
    let secrets = [
        wecom_key,
        ding_token,
        ding_secret,
        "sign=",
        "access_token",
        "key=",
    ];
    let clean = |what: &str, text: &str| {
        for s in secrets {
            assert!(!text.contains(s), "{what} shows `{s}`:\n{text}");
        }
    };
    let (_, w) = svc.get(&format!("/api/v1/warnings/{id}"), OPERATOR).await;
    clean("the operator's warning", &w.to_string());
    let errors: Vec<&str> = w["deliveries"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d["last_error"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("cannot connect (127.0.0.1)")),
        "the error says what and where: {errors:?}"
    );
    let (_, d) = svc.get("/api/v1/deliveries", OPERATOR).await;
    clean("the delivery queue", &d.to_string());
    // the construction bureau shares the warning with the water bureau: it sees its own
    // delivery, not the water bureau's robot
    let (code, z) = svc.get(&format!("/api/v1/warnings/{id}"), ZJJ).await;
    assert_eq!(code, 200, "{z}");
    clean("zjj's warning", &z.to_string());
    let deps: Vec<&str> = z["deliveries"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d["department"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        !deps.is_empty() && deps.iter().all(|d| *d == "zjj"),
        "{deps:?}"
    );
    assert!(
        z["timeline"]
            .as_array()
            .is_some_and(|t| t.iter().all(|e| e["detail"]["department"]
                .as_str()
                .is_none_or(|d| d == "zjj"))),
        "{}",
        z["timeline"]
    );
    assert!(!z.to_string().contains("slj-ding"), "{z}");
    let (_, s) = svc.get(&format!("/api/v1/warnings/{id}"), SLJ).await;
    assert!(s.to_string().contains("slj-ding") && !s.to_string().contains("zjj-wecom"));
    // nor in the log
    clean("the service log", &log_of(&setup));
    healthy(&svc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_and_half_sent_http_connections_cannot_take_the_api_down() {
    let setup = Setup::new("hostile-http", "http://127.0.0.1:9", mosquitto(), "");
    toml_add(
        &setup,
        "http",
        "max_connections = 64\nmax_connections_per_address = 16\nheader_timeout = \"3s\"",
    );
    let svc = Service::start(setup.path());
    svc.ready().await;
    let rss0 = rss_mib(&svc);
    let addr: std::net::SocketAddr = svc
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("address");
    let half_sent = |from: [u8; 4]| async move {
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        sock.bind(std::net::SocketAddr::from((from, 0)))
            .expect("bind");
        let mut s = sock.connect(addr).await.expect("connect");
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
        s
    };
    // 200 half-sent requests from one address: 16 are let in, the rest closed at once; a
    // client from elsewhere is answered at once meanwhile
    let mut flood = Vec::new();
    for _ in 0..200 {
        flood.push(half_sent([127, 0, 0, 2]).await);
    }
    healthy(&svc).await;
    // (the listener takes the flood from its backlog as it comes)
    wait_until(5, "184 refused from one address", || async {
        svc.metric("yujing_connections_refused_total{listener=\"http\",reason=\"per_address\"}")
            .await
            == 184.0
    })
    .await;
    // the ones let in are closed after the header timeout
    let started = Instant::now();
    let mut closed = 0;
    for s in flood.iter_mut() {
        let mut b = [0u8; 512];
        let left = Duration::from_secs(8).saturating_sub(started.elapsed());
        match tokio::time::timeout(left, s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
            // the 503 of a refused one, then its end
            Ok(Ok(_)) => {
                if matches!(
                    tokio::time::timeout(Duration::from_secs(2), s.read(&mut b)).await,
                    Ok(Ok(0)) | Ok(Err(_))
                ) {
                    closed += 1
                }
            }
            Err(_) => {}
        }
    }
    assert_eq!(
        closed, 200,
        "every half-sent request's connection is closed"
    );
    // once every connection is gone but the one asking (no keep-alive pool: a pooled idle
    // connection would be let go at its own header timeout, freeing a place at a random time)
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    wait_until(10, "the earlier connections to close", || async {
        let m = fresh
            .get(format!("{}/metrics", svc.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .unwrap_or_default();
        m.lines().any(|l| l == "yujing_http_connections 1")
    })
    .await;
    // from many addresses: the listener fills to its cap, /healthz gets 503 at once (not a
    // hang), and within the header timeout it is answered again
    let mut flood = Vec::new();
    for host in 3..8u8 {
        for _ in 0..16 {
            flood.push(half_sent([127, 0, 0, host]).await);
        }
    }
    let r = fresh
        .get(format!("{}/healthz", svc.base))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(
        r.as_ref().is_ok_and(|r| r.status().as_u16() == 503) || r.is_err(),
        "over the cap: {r:?}"
    );
    wait_until(
        10,
        "/healthz again once the header timeout frees the places",
        || async {
            svc.http
                .get(format!("{}/healthz", svc.base))
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        },
    )
    .await;
    // (read once there is room again: /metrics is refused too while the listener is full)
    assert!(
        svc.metric("yujing_connections_refused_total{listener=\"http\",reason=\"cap\"}")
            .await
            >= 1.0
    );
    drop(flood);
    wait_until(5, "the connection gauge to settle", || async {
        svc.metric("yujing_http_connections").await <= 2.0
    })
    .await;
    let rss = rss_mib(&svc);
    println!("peak RSS {rss0} -> {rss} MiB");
    assert!(rss < rss0 + 100, "peak RSS grew from {rss0} to {rss} MiB");
}

#[test]
fn the_service_refuses_to_start_when_the_open_file_limit_cannot_cover_its_connections() {
    let setup = Setup::new("hostile-nofile", "http://127.0.0.1:9", mosquitto(), "");
    toml_add(&setup, "hj212", "listen = \"127.0.0.1:0\"");
    // the shell sets both limits: the service cannot raise its own
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 512 && exec '{}' run -c '{}'",
            env!("CARGO_BIN_EXE_yujing"),
            setup.path().join("yujing.toml").display()
        ))
        .output()
        .expect("sh");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("open-file limit is 512") && err.contains("LimitNOFILE"),
        "{err}"
    );
}

/// The harness's sites with an HJ 212 dust monitor at cs-01 that has its own password.
fn hj_sites() -> String {
    let noise = "      - {id: cs-01-noise, metrics: [noise]}\n";
    SITES.replacen(
        noise,
        &format!("{noise}      - {{id: cs-01-dust, metrics: [pm10], hj212_mn: MNHOSTILE000000000000001, hj212_pw: \"s3cr3t\"}}\n"),
        1,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_hj212_port_checks_passwords_and_bounds_connections_and_garbage() {
    let setup = Setup::new("hostile-hj212", "http://127.0.0.1:9", mosquitto(), "");
    std::fs::write(setup.path().join("sites.yaml"), hj_sites()).expect("sites");
    toml_add(
        &setup,
        "hj212",
        "listen = \"127.0.0.1:0\"\nmax_connections = 40\nmax_connections_per_address = 4\nfirst_packet_timeout = \"3s\"",
    );
    let svc = Service::start(setup.path());
    svc.ready().await;
    let rss0 = rss_mib(&svc);
    let addr = svc.hj212.clone().expect("HJ 212 address");
    let mn = "MNHOSTILE000000000000001";
    let t0 = base_minute();
    let value = |v: f64| format!("a34002-Rtd={v},a34002-Flag=N");

    // the factory password is not this monitor's: refused, not acknowledged, the connection
    // closed, and the password never appears in a dead letter
    let mut m = Monitor::connect(&addr).await;
    m.send(&upload_pw(mn, "123456", 1, t0 + 1_000, 5, &value(999.0)))
        .await;
    assert_eq!(
        m.ack(1_000).await,
        None,
        "a wrong password gets no acknowledgement"
    );
    assert!(m.closed_within(2_000).await, "and its connection is closed");
    assert_eq!(
        svc.metric("yujing_input_rejected_total{connector=\"hj212\",reason=\"unauthorized\"}")
            .await,
        1.0
    );
    let dl = dead_letters(&setup);
    let refused = dl
        .iter()
        .find(|d| d["reason"] == "unauthorized")
        .expect("dead-lettered");
    assert!(refused["payload"]
        .as_str()
        .is_some_and(|p| p.contains("PW=***")));
    assert!(!refused.to_string().contains("123456"), "{refused}");
    // the right one is taken and acknowledged
    let mut m = Monitor::connect(&addr).await;
    m.send(&upload_pw(mn, "s3cr3t", 2, t0 + 2_000, 5, &value(80.0)))
        .await;
    assert!(
        m.ack(5_000).await.is_some(),
        "the right password is acknowledged"
    );

    // 2 MB of `#` on the same connection: a handful of dead-letter lines, not a million, and
    // the connection goes on
    let before = dead_letters(&setup).len();
    for _ in 0..512 {
        m.send(&"#".repeat(4096)).await;
    }
    m.send("\r\n").await;
    m.send(&upload_pw(mn, "s3cr3t", 3, t0 + 3_000, 5, &value(81.0)))
        .await;
    assert!(
        m.ack(10_000).await.is_some(),
        "the packet after the garbage is taken"
    );
    let added = dead_letters(&setup).len() - before;
    assert!(
        (1..=5).contains(&added),
        "{added} dead-letter lines for 2 MB of garbage"
    );
    let size = std::fs::metadata(setup.path().join("data/dead.jsonl"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(size < 64 * 1024, "{size} bytes of dead letters");
    assert!(
        svc.metric("yujing_hj212_packets_total{result=\"too_long\"}")
            .await
            >= 1.0
    );

    // one address opening ten connections gets four; those four, sending nothing, are closed
    // at the first-packet deadline; meanwhile the real monitor is acknowledged
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(Monitor::connect_from(&addr, [127, 0, 0, 2]).await);
    }
    // all at once: the four let in are closed only at their deadline, seconds from now
    let mut checks = tokio::task::JoinSet::new();
    for mut c in idle {
        checks.spawn(async move {
            let closed = c.closed_within(1_000).await;
            (c, closed)
        });
    }
    let mut idle = Vec::new();
    let mut refused_at_once = 0;
    while let Some(r) = checks.join_next().await {
        let (c, closed) = r.expect("check");
        if closed {
            refused_at_once += 1;
        } else {
            idle.push(c);
        }
    }
    assert_eq!(refused_at_once, 6, "four from one address, no more");
    m.send(&upload_pw(mn, "s3cr3t", 4, t0 + 4_000, 5, &value(82.0)))
        .await;
    assert!(m.ack(5_000).await.is_some());
    for c in idle.iter_mut() {
        assert!(c.closed_within(6_000).await, "idle connections are closed");
    }
    // a password guesser: ten wrong ones from one address, each closing its connection, and
    // the address is shut out for a minute; the real monitor goes on
    for i in 0..10 {
        let mut g = Monitor::connect_from(&addr, [127, 0, 0, 3]).await;
        g.send(&upload_pw(
            mn,
            &format!("{i:06}"),
            9,
            t0 + 5_000,
            5,
            &value(1.0),
        ))
        .await;
        assert!(g.closed_within(3_000).await, "guess {i}");
    }
    let mut g = Monitor::connect_from(&addr, [127, 0, 0, 3]).await;
    assert!(
        g.closed_within(1_000).await,
        "the eleventh connection is refused"
    );
    wait_until(3, "the lockout counted", || async {
        svc.metric("yujing_connections_refused_total{listener=\"hj212\",reason=\"locked_out\"}")
            .await
            >= 1.0
    })
    .await;
    m.send(&upload_pw(mn, "s3cr3t", 5, t0 + 6_000, 5, &value(83.0)))
        .await;
    assert!(m.ack(5_000).await.is_some(), "the monitor is not shut out");
    wait_until(3, "per-address refusals counted", || async {
        svc.metric("yujing_connections_refused_total{listener=\"hj212\",reason=\"per_address\"}")
            .await
            == 6.0
    })
    .await;
    wait_until(3, "first-packet closures counted", || async {
        svc.metric("yujing_connections_refused_total{listener=\"hj212\",reason=\"first_packet\"}")
            .await
            >= 4.0
    })
    .await;
    healthy(&svc).await;
    let rss = rss_mib(&svc);
    println!("peak RSS {rss0} -> {rss} MiB");
    assert!(rss < rss0 + 100, "peak RSS grew from {rss0} to {rss} MiB");
    let log = log_of(&setup);
    assert!(
        !log.contains("s3cr3t") && !log.contains("PW=123456"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_invent_metrics() {
    let setup = Setup::new("hostile-metrics", "http://127.0.0.1:9", mosquitto(), "");
    let svc = Service::start(setup.path());
    svc.ready().await;
    let rss0 = rss_mib(&svc);
    let (_, sites0) = svc.get("/api/v1/sites", OPERATOR).await;
    let t0 = base_minute();
    let lines: Vec<String> = (0..500)
        .map(|i| reading(t0 + i, &format!("m{i}"), 1.0))
        .collect();
    setup.publish_lines("cs-01", "cs-01-noise", &lines);
    setup.publish("cs-01", "cs-01-noise", &reading(t0 + 1_000, "noise", 50.0));
    let rejected = "yujing_input_rejected_total{connector=\"mqtt\",reason=\"unknown_metric\"}";
    wait_until(20, "500 unknown metrics refused", || async {
        svc.metric(rejected).await == 500.0
    })
    .await;
    let (_, site) = svc.get("/api/v1/sites/cs-01", OPERATOR).await;
    let dev = site["devices"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["id"] == "cs-01-noise"))
        .expect("device")
        .clone();
    let metrics: Vec<&str> = dev["readings"]
        .as_array()
        .map(|r| r.iter().filter_map(|x| x["metric"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(metrics, vec!["noise"], "{dev}");
    let (_, sites) = svc.get("/api/v1/sites", OPERATOR).await;
    assert!(
        sites.to_string().len() < sites0.to_string().len() + 4_096,
        "the site list does not grow with made-up names"
    );
    // every one counted; the file has a burst of them and how many were left out
    let dl: Vec<Value> = dead_letters(&setup)
        .into_iter()
        .filter(|d| d["reason"] == "unknown_metric")
        .collect();
    let suppressed = svc
        .metric("yujing_dead_letters_suppressed_total{connector=\"mqtt\"}")
        .await;
    assert!(!dl.is_empty() && dl.len() <= 100, "{} lines", dl.len());
    assert_eq!(dl.len() as f64 + suppressed, 500.0);
    healthy(&svc).await;
    let rss = rss_mib(&svc);
    println!("peak RSS {rss0} -> {rss} MiB");
    assert!(rss < rss0 + 100, "peak RSS grew from {rss0} to {rss} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guesser_locks_out_only_itself_revoked_tokens_end_sessions_and_ingest_only_ingests() {
    const INGEST: &str = "tok-12345-system";
    let setup = Setup::new("hostile-login", "http://127.0.0.1:9", mosquitto(), "");
    let toml = setup.path().join("yujing.toml");
    let base = std::fs::read_to_string(&toml).expect("toml");
    std::fs::write(
        &toml,
        format!("{base}{}", token_entry("hotline", "ingest", INGEST)),
    )
    .expect("toml");
    let svc = Service::start(setup.path());
    svc.ready().await;
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .expect("client")
    };
    let login = |c: reqwest::Client, token: &'static str| {
        let url = format!("{}/ui/login", svc.base);
        async move {
            c.post(url)
                .header("content-type", "application/json")
                .body(serde_json::json!({ "token": token }).to_string())
                .send()
                .await
                .expect("login")
        }
    };
    // twelve guesses from one address: ten refused as wrong, then that address waits
    let guesser = from([127, 0, 0, 2]);
    let mut codes = Vec::new();
    for _ in 0..12 {
        codes.push(
            login(guesser.clone(), "wrong-token-7f3a")
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(&codes[..10], &[401; 10]);
    assert_eq!(&codes[10..], &[429, 429]);
    // the operator, elsewhere, logs in
    let r = login(from([127, 0, 0, 1]), OPERATOR).await;
    assert_eq!(r.status().as_u16(), 200);
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();
    let with_cookie = || {
        svc.http
            .get(format!("{}/api/v1/warnings", svc.base))
            .header("cookie", cookie.clone())
            .send()
    };
    assert_eq!(with_cookie().await.expect("get").status().as_u16(), 200);
    assert!(
        svc.metric("yujing_api_logins_total{outcome=\"limited\"}")
            .await
            >= 2.0
    );
    // a live event stream on the operator's token
    let mut sse = svc
        .http
        .get(format!("{}/api/v1/stream", svc.base))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .expect("stream");
    assert_eq!(sse.status().as_u16(), 200);

    // the operator's token is revoked: its session ends at its next request
    let without = base.replace(&token_entry("ops", "operator", OPERATOR), "");
    std::fs::write(
        &toml,
        format!("{without}{}", token_entry("hotline", "ingest", INGEST)),
    )
    .expect("toml");
    let (code, v) = svc.post("/api/v1/reload", ADMIN, "").await;
    assert_eq!(code, 200, "{v}");
    let r = with_cookie().await.expect("get");
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.text().await.unwrap_or_default().contains("revoked"));
    let r = svc
        .http
        .get(format!("{}/ui/session", svc.base))
        .header("cookie", cookie.clone())
        .send()
        .await
        .expect("session");
    assert_eq!(
        r.status().as_u16(),
        401,
        "a revoked session is not shown either"
    );
    // the stream ends within its five-second check
    let ended = tokio::time::timeout(Duration::from_secs(12), async {
        while let Ok(Some(_)) = sse.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the event stream of a revoked token ends");

    // the 12345 system's token posts tickets and nothing else
    let ticket = r#"{"number": "12345-H-1", "category": "噪声", "content": "夜间施工", "received_at": "2026-12-01T23:00:00+08:00"}"#;
    let (code, v) = svc.post("/api/v1/hotline/tickets", INGEST, ticket).await;
    assert_eq!(code, 201, "{v}");
    for path in [
        "/api/v1/warnings",
        "/api/v1/hotline/tickets",
        "/api/v1/sites",
    ] {
        let (code, _) = svc.get(path, INGEST).await;
        assert_eq!(code, 403, "{path}");
    }
    let (code, _) = svc
        .post("/api/v1/query", INGEST, r#"{"sql": "SELECT 1"}"#)
        .await;
    assert_eq!(code, 403);
    assert_eq!(
        login(from([127, 0, 0, 1]), INGEST).await.status().as_u16(),
        403
    );

    // what was left unsafe is said at start: the anonymous MQTT connection; no token is logged
    let log = log_of(&setup);
    assert!(log.contains("without a username or TLS"), "{log}");
    for t in [OPERATOR, INGEST, ADMIN, "wrong-token-7f3a"] {
        assert!(!log.contains(t), "the log shows a token: {t}");
    }
    assert!(
        log.contains("127.0.0.2"),
        "failed logins are logged with their address"
    );
    healthy(&svc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_nothing_of_a_large_answer_is_let_go() {
    let setup = Setup::new("hostile-stall", "http://127.0.0.1:9", mosquitto(), "");
    toml_add(
        &setup,
        "archive",
        "dir = \"data/archive\"\nquery_answer_mib = 16",
    );
    toml_add(&setup, "http", "request_timeout = \"3s\"");
    let svc = Service::start(setup.path());
    svc.ready().await;
    let addr: std::net::SocketAddr = svc
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("address");
    // 16 MiB of answer to a client with a 4 KiB window that reads none of it
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut s = sock.connect(addr).await.expect("connect");
    let body = serde_json::json!({
        "sql": "SELECT repeat('x', 100000) AS big FROM range(0, 200)",
        "limit": 1000
    })
    .to_string();
    let req = format!(
        "POST /api/v1/query HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OPERATOR}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("request");
    // the query runs, its answer stalls in the socket; after the request timeout the server
    // lets the connection go
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut got = Vec::new();
    let mut b = vec![0u8; 65536];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => got.extend_from_slice(&b[..n]),
        }
    }
    let head = String::from_utf8_lossy(&got[..got.len().min(512)]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|n| n.trim().parse().ok())
        .expect("content-length");
    assert!(length > 8 << 20, "{length}");
    assert!(
        got.len() < length,
        "the connection was cut: {} of {length} bytes came",
        got.len()
    );
    healthy(&svc).await;
}
