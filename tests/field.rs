//! Field devices end to end, against the real `yujing run` binary: HJ 212-2017 monitors over TCP
//! (packets built and checked as the standard defines them, 1,000 connections at once) and an
//! RTSP camera (GStreamer's RTSP server with an ONVIF metadata track, tests/peers/camera.py):
//! counts and events arrive, stopping the camera raises a camera-offline warning routed to its
//! department, restarting it clears the warning.

mod service;

use serde_json::Value;
use service::hj212::{upload, Monitor};
use service::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Instant;
use yujing_connectors::hj212::{unframe, Packet};

const FIELD_SITES: &str = "departments:
  - {id: zjj, name: 住房和城乡建设局}
  - {id: slj, name: 水利局}
  - {id: dcs, name: 县政府督查室}
sites:
  - id: cs-01
    name: 城东工地
    kind: construction
    department: zjj
    devices:
      - {id: cs-01-dust, type: dust_monitor, metrics: [pm10, tsp], hj212_mn: MN0000000000000000CS0101}
      - {id: cs-01-noise, type: noise_monitor, metrics: [noise], hj212_mn: MN0000000000000000CS0102}
  - id: rv-01
    name: 城关水文站
    kind: water
    department: slj
    params: {warning_level_m: 42.0}
    devices:
      - {id: rv-01-gauge, metrics: [water_level]}
";

const FIELD_RULES: &str = "rules:
  - id: dust_max
    title: 扬尘超标
    scope: {kind: construction}
    metric: pm10
    window: {type: tumbling, size: 1m}
    aggregate: max
    above: {yellow: 150}
    message: \"{site.name}PM10 {value:.0}\"
  - id: noise_max
    title: 施工噪声超标
    scope: {kind: construction}
    metric: noise
    window: {type: tumbling, size: 1m}
    aggregate: max
    above: {yellow: 70, red: 85}
    message: \"{site.name}噪声{value:.1}\"
";

/// A setup whose sites and rules are `sites`/`rules`; `engine` and `secrets` lines join those
/// tables of yujing.toml and `extra` tables are appended.
fn field_setup(
    name: &str,
    hook: &str,
    sites: &str,
    rules: &str,
    engine: &str,
    secrets: &str,
    extra: &str,
) -> Setup {
    let setup = Setup::new(name, hook, mosquitto(), "");
    let p = setup.path();
    std::fs::write(p.join("sites.yaml"), sites).expect("sites");
    std::fs::write(p.join("rules/test.yaml"), rules).expect("rules");
    let toml = std::fs::read_to_string(p.join("yujing.toml"))
        .expect("toml")
        .replace("[engine]\n", &format!("[engine]\n{engine}"))
        .replace("[secrets]\n", &format!("[secrets]\n{secrets}"))
        + "\n"
        + extra;
    std::fs::write(p.join("yujing.toml"), toml).expect("toml");
    setup
}

/// `YYYYMMDDhhmmss` in Beijing time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hj212_monitors_report_over_tcp_and_are_acknowledged() {
    let rx = Receiver::default();
    let hook = rx.start().await;
    let setup = field_setup(
        "hj212",
        &hook,
        FIELD_SITES,
        FIELD_RULES,
        "",
        "",
        // 1,000 monitors below, all from this one address
        "[hj212]\nlisten = \"127.0.0.1:0\"\nmax_connections = 1100\nmax_connections_per_address = 0\n",
    );
    let svc = Service::start(setup.path());
    svc.ready().await;
    let addr = svc
        .hj212
        .clone()
        .expect("the HJ 212 listener's address is printed");
    let mut m = Monitor::connect(&addr).await;

    // a dust reading of 300 asks for an acknowledgement: CN 9014 with the same QN and MN
    let t0 = base_minute();
    let mn = "MN0000000000000000CS0101";
    m.send(&upload(
        mn,
        1,
        t0 + 10_000,
        5,
        "a34002-Rtd=300.0,a34002-Flag=N;a34001-Rtd=410,a34001-Flag=N",
    ))
    .await;
    let ack = m.ack(5_000).await.expect("an acknowledgement");
    let data = unframe(ack.as_bytes()).expect("the acknowledgement is a valid packet, CRC and all");
    let p = Packet::parse(data).expect("fields");
    assert_eq!((p.cn, p.st, p.mn), ("9014", Some("91"), mn));
    assert_eq!(p.qn.map(|q| &q[14..]), Some("001"));

    // a broken CRC: refused, no acknowledgement, and the connection goes on
    let mut bad = upload(mn, 2, t0 + 20_000, 5, "a34002-Rtd=999,a34002-Flag=N");
    let n = bad.len();
    bad.replace_range(
        n - 6..n - 2,
        if bad[n - 6..n - 2] == *"0000" {
            "0001"
        } else {
            "0000"
        },
    );
    m.send(&bad).await;
    assert_eq!(
        m.ack(700).await,
        None,
        "a corrupt packet is not acknowledged"
    );
    // noise between packets, a flagged value (maintenance), an unknown monitor
    m.send("garbage\r\n").await;
    m.send(&upload(
        mn,
        3,
        t0 + 30_000,
        5,
        "a34002-Rtd=500,a34002-Flag=M",
    ))
    .await;
    assert!(
        m.ack(5_000).await.is_some(),
        "a flagged value is kept out of rules, the packet acknowledged"
    );
    m.send(&upload(
        "NOSUCHMONITOR",
        4,
        t0 + 30_000,
        5,
        "a34002-Rtd=500,a34002-Flag=N",
    ))
    .await;
    assert_eq!(
        m.ack(700).await,
        None,
        "an unknown monitor's packet is dead-lettered, not acknowledged"
    );
    // and its connection is closed: the monitor connects again
    let mut m = Monitor::connect(&addr).await;
    // no acknowledgement asked (Flag=4): none sent
    m.send(&upload(
        "MN0000000000000000CS0102",
        5,
        t0 + 40_000,
        4,
        "LA-Rtd=91.5,LA-Flag=N",
    ))
    .await;
    assert_eq!(m.ack(700).await, None);

    // the next minute closes the window: the dust warning goes to the department
    m.send(&upload(
        mn,
        6,
        t0 + 70_000,
        5,
        "a34002-Rtd=40,a34002-Flag=N",
    ))
    .await;
    assert!(m.ack(5_000).await.is_some());
    m.send(&upload(
        "MN0000000000000000CS0102",
        7,
        t0 + 70_000,
        4,
        "LA-Rtd=50,LA-Flag=N",
    ))
    .await;
    let got = rx
        .wait_for(15, "dust and noise warnings", |g| {
            g.iter().any(|x| x.doc["rule"] == "dust_max")
                && g.iter().any(|x| x.doc["rule"] == "noise_max")
        })
        .await;
    let dust = got
        .iter()
        .find(|x| x.doc["rule"] == "dust_max")
        .expect("dust");
    assert_eq!(dust.department, "zjj");
    assert!(dust.signature_ok);
    assert_eq!(
        dust.doc["value"], 300.0,
        "the flagged 500 and the corrupt 999 never counted"
    );
    let noise = got
        .iter()
        .find(|x| x.doc["rule"] == "noise_max")
        .expect("noise");
    assert_eq!(noise.doc["level"], "red");

    // the site's page shows the monitor's readings and where they came from
    let (code, site) = svc.get("/api/v1/sites/cs-01", OPERATOR).await;
    assert_eq!(code, 200, "{site}");
    let dev = site["devices"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["id"] == "cs-01-dust"))
        .expect("cs-01-dust")
        .clone();
    assert_eq!(dev["hj212_mn"], mn);
    let pm10 = dev["readings"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["metric"] == "pm10"))
        .expect("pm10");
    assert_eq!(
        (pm10["value"].as_f64(), pm10["via"].as_str()),
        (Some(40.0), Some("hj212"))
    );

    // every problem counted
    let metric = |name: &'static str| {
        let svc = &svc;
        async move { svc.metric(name).await }
    };
    assert_eq!(
        metric("yujing_hj212_packets_total{result=\"crc\"}").await,
        1.0
    );
    assert_eq!(
        metric("yujing_hj212_packets_total{result=\"unknown_mn\"}").await,
        1.0
    );
    assert!(metric("yujing_hj212_packets_total{result=\"ok\"}").await >= 5.0);
    assert_eq!(
        metric("yujing_input_rejected_total{connector=\"hj212\",reason=\"flagged\"}").await,
        1.0
    );
    assert_eq!(
        metric("yujing_input_rejected_total{connector=\"hj212\",reason=\"unknown_device\"}").await,
        1.0
    );
    // the corrupt packet and the noise between packets
    assert_eq!(
        metric("yujing_input_rejected_total{connector=\"hj212\",reason=\"malformed\"}").await,
        2.0
    );
    assert_eq!(
        metric("yujing_hj212_packets_total{result=\"noise\"}").await,
        1.0
    );
    assert!(metric("yujing_input_readings_total{connector=\"hj212\"}").await >= 5.0);
    let dead = std::fs::read_to_string(setup.path().join("data/dead.jsonl")).unwrap_or_default();
    assert!(dead.contains("CRC mismatch"), "{dead}");
    assert!(dead.contains("data flag M"), "{dead}");
    assert!(dead.contains("NOSUCHMONITOR"), "{dead}");

    // 1,000 monitors at once: each connection held, each upload acknowledged
    let started = Instant::now();
    let mut conns = Vec::with_capacity(1000);
    for _ in 0..1000 {
        conns.push(Monitor::connect(&addr).await);
    }
    wait_until(20, "1,000 open monitor connections", || async {
        svc.metric("yujing_hj212_connections").await >= 1001.0
    })
    .await;
    for (i, c) in conns.iter_mut().enumerate() {
        c.send(&upload(
            mn,
            (i % 1000) as u32,
            t0 + 80_000,
            5,
            "a34002-Rtd=41,a34002-Flag=N",
        ))
        .await;
    }
    let mut acked = 0;
    for c in conns.iter_mut() {
        if c.ack(20_000).await.is_some() {
            acked += 1;
        }
    }
    assert_eq!(acked, 1000);
    println!(
        "1,000 monitors connected, uploaded and acknowledged in {:?}",
        started.elapsed()
    );
    drop(conns);
    drop(m);
    wait_until(10, "connections closed", || async {
        svc.metric("yujing_hj212_connections").await == 0.0
    })
    .await;
}

/// A free port for a camera that is stopped and started again on it: below the range the kernel
/// hands out for outgoing connections and `bind(0)` (32768-60999 on Linux), so that while the
/// camera is down no other socket of the tests is given its port (a restart once failed with
/// "port in use" when the port came from `bind(0)`).
fn camera_port() -> u16 {
    (0..1000)
        .map(|_| fastrand::u16(20_000..32_000))
        .find(|&p| yujing_connectors::broker::port_is_free(p))
        .expect("a free port in 20000-32000")
}

/// The test camera: GStreamer's RTSP server (tests/peers/camera.py) on `port`.
struct Camera {
    child: Child,
}

impl Camera {
    fn start(port: u16) -> Camera {
        peers::ensure();
        let script = root().join("tests/peers/camera.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(&script)
            .args(["--port", &port.to_string(), "--meta-interval-ms", "200"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the RTSP camera (Debian: python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good,ugly}; .ci/peers.sh installs them)");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines
            .next()
            .and_then(Result::ok)
            .is_some_and(|l| l.starts_with("READY"));
        if !ready {
            let _ = child.kill();
            let out = child
                .wait_with_output()
                .map(|o| String::from_utf8_lossy(&o.stderr).into_owned());
            panic!("the RTSP camera did not start: {out:?} (.ci/peers.sh installs its packages)");
        }
        std::thread::spawn(move || for _ in lines {});
        Camera { child }
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtsp_camera_feeds_rules_and_its_outage_reaches_the_department() {
    let rx = Receiver::default();
    let hook = rx.start().await;
    let port = camera_port();
    let sites = construction_site(&format!(
        "      - {{id: cs-01-noise, type: noise_monitor, metrics: [noise]}}
      - id: cs-01-cam1
        type: camera
        metrics: [people_count, motion]
        rtsp_url: rtsp://127.0.0.1:{port}/cam
        rtsp_credentials: cam
"
    ));
    let rules = "rules:
  - id: camera_offline
    title: 视频监控离线
    scope: {kind: construction, types: [camera]}
    absent: 4s
    level: yellow
    message: \"{site.name}视频监控{device}已{duration}无画面\"
  - id: people_on_site
    title: 工地人员
    scope: {kind: construction, types: [camera]}
    metric: people_count
    window: {type: tumbling, size: 2s}
    aggregate: max
    above: 0.5
    level: blue
    message: \"{site.name}有人员活动\"
  - id: motion
    title: 画面移动
    scope: {kind: construction, types: [camera]}
    metric: motion
    window: {type: tumbling, size: 2s}
    aggregate: max
    above: 0.5
    level: blue
    message: \"{site.name}画面移动\"
";
    // sources silent for 2 s no longer hold event time back: absence shows within seconds
    let setup = field_setup(
        "camera",
        &hook,
        &sites,
        rules,
        "idle_timeout = \"2s\"\n",
        "cam = \"viewer:not-logged-anywhere\"\n",
        "[cameras]\nhealth_every = \"1s\"\nstall_timeout = \"3s\"\n",
    );

    let mut cam = Camera::start(port);
    let svc = Service::start(setup.path());
    svc.ready().await;

    // the stream plays: health readings, people counts from the ONVIF metadata, motion events
    wait_until(
        20,
        "the camera's health, counts and events on the site page",
        || async {
            let (_, site) = svc.get("/api/v1/sites/cs-01", OPERATOR).await;
            let cam = device(&site, "cs-01-cam1");
            let has = |m: &str| {
                cam["readings"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|x| x["metric"] == m && x["via"] == "camera"))
            };
            cam["stream"]["state"] == "playing"
                && has("fps")
                && has("bitrate_kbps")
                && has("people_count")
                && cam["events"].as_array().is_some_and(|e| {
                    e.iter()
                        .any(|x| x["metric"] == "motion" && x["source"] == "onvif")
                })
        },
    )
    .await;
    let (_, site) = svc.get("/api/v1/sites/cs-01", OPERATOR).await;
    let c = device(&site, "cs-01-cam1");
    let fps = c["readings"]
        .as_array()
        .and_then(|r| r.iter().find(|x| x["metric"] == "fps"))
        .and_then(|x| x["value"].as_f64())
        .unwrap_or(0.0);
    assert!(
        fps > 5.0 && fps < 30.0,
        "the camera sends 15 frames/s; measured {fps}"
    );
    rx.wait_for(15, "the people count feeding a rule", |g| {
        g.iter().any(|x| x.doc["rule"] == "people_on_site")
    })
    .await;
    assert_eq!(svc.metric("yujing_cameras_up").await, 1.0);
    // the metadata track keeps coming: 5 documents a second
    wait_until(10, "more metadata frames", || async {
        svc.metric("yujing_camera_events_total{kind=\"frame\"}")
            .await
            > 10.0
    })
    .await;
    assert!(
        svc.metric("yujing_camera_events_total{kind=\"event\"}")
            .await
            >= 1.0
    );

    // stop the camera: the offline warning reaches the site's department
    cam.stop();
    let stopped = Instant::now();
    let raised = rx
        .wait_for(30, "the camera-offline warning", |g| {
            g.iter()
                .any(|x| x.doc["rule"] == "camera_offline" && x.doc["transition"] == "raise")
        })
        .await;
    let w = raised
        .iter()
        .find(|x| x.doc["rule"] == "camera_offline")
        .expect("offline")
        .clone();
    println!(
        "camera stopped -> offline warning delivered in {:?}",
        stopped.elapsed()
    );
    assert_eq!(w.department, "zjj");
    assert!(w.signature_ok);
    assert_eq!(w.doc["level"], "yellow");
    assert_eq!(w.doc["subject"], "cs-01-cam1");
    let (_, site) = svc.get("/api/v1/sites/cs-01", OPERATOR).await;
    let c = device(&site, "cs-01-cam1");
    assert_eq!(c["stream"]["state"], "lost");
    assert_eq!(c["status"], "offline");
    assert_eq!(svc.metric("yujing_cameras_up").await, 0.0);

    // restart it: the session comes back by itself and the warning clears
    let mut cam = Camera::start(port);
    rx.wait_for_transition(30, "clear", Some(&w.doc["id"]))
        .await;
    let (_, site) = svc.get("/api/v1/sites/cs-01", OPERATOR).await;
    assert_eq!(device(&site, "cs-01-cam1")["stream"]["state"], "playing");
    assert!(svc.metric("yujing_camera_reconnects_total").await >= 1.0);

    // a camera added to sites.yaml is dialled after the reload, without a restart
    let sites_path = setup.path().join("sites.yaml");
    let more = std::fs::read_to_string(&sites_path).expect("sites").replace(
        "        rtsp_credentials: cam\n",
        &format!("        rtsp_credentials: cam\n      - {{id: cs-01-cam2, type: camera, metrics: [people_count, motion], rtsp_url: \"rtsp://127.0.0.1:{port}/cam\"}}\n"),
    );
    std::fs::write(&sites_path, more).expect("sites");
    wait_until(20, "the second camera playing after the reload", || async {
        let (_, site) = svc.get("/api/v1/sites/cs-01", OPERATOR).await;
        let c = device(&site, "cs-01-cam2");
        c["stream"]["state"] == "playing"
            && c["readings"]
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x["metric"] == "people_count"))
    })
    .await;
    assert_eq!(svc.metric("yujing_cameras").await, 2.0);

    // the credentials never reach the log
    let log = std::fs::read_to_string(setup.path().join("service.log")).unwrap_or_default();
    assert!(log.contains("camera stream playing"), "{log}");
    assert!(!log.contains("not-logged-anywhere"));
    cam.stop();
}

/// The harness's departments and one construction site, cs-01 (zjj), with `devices`.
fn construction_site(devices: &str) -> String {
    let departments = SITES.split("sites:").next().unwrap_or_default();
    format!("{departments}sites:\n  - id: cs-01\n    name: 城东工地\n    kind: construction\n    department: zjj\n    devices:\n{devices}")
}

fn device(site: &Value, id: &str) -> Value {
    site["devices"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["id"] == id))
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtsp_camera_over_udp() {
    let rx = Receiver::default();
    let hook = rx.start().await;
    let port = camera_port();
    let sites = construction_site(&format!(
        "      - {{id: cs-01-cam1, type: camera, metrics: [people_count], rtsp_url: \"rtsp://127.0.0.1:{port}/cam\"}}\n"
    ));
    let rules = "rules:
  - id: camera_offline
    title: 视频监控离线
    scope: {types: [camera]}
    absent: 1m
    level: yellow
    message: \"{device}离线\"
";
    let setup = field_setup(
        "camera-udp",
        &hook,
        &sites,
        rules,
        "",
        "",
        "[cameras]\nhealth_every = \"1s\"\nstall_timeout = \"3s\"\ntransport = \"udp\"\n",
    );
    let cam = Camera::start(port);
    let svc = Service::start(setup.path());
    svc.ready().await;
    wait_until(20, "video and metadata over UDP", || async {
        let (_, site) = svc.get("/api/v1/sites/cs-01", OPERATOR).await;
        let c = device(&site, "cs-01-cam1");
        let has = |m: &str| {
            c["readings"]
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x["metric"] == m))
        };
        c["stream"]["state"] == "playing" && has("fps") && has("people_count")
    })
    .await;

    // the camera freezes (its process stopped: the connection stays open, nothing comes): the
    // stream is declared stalled and lost; once it thaws, the session comes back by itself
    let pid = cam.child.id().to_string();
    let signal = |sig: &str| {
        let _ = Command::new("kill").args([sig, &pid]).status();
    };
    signal("-STOP");
    wait_until(20, "the frozen stream declared lost", || async {
        let (_, site) = svc.get("/api/v1/sites/cs-01", OPERATOR).await;
        let c = device(&site, "cs-01-cam1");
        c["stream"]["state"] == "lost"
    })
    .await;
    let (_, site) = svc.get("/api/v1/sites/cs-01", OPERATOR).await;
    let error = device(&site, "cs-01-cam1")["stream"]["error"].clone();
    signal("-CONT");
    println!("frozen camera: {error}");
    wait_until(30, "the thawed camera playing again", || async {
        let (_, site) = svc.get("/api/v1/sites/cs-01", OPERATOR).await;
        device(&site, "cs-01-cam1")["stream"]["state"] == "playing"
    })
    .await;
    assert!(svc.metric("yujing_camera_reconnects_total").await >= 1.0);
}
