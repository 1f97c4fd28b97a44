//! Configuration files an administrator edits, and their loading with precise errors:
//! `yujing.toml` (engine settings), `sites.yaml` or `sites.csv` (the registry) and `rules/*.yaml`.

pub mod expr;
pub mod models;
pub mod routes;
pub mod rules;
pub mod sample;
pub mod service;
pub mod sites;
pub mod sites_csv;
pub mod template;
pub mod yaml;

use crate::time::{parse_duration, Millis, DAY, MINUTE, SECOND};
use chrono_tz::Tz;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use yaml::{Diag, Pos};

pub use rules::Rule;
pub use sites::Registry;

/// Event-time behaviour of the engine (`[engine]` in yujing.toml).
#[derive(Clone, Debug, PartialEq)]
pub struct EngineSettings {
    /// Local time zone for time-of-day scopes, per-day counts and messages.
    pub timezone: Tz,
    /// Bounded out-of-orderness: the watermark trails the newest event time by this much.
    pub out_of_orderness: Millis,
    /// Windows stay open this long after the watermark passes their end; later readings are late.
    pub allowed_lateness: Millis,
    /// A source silent this long (in processing time) no longer holds the watermark back.
    pub idle_timeout: Millis,
    /// A reading more than this ahead of the stream's newest time is rejected as a bad timestamp.
    pub max_future: Millis,
    /// A reading more than this behind the stream's newest time is rejected as a bad timestamp.
    pub max_past: Millis,
    /// A reading stamped more than this ahead of the clock it arrived by is rejected as a bad
    /// timestamp (a device clock running fast would otherwise move event time on for every
    /// device). Recorded input arrives "at" its own time, so replays never trip it.
    pub max_clock_ahead: Millis,
    /// Absence rules also cover devices never heard from since the engine started (live
    /// service); off by default so a replay of some sites does not flag every other device.
    pub watch_unseen_devices: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            timezone: chrono_tz::Asia::Shanghai,
            out_of_orderness: 5 * SECOND,
            allowed_lateness: 0,
            idle_timeout: 5 * MINUTE,
            max_future: DAY,
            max_past: 30 * DAY,
            max_clock_ahead: MINUTE,
            watch_unseen_devices: false,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EngineToml {
    timezone: Option<String>,
    out_of_orderness: Option<String>,
    allowed_lateness: Option<String>,
    idle_timeout: Option<String>,
    max_future: Option<String>,
    max_past: Option<String>,
    max_clock_ahead: Option<String>,
    watch_unseen_devices: Option<bool>,
}

#[derive(Deserialize, Default)]
struct FileToml {
    #[serde(default)]
    engine: EngineToml,
}

/// Parse the `[engine]` table of yujing.toml (other tables belong to the service).
pub fn engine_settings(file: &str, text: &str) -> Result<EngineSettings, Vec<Diag>> {
    let diag = |pos: Pos, msg: String| Diag {
        file: file.into(),
        pos,
        msg,
    };
    let parsed: FileToml = parse_toml(file, text)?;
    let mut s = EngineSettings::default();
    let mut errs = Vec::new();
    let e = parsed.engine;
    if let Some(w) = e.watch_unseen_devices {
        s.watch_unseen_devices = w;
    }
    if let Some(tz) = e.timezone {
        match tz.parse::<Tz>() {
            Ok(t) => s.timezone = t,
            Err(_) => errs.push(diag(
                find_pos(text, "timezone"),
                format!("unknown time zone `{tz}` (use an IANA name such as Asia/Shanghai)"),
            )),
        }
    }
    for (name, val, slot) in [
        (
            "out_of_orderness",
            e.out_of_orderness,
            &mut s.out_of_orderness,
        ),
        (
            "allowed_lateness",
            e.allowed_lateness,
            &mut s.allowed_lateness,
        ),
        ("idle_timeout", e.idle_timeout, &mut s.idle_timeout),
        ("max_future", e.max_future, &mut s.max_future),
        ("max_past", e.max_past, &mut s.max_past),
        ("max_clock_ahead", e.max_clock_ahead, &mut s.max_clock_ahead),
    ] {
        if let Some(v) = val {
            match parse_duration(&v) {
                Ok(d) => *slot = d,
                Err(m) => errs.push(diag(find_pos(text, name), format!("engine.{name}: {m}"))),
            }
        }
    }
    if errs.is_empty() {
        Ok(s)
    } else {
        Err(errs)
    }
}

/// Parse yujing.toml into `T`; a syntax or type error comes back at its position.
fn parse_toml<T: serde::de::DeserializeOwned>(file: &str, text: &str) -> Result<T, Vec<Diag>> {
    toml::from_str(text).map_err(|e| {
        let pos = e
            .span()
            .map(|s| offset_pos(text, s.start))
            .unwrap_or_default();
        vec![Diag {
            file: file.into(),
            pos,
            msg: e.message().to_string(),
        }]
    })
}

fn offset_pos(text: &str, offset: usize) -> Pos {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    Pos { line, col }
}

/// Checks of a TOML file's values; each error at the position of its key in the file.
struct TomlCheck<'a> {
    file: &'a str,
    text: &'a str,
    errs: Vec<Diag>,
}

impl TomlCheck<'_> {
    fn err(&mut self, key: &str, msg: String) {
        let pos = find_pos(self.text, key);
        self.err_at(pos, msg);
    }

    fn err_at(&mut self, pos: Pos, msg: String) {
        self.errs.push(Diag {
            file: self.file.into(),
            pos,
            msg,
        });
    }

    /// A duration like `30s` into `slot`, if given.
    fn duration(&mut self, key: &str, v: Option<String>, slot: &mut crate::time::Millis) {
        if let Some(v) = v {
            match crate::time::parse_duration(&v) {
                Ok(d) => *slot = d,
                Err(m) => self.err(key, format!("{key}: {m}")),
            }
        }
    }
}

/// Devices whose secrets (camera credentials, monitor passwords) yujing.toml lacks.
fn device_secrets(
    name: &str,
    t: &str,
    reg: &Registry,
    service: &service::ServiceSettings,
) -> Vec<Diag> {
    let mut out = Vec::new();
    for d in &reg.devices {
        let named = [
            match &d.hj212_pw {
                Some(sites::Password::Secret(s)) => Some(("hj212_pw_secret", s, "monitor", "")),
                _ => None,
            },
            d.rtsp_secret
                .as_ref()
                .map(|s| ("rtsp_credentials", s, "camera", " (value `user:password`)")),
        ];
        for (key, sec, what, value) in named.into_iter().flatten() {
            if service.secrets.contains_key(sec) {
                continue;
            }
            out.push(Diag {
                file: name.into(),
                pos: t
                    .find(&format!("{key}: {sec}"))
                    .map(|o| o + key.len() + 2)
                    .map(|o| offset_pos(t, o))
                    .unwrap_or_default(),
                msg: format!("{what} `{}`: {key} names the secret `{sec}`, which is not in the [secrets] table of yujing.toml{value}", d.id),
            });
        }
    }
    out
}

/// Channels that need what yujing.toml lacks: a kafka channel without [kafka], a secret not in
/// [secrets].
fn channel_checks(
    name: &str,
    text: &str,
    r: &routes::Routes,
    service: &service::ServiceSettings,
) -> Vec<Diag> {
    let mut out = Vec::new();
    for c in &r.channels {
        if c.kind == routes::ChannelKind::Kafka && service.kafka.is_none() {
            out.push(Diag {
                file: name.into(),
                pos: text
                    .find(&format!("id: {}", c.id))
                    .map(|o| offset_pos(text, o))
                    .unwrap_or_default(),
                msg: format!("channel `{}` is a kafka channel, but yujing.toml has no [kafka] table (brokers)", c.id),
            });
        }
        if let Some(sec) = &c.secret {
            if !service.secrets.contains_key(sec) {
                out.push(Diag {
                    file: name.into(),
                    pos: text
                        .find(&format!("secret: {sec}"))
                        .map(|o| o + "secret: ".len())
                        .or_else(|| text.find(sec.as_str()))
                        .map(|o| offset_pos(text, o))
                        .unwrap_or_default(),
                    msg: format!(
                        "channel `{}`: secret `{sec}` is not in the [secrets] table of yujing.toml",
                        c.id
                    ),
                });
            }
        }
    }
    out
}

fn find_pos(text: &str, key: &str) -> Pos {
    text.find(key)
        .map(|o| offset_pos(text, o))
        .unwrap_or_default()
}

/// Everything the engine needs, loaded from one config directory.
#[derive(Clone, Debug)]
pub struct Config {
    pub dir: PathBuf,
    pub settings: EngineSettings,
    pub registry: Registry,
    pub rules: Vec<Rule>,
    /// routes.yaml (defaults: every warning to its site's departments, no channels).
    pub routes: routes::Routes,
    /// The service tables of yujing.toml.
    pub service: service::ServiceSettings,
    /// `models/*.toml`: derived metrics rules can use.
    pub models: Vec<models::Model>,
}

impl Config {
    /// Whether `metric` is computed by a model (devices provide it; none measures it).
    pub fn is_model_output(&self, metric: &str) -> bool {
        self.models.iter().any(|m| m.output == metric)
    }
}

/// Devices that measure a model's metric (at sites in its scope) also provide its output.
pub fn provide_model_outputs(registry: &mut Registry, models: &[models::Model]) {
    for m in models {
        if let models::Kind::Risk(_) = m.kind {
            // a site's score is a reading of its first measuring device (else its first one)
            for site in 0..registry.sites.len() {
                let s = &registry.sites[site];
                let in_scope = (m.kinds.is_empty() || m.kinds.iter().any(|k| k == s.kind.as_str()))
                    && (m.sites.is_empty() || m.sites.contains(&s.id));
                let carrier = s
                    .devices
                    .iter()
                    .copied()
                    .find(|d| {
                        let dev = &registry.devices[*d as usize];
                        !dev.is_hotline() && !dev.is_camera()
                    })
                    .or_else(|| s.devices.first().copied());
                if let (true, Some(d)) = (in_scope, carrier) {
                    let dev = &mut registry.devices[d as usize];
                    if !dev.metrics.contains(&m.output) {
                        dev.metrics.push(m.output.clone());
                    }
                }
            }
            continue;
        }
        for d in 0..registry.devices.len() {
            let site = &registry.sites[registry.devices[d].site as usize];
            let in_scope = (m.kinds.is_empty() || m.kinds.iter().any(|k| k == site.kind.as_str()))
                && (m.sites.is_empty() || m.sites.contains(&site.id));
            let dev = &mut registry.devices[d];
            if in_scope && dev.metrics.contains(&m.metric) && !dev.metrics.contains(&m.output) {
                dev.metrics.push(m.output.clone());
            }
        }
    }
}

/// The registry of a config directory: `sites.yaml`, or `sites.csv` when there is no YAML one.
fn registry_file(dir: &Path) -> PathBuf {
    let yaml = dir.join("sites.yaml");
    let csv = dir.join("sites.csv");
    if !yaml.exists() && csv.exists() {
        csv
    } else {
        yaml
    }
}

/// Where the pieces of a config directory are.
pub struct Layout {
    pub dir: PathBuf,
    pub sites: PathBuf,
    pub rules_dir: PathBuf,
    pub toml: PathBuf,
    pub routes: PathBuf,
}

/// Whether `dir` holds a site registry (`sites.yaml` or `sites.csv`), the one file every
/// configuration directory has.
pub fn has_registry(dir: &Path) -> bool {
    dir.join("sites.yaml").exists() || dir.join("sites.csv").exists()
}

impl Layout {
    /// `DIR` may be the config directory itself or its `rules/` folder.
    pub fn find(dir: &Path) -> Layout {
        // `./rules/x.yaml` reads better as `rules/x.yaml`
        let dir = if dir == Path::new(".") || dir == Path::new("./") {
            Path::new("")
        } else {
            dir
        };
        let base = match dir.parent() {
            Some(parent)
                if !has_registry(dir)
                    && dir.file_name().is_some_and(|n| n == "rules")
                    && has_registry(parent) =>
            {
                return Layout {
                    sites: registry_file(parent),
                    toml: parent.join("yujing.toml"),
                    routes: parent.join("routes.yaml"),
                    rules_dir: dir.to_path_buf(),
                    dir: parent.to_path_buf(),
                };
            }
            _ => dir.to_path_buf(),
        };
        Layout {
            sites: registry_file(&base),
            toml: base.join("yujing.toml"),
            routes: base.join("routes.yaml"),
            rules_dir: base.join("rules"),
            dir: base,
        }
    }

    /// Rule files (`*.yaml`, `*.yml`) directly in the rules folder, sorted by name.
    pub fn rule_files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.rules_dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.is_file() && is_yaml(p))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

pub fn is_yaml(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "yaml" || e == "yml")
}

fn read(path: &Path, diags: &mut Vec<Diag>) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) => {
            diags.push(Diag {
                file: path.display().to_string().into(),
                pos: Pos { line: 1, col: 1 },
                msg: format!("cannot read: {e}"),
            });
            None
        }
    }
}

impl Config {
    /// Load and validate a config directory; every problem in every file comes back at once.
    pub fn load(dir: &Path) -> Result<Config, Vec<Diag>> {
        let layout = Layout::find(dir);
        let mut diags = Vec::new();
        let toml_name = layout.toml.display().to_string();
        let toml_text = if layout.toml.exists() {
            read(&layout.toml, &mut diags)
        } else {
            None
        };
        let settings = toml_text
            .as_deref()
            .and_then(|t| {
                engine_settings(&toml_name, t)
                    .map_err(|e| diags.extend(e))
                    .ok()
            })
            .unwrap_or_default();
        let service = toml_text
            .as_deref()
            .and_then(|t| {
                service::load(&toml_name, t, &layout.dir)
                    .map_err(|e| diags.extend(e))
                    .ok()
            })
            .unwrap_or_else(|| {
                let mut s = service::ServiceSettings::default();
                s.store.path = layout.dir.join(&s.store.path);
                s.store.dead_letter = layout.dir.join(&s.store.dead_letter);
                s
            });
        let is_csv = layout.sites.extension().is_some_and(|e| e == "csv");
        if !is_csv && layout.dir.join("sites.csv").exists() && layout.sites.exists() {
            diags.push(Diag {
                file: layout.dir.join("sites.csv").display().to_string().into(),
                pos: Pos { line: 1, col: 1 },
                msg: "both sites.yaml and sites.csv are here: keep one registry".into(),
            });
        }
        let mut secret_diags = Vec::new();
        let registry = match read(&layout.sites, &mut diags) {
            Some(t) => {
                let name = layout.sites.display().to_string();
                let loaded = if is_csv {
                    sites_csv::load(&name, &t)
                } else {
                    sites::load(&name, &t)
                };
                let reg = loaded.unwrap_or_else(|e| {
                    diags.extend(e);
                    Registry::default()
                });
                // cameras' credentials and monitors' passwords name secrets of yujing.toml
                // (when there is one: replays and rule tests dial no camera and take no HJ 212
                // packet); reported after the rules' own errors
                if toml_text.is_some() {
                    secret_diags = device_secrets(&name, &t, &reg, &service);
                }
                reg
            }
            None => Registry::default(),
        };
        let mut registry = registry;
        let models = models::load_dir(&layout.dir.join("models")).unwrap_or_else(|e| {
            diags.extend(e);
            Vec::new()
        });
        diags.extend(models::check_targets(&models, &registry));
        provide_model_outputs(&mut registry, &models);
        let files: Vec<(String, String)> = layout
            .rule_files()
            .into_iter()
            .filter_map(|p| read(&p, &mut diags).map(|t| (p.display().to_string(), t)))
            .collect();
        if files.is_empty() && diags.is_empty() {
            diags.push(Diag {
                file: layout.rules_dir.display().to_string().into(),
                pos: Pos { line: 1, col: 1 },
                msg: "no rule files (*.yaml) here".into(),
            });
        }
        // with a broken registry, rule errors about sites would only be noise
        let rules = if diags.is_empty() {
            rules::load(&files, &registry).unwrap_or_else(|e| {
                diags.extend(e);
                Vec::new()
            })
        } else {
            Vec::new()
        };
        let mut routes = routes::Routes::default();
        if diags.is_empty() && layout.routes.exists() {
            if let Some(text) = read(&layout.routes, &mut diags) {
                let name = layout.routes.display().to_string();
                let (r, errs) = routes::load_all(&name, &text, &registry);
                diags.extend(errs);
                let ids: Vec<&str> = rules.iter().map(|r| r.id.as_str()).collect();
                diags.extend(routes::check_rules(&name, &text, &r, &ids));
                diags.extend(channel_checks(&name, &text, &r, &service));
                routes = r;
            }
        }
        diags.extend(secret_diags);
        if diags.is_empty() {
            Ok(Config {
                dir: layout.dir,
                settings,
                registry,
                rules,
                routes,
                service,
                models,
            })
        } else {
            Err(diags)
        }
    }

    /// Build from texts (tests and tools).
    pub fn from_texts(
        sites_yaml: &str,
        rule_files: &[(&str, &str)],
        settings: EngineSettings,
    ) -> Result<Config, Vec<Diag>> {
        Config::from_texts_with_models(sites_yaml, rule_files, Vec::new(), settings)
    }

    /// Build from texts and models (tests and tools).
    pub fn from_texts_with_models(
        sites_yaml: &str,
        rule_files: &[(&str, &str)],
        models: Vec<models::Model>,
        settings: EngineSettings,
    ) -> Result<Config, Vec<Diag>> {
        let mut registry = sites::load("sites.yaml", sites_yaml)?;
        provide_model_outputs(&mut registry, &models);
        let files: Vec<(String, String)> = rule_files
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        let rules = rules::load(&files, &registry)?;
        Ok(Config {
            dir: PathBuf::new(),
            settings,
            registry,
            rules,
            routes: routes::Routes::default(),
            service: service::ServiceSettings::default(),
            models,
        })
    }
}
