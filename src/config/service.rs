//! The service tables of `yujing.toml`: HTTP, MQTT, store, dispatch, secrets and API tokens.
//! (`[engine]` is read by [`super::engine_settings`].)
//!
//! ```toml
//! [http]
//! listen = "127.0.0.1:8088"
//! [mqtt]
//! host = "127.0.0.1"
//! port = 1883
//! topics = ["yujing/sensors/+/+"]
//! [store]
//! path = "data/yujing.db"
//! # url = "postgres://yujing@db:5432/yujing"   # shared by several instances (then `path` is unused);
//! #                                            # or url = { env = "YUJING_STORE_URL" }
//! # [cluster]                          # several instances in one Kafka consumer group
//! # instance = "yj-1"
//! [hj212]
//! listen = "0.0.0.0:6000"              # HJ 212-2017 monitors connect here
//! [cameras]
//! health_every = "5s"                  # RTSP cameras of sites.yaml (`rtsp_url`)
//! [secrets]
//! zjj-hook = "a shared HMAC key"        # or: zjj-hook = { env = "YUJING_ZJJ_HOOK" }
//! [[tokens]]
//! name = "duty-operator"
//! role = "operator"                    # operator | department:<id> | admin
//! sha256 = "<hex SHA-256 of the token>" # `yujing token` makes one
//! ```

use super::yaml::Diag;
use super::TomlCheck as Check;
use crate::time::Millis;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use yujing_connectors::partition::Partitioner;

#[derive(Clone, Debug, PartialEq)]
pub struct ServiceSettings {
    pub http: HttpSettings,
    pub mqtt: Option<MqttSettings>,
    pub store: StoreSettings,
    pub dispatch: DispatchSettings,
    /// The HJ 212 listener, when configured.
    pub hj212: Option<Hj212Settings>,
    /// Kafka in (readings, tickets) and out (warnings through kafka channels, dead letters).
    pub kafka: Option<KafkaSettings>,
    /// Several instances in one Kafka consumer group (`[cluster]`).
    pub cluster: Option<ClusterSettings>,
    /// History as Parquet files (`[archive]`); off when the table is absent.
    pub archive: Option<ArchiveSettings>,
    pub cameras: CameraSettings,
    /// Secret name -> value (resolved from the environment where the file says so).
    pub secrets: BTreeMap<String, String>,
    pub tokens: Vec<Token>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct HttpSettings {
    pub listen: String,
    /// Connections open at once (more are answered 503 and closed).
    pub max_connections: usize,
    /// Connections open at once from one address (0: no cap; behind a reverse proxy every
    /// connection comes from the proxy).
    pub max_connections_per_address: usize,
    /// A request's headers must arrive within this (an idle keep-alive connection is closed
    /// after it).
    pub header_timeout: Millis,
    /// A request must be read and answered within this.
    pub request_timeout: Millis,
    /// Reverse proxies whose `X-Forwarded-For` names the client (the login limiter counts
    /// failures per client address).
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MqttSettings {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub topics: Vec<String>,
    pub persistent: bool,
    pub keep_alive: Millis,
    pub max_payload: usize,
    /// Rejected messages are also published here (with the reason).
    pub dead_letter_topic: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StoreSettings {
    pub path: PathBuf,
    /// A shared PostgreSQL store (`postgres://...`) instead of the SQLite file at `path`.
    pub url: Option<String>,
    /// Flush every commit to disk (`fsync = true`, SQLite `synchronous=FULL`): a stored warning
    /// survives a power loss too. Off (`NORMAL` in WAL mode), a commit survives a crash or
    /// `kill -9` of the process but the last ones may be lost with the power; commits are much
    /// cheaper.
    pub fsync: bool,
    /// Rejected input as JSON lines (reason, detail, topic, payload).
    pub dead_letter: PathBuf,
    /// The dead-letter file is rotated when it reaches this size (`dead-letter.jsonl.1`, ...).
    pub dead_letter_max_bytes: u64,
    /// Rotated dead-letter files kept.
    pub dead_letter_keep: u32,
}

/// The history archive (`[archive]`): readings, tickets, warnings and transitions as Parquet,
/// one folder per local day, for `yujing query`, `yujing fit` and `yujing backtest`.
#[derive(Clone, Debug, PartialEq)]
pub struct ArchiveSettings {
    pub dir: PathBuf,
    /// Day folders older than this many days are deleted (0: kept for ever).
    pub retention_days: u32,
    /// How often processed readings become Parquet and the store's rows are exported.
    pub flush_every: Millis,
    /// What one SQL query of the API (`POST /api/v1/query`) may use: memory of its
    /// operators, bytes of its answer, wall time.
    pub query_memory_mib: usize,
    pub query_answer_mib: usize,
    pub query_timeout: Millis,
}

/// How several instances share the work (`[cluster]`): the readings topic's partitions are
/// split among them by the consumer group, and with them the sites they carry.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterSettings {
    /// This instance's name (in checkpoints and logs); default: host name and process id.
    pub instance: String,
    /// How often the state of this instance's partitions is checkpointed in the store.
    pub checkpoint_every: Millis,
    /// How producers map a site id (the message key) to a partition: `consistent_random`
    /// (CRC-32, librdkafka and kcat) or `murmur2_random` (the Java client's default).
    pub partitioner: Partitioner,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DispatchSettings {
    pub max_attempts: u32,
    pub retry_base: Millis,
    pub retry_max: Millis,
    pub timeout: Millis,
    pub concurrency: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Hj212Settings {
    pub listen: String,
    pub max_connections: usize,
    /// Connections open at once from one address (monitors behind one NAT share one).
    pub max_connections_per_address: usize,
    /// A new connection that has sent no packet the service took (good CRC, known MN, right
    /// password) within this is closed.
    pub first_packet_timeout: Millis,
    /// A monitor connection silent this long is closed.
    pub idle_timeout: Millis,
    /// Data flags whose values feed rules (others are dead-lettered as `flagged`).
    pub accept_flags: Vec<char>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct KafkaSettings {
    pub brokers: String,
    pub group_id: String,
    /// Readings as JSON lines (an MQTT payload plus `site` and `device`), keyed by site id.
    pub readings_topic: Option<String>,
    /// 12345 tickets as JSON, keyed by site id when known.
    pub tickets_topic: Option<String>,
    /// Bad messages go here with the reason in the `yujing-reason` header.
    pub dead_letter_topic: Option<String>,
    /// Further librdkafka settings (`[kafka.client]`).
    pub client: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CameraSettings {
    /// Connect to the cameras of sites.yaml that have an `rtsp_url`.
    pub enabled: bool,
    /// How often a camera's stream health becomes readings.
    pub health_every: Millis,
    /// A stream silent this long is reconnected.
    pub stall_timeout: Millis,
    /// RTP over UDP instead of the RTSP connection.
    pub udp: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Operator,
    Department(String),
    Admin,
    /// The 12345 system: posts tickets, nothing else.
    Ingest,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            "ingest" => Some(Role::Ingest),
            _ => s
                .strip_prefix("department:")
                .filter(|d| !d.is_empty())
                .map(|d| Role::Department(d.to_string())),
        }
    }
    pub fn as_string(&self) -> String {
        match self {
            Role::Operator => "operator".into(),
            Role::Admin => "admin".into(),
            Role::Ingest => "ingest".into(),
            Role::Department(d) => format!("department:{d}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub name: String,
    pub role: Role,
    /// Lower-case hex SHA-256 of the token.
    pub sha256: String,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            http: HttpSettings {
                listen: "127.0.0.1:8088".into(),
                max_connections: 1024,
                max_connections_per_address: 256,
                header_timeout: 10_000,
                request_timeout: 60_000,
                trusted_proxies: Vec::new(),
            },
            mqtt: None,
            store: StoreSettings {
                path: "data/yujing.db".into(),
                url: None,
                fsync: false,
                dead_letter: "data/dead-letter.jsonl".into(),
                dead_letter_max_bytes: 64 << 20,
                dead_letter_keep: 5,
            },
            dispatch: DispatchSettings {
                max_attempts: 10,
                retry_base: 1_000,
                retry_max: 5 * 60_000,
                timeout: 10_000,
                concurrency: 64,
            },
            hj212: None,
            kafka: None,
            cluster: None,
            archive: None,
            cameras: CameraSettings {
                enabled: true,
                health_every: 5_000,
                stall_timeout: 10_000,
                udp: false,
            },
            secrets: BTreeMap::new(),
            tokens: Vec::new(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HttpToml {
    listen: Option<String>,
    max_connections: Option<usize>,
    max_connections_per_address: Option<usize>,
    header_timeout: Option<String>,
    request_timeout: Option<String>,
    trusted_proxies: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MqttToml {
    host: Option<String>,
    port: Option<u16>,
    client_id: Option<String>,
    username: Option<String>,
    password: Option<SecretToml>,
    ca_file: Option<PathBuf>,
    topics: Option<Vec<String>>,
    persistent: Option<bool>,
    keep_alive: Option<String>,
    max_payload: Option<usize>,
    dead_letter_topic: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StoreToml {
    path: Option<PathBuf>,
    url: Option<SecretToml>,
    fsync: Option<bool>,
    dead_letter: Option<PathBuf>,
    dead_letter_max_mib: Option<u64>,
    dead_letter_keep: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DispatchToml {
    max_attempts: Option<u32>,
    retry_base: Option<String>,
    retry_max: Option<String>,
    timeout: Option<String>,
    concurrency: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Hj212Toml {
    listen: Option<String>,
    max_connections: Option<usize>,
    max_connections_per_address: Option<usize>,
    first_packet_timeout: Option<String>,
    idle_timeout: Option<String>,
    accept_flags: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchiveToml {
    dir: Option<PathBuf>,
    retention_days: Option<u32>,
    flush_every: Option<String>,
    query_memory_mib: Option<usize>,
    query_answer_mib: Option<usize>,
    query_timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterToml {
    instance: Option<String>,
    checkpoint_every: Option<String>,
    partitioner: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KafkaToml {
    brokers: String,
    group_id: Option<String>,
    readings_topic: Option<String>,
    tickets_topic: Option<String>,
    dead_letter_topic: Option<String>,
    #[serde(default)]
    client: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CamerasToml {
    enabled: Option<bool>,
    health_every: Option<String>,
    stall_timeout: Option<String>,
    transport: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum SecretToml {
    Plain(String),
    Env { env: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenToml {
    name: String,
    role: String,
    sha256: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default)]
    #[allow(dead_code)]
    engine: Option<toml::Table>,
    #[serde(default)]
    http: HttpToml,
    mqtt: Option<MqttToml>,
    #[serde(default)]
    store: StoreToml,
    #[serde(default)]
    dispatch: DispatchToml,
    hj212: Option<Hj212Toml>,
    kafka: Option<KafkaToml>,
    cluster: Option<ClusterToml>,
    archive: Option<ArchiveToml>,
    #[serde(default)]
    cameras: CamerasToml,
    #[serde(default)]
    secrets: BTreeMap<String, SecretToml>,
    #[serde(default)]
    tokens: Vec<TokenToml>,
}

/// Parse the service tables. Relative paths are taken from the config directory `base`.
pub fn load(file: &str, text: &str, base: &std::path::Path) -> Result<ServiceSettings, Vec<Diag>> {
    let parsed: FileToml = super::parse_toml(file, text)?;
    let mut ck = super::TomlCheck {
        file,
        text,
        errs: Vec::new(),
    };
    let mut s = ServiceSettings::default();
    http(&mut ck, parsed.http, &mut s.http);
    s.mqtt = parsed.mqtt.map(|m| mqtt(&mut ck, m, base));
    store(&mut ck, parsed.store, base, &mut s.store);
    dispatch(&mut ck, parsed.dispatch, &mut s.dispatch);
    s.hj212 = parsed.hj212.map(|h| hj212(&mut ck, h));
    s.kafka = parsed.kafka.map(kafka);
    s.cluster = parsed
        .cluster
        .map(|c| cluster(&mut ck, c, s.kafka.as_ref()));
    s.archive = parsed.archive.map(|a| archive(&mut ck, a, base));
    cameras(&mut ck, parsed.cameras, &mut s.cameras);
    for (k, v) in parsed.secrets {
        if let Some(v) = secret(&mut ck, v, &k) {
            s.secrets.insert(k, v);
        }
    }
    s.tokens = tokens(&mut ck, parsed.tokens);
    if ck.errs.is_empty() {
        Ok(s)
    } else {
        Err(ck.errs)
    }
}

/// A secret's value: as written, or from the environment variable it names.
fn secret(ck: &mut Check, v: SecretToml, key: &str) -> Option<String> {
    match v {
        SecretToml::Plain(p) => Some(p),
        SecretToml::Env { env } => match std::env::var(&env) {
            Ok(v) => Some(v),
            Err(_) => {
                ck.err(
                    key,
                    format!("`{key}` names the environment variable {env}, which is not set"),
                );
                None
            }
        },
    }
}

fn http(ck: &mut Check, h: HttpToml, s: &mut HttpSettings) {
    if let Some(l) = h.listen {
        if l.parse::<std::net::SocketAddr>().is_err() {
            ck.err(
                "listen",
                format!("http.listen: `{l}` is not an address like 127.0.0.1:8088"),
            );
        }
        s.listen = l;
    }
    if let Some(n) = h.max_connections {
        s.max_connections = n.max(1);
    }
    if let Some(n) = h.max_connections_per_address {
        s.max_connections_per_address = n;
    }
    ck.duration("header_timeout", h.header_timeout, &mut s.header_timeout);
    ck.duration("request_timeout", h.request_timeout, &mut s.request_timeout);
    s.header_timeout = s.header_timeout.max(1_000);
    s.request_timeout = s.request_timeout.max(1_000);
    for p in h.trusted_proxies.unwrap_or_default() {
        match p.parse::<std::net::IpAddr>() {
            Ok(a) => s.trusted_proxies.push(a),
            Err(_) => ck.err(
                "trusted_proxies",
                format!("http.trusted_proxies: `{p}` is not an IP address"),
            ),
        }
    }
}

fn mqtt(ck: &mut Check, m: MqttToml, base: &std::path::Path) -> MqttSettings {
    let mut keep_alive = 30_000;
    ck.duration("keep_alive", m.keep_alive, &mut keep_alive);
    let password = m.password.and_then(|p| secret(ck, p, "password"));
    MqttSettings {
        host: m.host.unwrap_or_else(|| "127.0.0.1".into()),
        port: m.port.unwrap_or(1883),
        client_id: m.client_id.unwrap_or_else(|| "yujing".into()),
        username: m.username,
        password,
        ca_file: m.ca_file.map(|p| base.join(p)),
        topics: m.topics.unwrap_or_else(|| {
            vec![
                "yujing/sensors/+/+".to_string(),
                "yujing/cameras/+/events".to_string(),
            ]
        }),
        persistent: m.persistent.unwrap_or(true),
        keep_alive,
        max_payload: m.max_payload.unwrap_or(64 * 1024),
        dead_letter_topic: m.dead_letter_topic,
    }
}

fn store(ck: &mut Check, t: StoreToml, base: &std::path::Path, s: &mut StoreSettings) {
    if let Some(p) = t.path {
        s.path = p;
    }
    if let Some(f) = t.fsync {
        s.fsync = f;
    }
    if let Some(p) = t.dead_letter {
        s.dead_letter = p;
    }
    if let Some(n) = t.dead_letter_max_mib {
        s.dead_letter_max_bytes = n.max(1) << 20;
    }
    if let Some(n) = t.dead_letter_keep {
        s.dead_letter_keep = n;
    }
    if let Some(u) = t.url.and_then(|u| secret(ck, u, "url")) {
        if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) {
            ck.err(
                "url",
                "store.url: a shared store is PostgreSQL: postgres://user@host:port/database"
                    .into(),
            );
        }
        s.url = Some(u);
    }
    s.path = base.join(&s.path);
    s.dead_letter = base.join(&s.dead_letter);
}

fn dispatch(ck: &mut Check, d: DispatchToml, s: &mut DispatchSettings) {
    if let Some(n) = d.max_attempts {
        s.max_attempts = n.max(1);
    }
    if let Some(n) = d.concurrency {
        s.concurrency = n.max(1);
    }
    ck.duration("retry_base", d.retry_base, &mut s.retry_base);
    ck.duration("retry_max", d.retry_max, &mut s.retry_max);
    ck.duration("timeout", d.timeout, &mut s.timeout);
}

fn hj212(ck: &mut Check, h: Hj212Toml) -> Hj212Settings {
    let listen = h.listen.unwrap_or_else(|| "0.0.0.0:6000".into());
    if listen.parse::<std::net::SocketAddr>().is_err() {
        ck.err(
            "listen",
            format!("hj212.listen: `{listen}` is not an address like 0.0.0.0:6000"),
        );
    }
    let mut idle_timeout = 10 * 60_000;
    ck.duration("idle_timeout", h.idle_timeout, &mut idle_timeout);
    let mut accept_flags = vec!['N', 'T'];
    if let Some(flags) = h.accept_flags {
        accept_flags.clear();
        for f in flags {
            match f.as_str() {
                "N" | "F" | "M" | "S" | "D" | "C" | "T" | "B" => {
                    accept_flags.extend(f.chars())
                }
                _ => ck.err("accept_flags", format!("hj212.accept_flags: `{f}` is not an HJ 212 data flag (N, F, M, S, D, C, T, B)"),
                ),
            }
        }
    }
    let mut first_packet_timeout = 120_000;
    ck.duration(
        "first_packet_timeout",
        h.first_packet_timeout,
        &mut first_packet_timeout,
    );
    Hj212Settings {
        listen,
        max_connections: h.max_connections.unwrap_or(1_000).max(1),
        max_connections_per_address: h.max_connections_per_address.unwrap_or(32),
        first_packet_timeout: first_packet_timeout.max(1_000),
        idle_timeout,
        accept_flags,
    }
}

fn kafka(k: KafkaToml) -> KafkaSettings {
    KafkaSettings {
        brokers: k.brokers,
        group_id: k.group_id.unwrap_or_else(|| "yujing".into()),
        readings_topic: k.readings_topic,
        tickets_topic: k.tickets_topic,
        dead_letter_topic: k.dead_letter_topic,
        client: k
            .client
            .into_iter()
            .map(|(key, v)| {
                let v = match v {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    _ => String::new(),
                };
                (key, v)
            })
            .collect(),
    }
}

fn cluster(ck: &mut Check, c: ClusterToml, kafka: Option<&KafkaSettings>) -> ClusterSettings {
    let mut checkpoint_every = 2_000;
    ck.duration(
        "checkpoint_every",
        c.checkpoint_every,
        &mut checkpoint_every,
    );
    let partitioner = match c.partitioner.as_deref() {
        None | Some("consistent_random") | Some("consistent") => Partitioner::Crc32,
        Some("murmur2_random") | Some("murmur2") => Partitioner::Murmur2,
        Some(other) => {
            ck.err(
                "partitioner",
                format!(
                    "cluster.partitioner: `{other}` is not consistent_random or murmur2_random"
                ),
            );
            Partitioner::Crc32
        }
    };
    if kafka.and_then(|k| k.readings_topic.as_ref()).is_none() {
        ck.err("cluster", "[cluster] splits the sites by the partitions of the Kafka readings topic: set [kafka] brokers and readings_topic".into(),
        );
    } else if kafka.and_then(|k| k.tickets_topic.as_ref()).is_none() {
        ck.err("cluster", "[cluster]: 12345 tickets reach the instance that has their site through Kafka: set [kafka] tickets_topic (as many partitions as the readings topic)".into(),
        );
    }
    ClusterSettings {
        instance: c.instance.unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        }),
        checkpoint_every: checkpoint_every.max(100),
        partitioner,
    }
}

fn archive(ck: &mut Check, a: ArchiveToml, base: &std::path::Path) -> ArchiveSettings {
    let mut flush_every = 60_000;
    ck.duration("flush_every", a.flush_every, &mut flush_every);
    let mut query_timeout = 30_000;
    ck.duration("query_timeout", a.query_timeout, &mut query_timeout);
    ArchiveSettings {
        dir: base.join(a.dir.unwrap_or_else(|| PathBuf::from("data/archive"))),
        retention_days: a.retention_days.unwrap_or(400),
        flush_every: flush_every.max(1_000),
        query_memory_mib: a.query_memory_mib.unwrap_or(512).max(1),
        query_answer_mib: a.query_answer_mib.unwrap_or(16).max(1),
        query_timeout: query_timeout.max(1_000),
    }
}

fn cameras(ck: &mut Check, t: CamerasToml, s: &mut CameraSettings) {
    if let Some(e) = t.enabled {
        s.enabled = e;
    }
    ck.duration("health_every", t.health_every, &mut s.health_every);
    ck.duration("stall_timeout", t.stall_timeout, &mut s.stall_timeout);
    s.health_every = s.health_every.max(200);
    s.stall_timeout = s.stall_timeout.max(1_000);
    match t.transport.as_deref() {
        None | Some("tcp") => {}
        Some("udp") => s.udp = true,
        Some(t) => ck.err(
            "transport",
            format!("cameras.transport: `{t}` is neither tcp nor udp"),
        ),
    }
}

fn tokens(ck: &mut Check, list: Vec<TokenToml>) -> Vec<Token> {
    let mut out = Vec::new();
    for t in list {
        let Some(role) = Role::parse(&t.role) else {
            ck.err(
                &t.role,
                format!(
                    "token `{}`: unknown role `{}` (operator, admin, ingest or department:<id>)",
                    t.name, t.role
                ),
            );
            continue;
        };
        let hash = t.sha256.to_ascii_lowercase();
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            ck.err(
                &t.sha256,
                format!(
                    "token `{}`: sha256 must be 64 hex digits (`yujing token` prints one)",
                    t.name
                ),
            );
            continue;
        }
        out.push(Token {
            name: t.name,
            role,
            sha256: hash,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn reads_every_table() {
        let text = r#"
[engine]
timezone = "Asia/Shanghai"
[http]
listen = "127.0.0.1:9000"
[mqtt]
port = 1884
username = "iot"
password = "iotpass"
[store]
path = "var/y.db"
[dispatch]
max_attempts = 3
retry_base = "200ms"
[hj212]
listen = "127.0.0.1:0"
accept_flags = ["N"]
[cameras]
health_every = "2s"
transport = "udp"
[secrets]
hook = "k1"
[[tokens]]
name = "ops"
role = "department:zjj"
sha256 = "AB00000000000000000000000000000000000000000000000000000000000000"
"#;
        let s = load("yujing.toml", text, Path::new("/etc/yujing")).expect("loads");
        assert_eq!(s.http.listen, "127.0.0.1:9000");
        let m = s.mqtt.expect("mqtt");
        assert_eq!((m.port, m.password.as_deref()), (1884, Some("iotpass")));
        assert_eq!(
            m.topics,
            vec!["yujing/sensors/+/+", "yujing/cameras/+/events"]
        );
        assert_eq!(s.store.path, Path::new("/etc/yujing/var/y.db"));
        assert_eq!((s.dispatch.max_attempts, s.dispatch.retry_base), (3, 200));
        let h = s.hj212.expect("hj212");
        assert_eq!(
            (h.listen.as_str(), h.accept_flags),
            ("127.0.0.1:0", vec!['N'])
        );
        assert_eq!((s.cameras.health_every, s.cameras.udp), (2_000, true));
        assert_eq!(s.secrets.get("hook").map(String::as_str), Some("k1"));
        assert_eq!(s.tokens[0].role, Role::Department("zjj".into()));
        assert!(s.tokens[0].sha256.starts_with("ab"));
    }

    #[test]
    fn a_cluster_needs_a_readings_topic_and_partitions_like_the_producers() {
        let errs = load(
            "yujing.toml",
            "[cluster]\ninstance = \"yj-1\"\n",
            Path::new(""),
        )
        .expect_err("no kafka");
        assert!(
            errs[0].to_string().contains("readings_topic"),
            "{}",
            errs[0]
        );
        let s = load(
            "yujing.toml",
            "[store]\nurl = \"postgres://yj@db:5432/yujing\"\n[kafka]\nbrokers = \"k:9092\"\nreadings_topic = \"readings\"\ntickets_topic = \"tickets\"\n[cluster]\ninstance = \"yj-1\"\ncheckpoint_every = \"1s\"\npartitioner = \"murmur2_random\"\n",
            Path::new(""),
        )
        .expect("loads");
        let c = s.cluster.expect("cluster");
        assert_eq!(
            (c.instance.as_str(), c.checkpoint_every, c.partitioner),
            ("yj-1", 1_000, Partitioner::Murmur2)
        );
        assert_eq!(s.store.url.as_deref(), Some("postgres://yj@db:5432/yujing"));
        let errs = load(
            "yujing.toml",
            "[store]\nurl = \"mysql://x\"\n",
            Path::new(""),
        )
        .expect_err("not postgres");
        assert!(errs[0].to_string().contains("PostgreSQL"), "{}", errs[0]);
    }

    #[test]
    fn errors_have_positions() {
        let errs = load(
            "yujing.toml",
            "[http]\nlisten = \"nowhere\"\n",
            Path::new(""),
        )
        .expect_err("bad address");
        assert_eq!(
            errs[0].to_string(),
            "yujing.toml:2:1: http.listen: `nowhere` is not an address like 127.0.0.1:8088"
        );
        let errs = load("yujing.toml", "[mqtt]\nprot = 1\n", Path::new("")).expect_err("typo");
        assert!(
            errs[0]
                .to_string()
                .starts_with("yujing.toml:2:1: unknown field `prot`"),
            "{}",
            errs[0]
        );
    }
}
