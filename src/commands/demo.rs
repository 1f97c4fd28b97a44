//! `yujing demo`, live: the service with embedded defaults, the simulator and its banner.

use crate::*;

pub(crate) fn live_demo(
    config: Option<PathBuf>,
    listen: String,
    mqtt_port: u16,
    speed: f64,
    data: Option<PathBuf>,
) -> Result<ExitCode> {
    use yujing::config::service::{Role, Token};
    use yujing_connectors::broker;
    init_logging("warn");
    let data = demo_data(data);
    let config = demo_config(config, &data)?;
    // check the configuration before starting anything
    if let Err(code) = load(&config) {
        return Ok(code);
    }
    let mut addr: std::net::SocketAddr = listen
        .parse()
        .with_context(|| format!("--listen {listen}: not an address like 127.0.0.1:8088"))?;
    if addr.port() == 0 || std::net::TcpListener::bind(addr).is_err() {
        let free = broker::free_port()?;
        if addr.port() != 0 {
            eprintln!("yujing demo: {addr} is taken; using port {free}");
        }
        addr.set_port(free);
    }
    let mqtt_port = if mqtt_port != 0 && broker::port_is_free(mqtt_port) {
        mqtt_port
    } else {
        let free = broker::free_port()?;
        if mqtt_port != 0 {
            eprintln!("yujing demo: MQTT port {mqtt_port} is taken; using {free}");
        }
        free
    };
    broker::start(mqtt_port, 1 << 20)?;
    let hj212_port = broker::free_port()?;
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let hook_secret = random_token()?;
    let tokens = [
        ("demo-operator", Role::Operator, random_token()?),
        ("demo-zjj", Role::Department("zjj".into()), random_token()?),
        ("demo-slj", Role::Department("slj".into()), random_token()?),
        ("demo-admin", Role::Admin, random_token()?),
        // the simulated 12345 system: it may post tickets, nothing else
        ("demo-hotline", Role::Ingest, random_token()?),
    ];
    let token_table: Vec<Token> = tokens
        .iter()
        .map(|(n, r, t)| Token {
            name: n.to_string(),
            role: r.clone(),
            sha256: yujing::dispatch::channel::token_hash(t),
        })
        .collect();
    let overlay = overlay(
        addr,
        mqtt_port,
        hj212_port,
        data.clone(),
        token_table,
        hook_secret.clone(),
    );
    let t = |n: &str| {
        tokens
            .iter()
            .find(|x| x.0 == n)
            .map(|x| x.2.clone())
            .unwrap_or_default()
    };
    let banner = banner(
        speed,
        mqtt_port,
        hj212_port,
        &data,
        [
            t("demo-operator"),
            t("demo-zjj"),
            t("demo-slj"),
            t("demo-admin"),
            t("demo-hotline"),
        ],
    );
    let opts = yujing::service::Options {
        config_dir: config,
        overlay,
        demo: Some(yujing::service::DemoOptions {
            hook_secret,
            hotline_token: t("demo-hotline"),
            speed,
            banner,
        }),
    };
    runtime()?.block_on(yujing::service::run(opts))?;
    Ok(ExitCode::SUCCESS)
}

/// The demo's overrides of the configuration: its embedded broker, ports, store, tokens, and
/// every department's webhook to the demo itself.
fn overlay(
    addr: std::net::SocketAddr,
    mqtt_port: u16,
    hj212_port: u16,
    store_dir: PathBuf,
    token_table: Vec<yujing::config::service::Token>,
    secret: String,
) -> yujing::service::Overlay {
    use yujing::config::routes::{Channel, ChannelKind};
    use yujing::config::service::{Hj212Settings, MqttSettings};
    Arc::new(move |c: &mut Config| {
        c.service.http.listen = addr.to_string();
        c.service.mqtt = Some(MqttSettings {
            host: "127.0.0.1".into(),
            port: mqtt_port,
            client_id: "yujing-demo".into(),
            username: None,
            password: None,
            ca_file: None,
            topics: vec![
                "yujing/sensors/+/+".into(),
                "yujing/cameras/+/events".into(),
            ],
            persistent: true,
            keep_alive: 30_000,
            max_payload: 64 * 1024,
            dead_letter_topic: Some("yujing/dead-letter".into()),
        });
        // HJ 212 monitors connect to the demo on loopback; the sample cameras' RTSP addresses
        // are on a site network the demo cannot reach, so their analytics and health come from
        // the simulator as an edge AI box would send them
        c.service.hj212 = Some(Hj212Settings {
            listen: format!("127.0.0.1:{hj212_port}"),
            max_connections: 1000,
            max_connections_per_address: 32,
            first_packet_timeout: 120_000,
            idle_timeout: 10 * 60_000,
            accept_flags: vec!['N', 'T'],
        });
        c.service.cameras.enabled = false;
        c.service.store.path = store_dir.join("yujing-demo.db");
        c.service.store.dead_letter = store_dir.join("dead-letter.jsonl");
        // history for `yujing query`, sealed every 10 s so the demo's archive fills quickly
        c.service.archive = Some(yujing::config::service::ArchiveSettings {
            dir: store_dir.join("archive"),
            retention_days: c.service.archive.as_ref().map_or(400, |a| a.retention_days),
            flush_every: 10_000,
            query_memory_mib: 512,
            query_answer_mib: 16,
            query_timeout: 30_000,
        });
        c.service.tokens = token_table.clone();
        c.service.secrets.insert("demo-hook".into(), secret.clone());
        // every department: a signed webhook to the demo itself, and MQTT
        c.routes.channels = vec![Channel {
            id: "mqtt".into(),
            kind: ChannelKind::Mqtt,
            url: None,
            secret: None,
            topic: None,
        }];
        c.routes.departments.clear();
        for d in &c.registry.departments {
            let id = format!("hook-{}", d.id);
            c.routes.channels.push(Channel {
                id: id.clone(),
                kind: ChannelKind::Webhook,
                url: Some(format!("http://{addr}/demo/hooks/{}", d.id)),
                secret: Some("demo-hook".into()),
                topic: None,
            });
            c.routes
                .departments
                .push((d.id.clone(), vec![id, "mqtt".into()]));
        }
    })
}

/// What the demo prints once everything listens (`{http}` is filled in then).
fn banner(
    speed: f64,
    mqtt_port: u16,
    hj212_port: u16,
    data: &Path,
    [op, zjj, slj, admin, hotline]: [String; 5],
) -> String {
    format!(
        "
预警 yujing demo: every sample site publishes over MQTT; simulated time runs {speed}x from
yesterday 00:00 until it catches up with now. Warnings appear within the first minutes.

  Dashboard    {{http}}/   (open it in a browser; log in with a token below)
  API          {{http}}/api/v1/warnings   (OpenAPI: {{http}}/api/v1/openapi.json)
  live stream  {{http}}/api/v1/stream
  metrics      {{http}}/metrics
  MQTT broker  127.0.0.1:{mqtt_port}   (warnings also on yujing/warnings/<department>)
  HJ 212       127.0.0.1:{hj212_port}   (dust monitors of cs-02 and the aq-02 station report here)
  a site       {{http}}/api/v1/sites/cs-02   (HJ 212 readings; sa-01: camera counts and events)
  data         {data}
  history      yujing query --archive {data}/archive \\
                 \"SELECT site, day, max(value) FROM readings WHERE metric = 'pm10' GROUP BY site, day\"

Tokens (valid for this run):
  operator          {op}
  department zjj    {zjj}   (住房和城乡建设局: construction sites)
  department slj    {slj}   (水利局: reservoirs and rivers)
  admin             {admin}
  12345 system      {hotline}   (ingest: posts tickets only)

Try:
  curl -s -H 'Authorization: Bearer {op}' '{{http}}/api/v1/warnings?status=open'
  curl -N -H 'Authorization: Bearer {zjj}' {{http}}/api/v1/stream
  curl -s -X POST -H 'Authorization: Bearer {zjj}' {{http}}/api/v1/warnings/<id>/ack
  curl -s -X POST -H 'Authorization: Bearer {zjj}' -H 'Content-Type: application/json' \\
       -d '{{\"measures\":\"洒水降尘，停止土方作业\",\"result\":\"PM10已回落\"}}' {{http}}/api/v1/warnings/<id>/feedback
  curl -s -H 'Authorization: Bearer {zjj}' {{http}}/api/v1/warnings/<id>      (the timeline)
  mosquitto_sub -p {mqtt_port} -t 'yujing/warnings/#'
  curl -s -X POST -H 'Authorization: Bearer {hotline}' -H 'Content-Type: application/json' \\
       -d '{{\"number\":\"12345-0001\",\"category\":\"夜间施工噪声\",\"received_at\":'$(date +%s000)',\"content\":\"工地半夜施工\",\"address\":\"滨江路\"}}' {{http}}/api/v1/hotline/tickets
  mosquitto_pub -p {mqtt_port} -t yujing/sensors/cs-01/cs-01-noise -m '{{\"ts\": '$(date +%s000)', \"metric\": \"noise\", \"value\": 88}}'
  mosquitto_pub -p {mqtt_port} -t yujing/cameras/cs-01-cam1/events -m '{{\"ts\": '$(date +%s000)', \"event\": \"helmet_violation\"}}'

Webhooks the departments receive are printed below. Ctrl-C stops.
",
        data = data.display(),
        op = op,
        zjj = zjj,
        slj = slj,
        admin = admin,
        hotline = hotline,
    )
}
