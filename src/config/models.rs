//! Model files (`models/*.toml`): what a model reads, what it is called in rules, and its
//! parameters.
//!
//! ```toml
//! kind = "anomaly"                 # the streaming anomaly score (crate::model::anomaly)
//! metric = "pm10"                  # the readings it scores, per device
//! output = "pm10_anomaly"          # the metric rules use (default: <metric>_anomaly)
//! threshold = 0.5                  # a score at or above is an anomaly (backtests)
//! scope = { kind = "environment" } # optional: site kinds and/or site ids
//! [params]                         # optional: defaults otherwise (`yujing fit` writes them)
//! learn = 750
//! ```
//!
//! ```toml
//! kind = "forecast"                # hours until the series reaches a level (crate::model::forecast)
//! metric = "water_level"
//! output = "water_level_eta_h"     # default: <metric>_eta_h
//! target = "site.warning_level_m"  # a site-parameter expression, as rule thresholds
//! [params]
//! half_life = "30m"                # smoothing of level and trend
//! horizon = "48h"                  # the answer when not heading there, or further off
//! min_points = 6
//! direction = "rising"             # or "falling"
//! ```
//!
//! ```toml
//! kind = "risk"                    # a site risk score (crate::model::risk)
//! output = "site_risk"             # default: site_risk; fed as a reading of the site's first device
//! [params]
//! every = "10m"
//! window = "7d"                    # tickets counted over this
//! tickets_full = 10
//! [params.weights]
//! warnings = 0.4
//! tickets = 0.3
//! offline = 0.2
//! credit = 0.1
//! ```

use super::expr::Expr;
use super::yaml::{Diag, Pos};
use super::TomlCheck as Check;
use crate::model::anomaly::AnomalyParams;
use crate::model::forecast::ForecastParams;
use crate::model::risk::RiskParams;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// The file's stem.
    pub id: String,
    pub file: String,
    pub metric: String,
    pub output: String,
    pub threshold: f64,
    /// Site kinds and site ids it applies to (empty: every site with the metric).
    pub kinds: Vec<String>,
    pub sites: Vec<String>,
    pub kind: Kind,
}

/// What a model computes.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Anomaly(AnomalyParams),
    /// Hours until the metric reaches `target` (evaluated per site).
    Forecast {
        params: ForecastParams,
        target: Expr,
        target_text: String,
    },
    /// A score per site from its warnings, tickets, devices and enterprises.
    Risk(RiskParams),
}

impl Model {
    /// The anomaly parameters, if it is an anomaly model.
    pub fn anomaly(&self) -> Option<&AnomalyParams> {
        match &self.kind {
            Kind::Anomaly(p) => Some(p),
            _ => None,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RiskToml {
    every: Option<String>,
    window: Option<String>,
    tickets_full: Option<f64>,
    weights: Option<WeightsToml>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WeightsToml {
    warnings: Option<f64>,
    tickets: Option<f64>,
    offline: Option<f64>,
    credit: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ForecastToml {
    half_life: Option<String>,
    horizon: Option<String>,
    min_points: Option<usize>,
    direction: Option<String>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelToml {
    pub kind: String,
    /// The readings it reads (anomaly, forecast; a risk score reads the whole site).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    pub output: Option<String>,
    pub threshold: Option<f64>,
    /// Forecasts: the level, as an expression over site parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub scope: Option<ScopeToml>,
    #[serde(default)]
    pub params: toml::Table,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ScopeToml {
    #[serde(default, deserialize_with = "one_or_many")]
    pub kind: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub sites: Vec<String>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Om {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Om::deserialize(d)? {
        Om::One(s) => vec![s],
        Om::Many(v) => v,
    })
}

/// Parse one model file.
pub fn parse(path: &Path, text: &str) -> Result<Model, Vec<Diag>> {
    let file = path.display().to_string();
    let t: ModelToml = super::parse_toml(&file, text)?;
    let mut ck = Check {
        file: &file,
        text,
        errs: Vec::new(),
    };
    let kind = match t.kind.as_str() {
        "anomaly" => anomaly(&mut ck, &t.params),
        "forecast" => forecast(&mut ck, &t.params, t.target.as_deref()),
        "risk" => risk(&mut ck, &t.params),
        other => {
            ck.err(
                "kind",
                format!("kind: `{other}` is not a model kind yujing has (anomaly, forecast, risk)"),
            );
            None
        }
    };
    let metric = match (&kind, t.metric) {
        (Some(Kind::Risk(_)), _) => String::new(),
        (_, Some(m)) => m,
        (_, None) => {
            ck.err_at(
                Pos { line: 1, col: 1 },
                "`metric`: the readings the model reads".into(),
            );
            String::new()
        }
    };
    let threshold = t.threshold.unwrap_or(0.5);
    if !(0.0..=1.0).contains(&threshold) {
        ck.err("threshold", "threshold: a score in [0, 1]".into());
    }
    let scope = t.scope.unwrap_or_default();
    for k in &scope.kind {
        if super::sites::SiteKind::parse(k).is_none() {
            ck.err(
                k,
                format!("scope.kind: unknown site kind `{k}` (environment, construction, water, tourism)"),
            );
        }
    }
    let errs = ck.errs;
    let Some(kind) = kind.filter(|_| errs.is_empty()) else {
        return Err(errs);
    };
    let id = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let output = t.output.unwrap_or_else(|| match kind {
        Kind::Anomaly(_) => format!("{metric}_anomaly"),
        Kind::Forecast { .. } => format!("{metric}_eta_h"),
        Kind::Risk(_) => "site_risk".into(),
    });
    Ok(Model {
        output,
        id,
        file,
        metric,
        threshold,
        kinds: scope.kind,
        sites: scope.sites,
        kind,
    })
}

/// `[params]` that do not deserialize: "unknown field `x`, expected ..." points at x.
fn bad_params(ck: &mut Check, e: toml::de::Error) {
    let msg = e.message().to_string();
    let pos = msg
        .split('`')
        .nth(1)
        .map(|key| super::find_pos(ck.text, key))
        .filter(|p| p.line > 0)
        .unwrap_or_else(|| super::find_pos(ck.text, "[params]"));
    ck.err_at(pos, format!("params: {msg}"));
}

/// A duration parameter, more than 0, into `slot` if given.
fn positive(ck: &mut Check, key: &str, v: Option<String>, slot: &mut crate::time::Millis) {
    if let Some(v) = v {
        match crate::time::parse_duration(&v) {
            Ok(d) if d > 0 => *slot = d,
            Ok(_) => ck.err(key, format!("params.{key}: must be more than 0")),
            Err(m) => ck.err(key, format!("params.{key}: {m}")),
        }
    }
}

fn anomaly(ck: &mut Check, params: &toml::Table) -> Option<Kind> {
    match AnomalyParams::deserialize(toml::Value::Table(params.clone())) {
        Ok(p) => {
            for problem in p.problems() {
                let key = problem.split(':').next().unwrap_or("params").to_string();
                ck.err(&key, format!("params.{problem}"));
            }
            Some(Kind::Anomaly(p))
        }
        Err(e) => {
            bad_params(ck, e);
            None
        }
    }
}

fn forecast(ck: &mut Check, params_toml: &toml::Table, target: Option<&str>) -> Option<Kind> {
    let mut params = ForecastParams::default();
    match ForecastToml::deserialize(toml::Value::Table(params_toml.clone())) {
        Ok(f) => {
            positive(ck, "half_life", f.half_life, &mut params.half_life);
            positive(ck, "horizon", f.horizon, &mut params.horizon);
            if let Some(n) = f.min_points {
                params.min_points = n.max(2);
            }
            match f.direction.as_deref() {
                None | Some("rising") => {}
                Some("falling") => params.falling = true,
                Some(d) => ck.err(
                    "direction",
                    format!("params.direction: `{d}` is neither rising nor falling"),
                ),
            }
        }
        Err(e) => bad_params(ck, e),
    }
    match target.map(|s| (s, Expr::parse(s))) {
        Some((text, Ok(target))) => Some(Kind::Forecast {
            params,
            target,
            target_text: text.to_string(),
        }),
        Some((_, Err(e))) => {
            ck.err("target", format!("target: {}", e.msg));
            None
        }
        None => {
            ck.err_at(
                Pos { line: 1, col: 1 },
                "a forecast needs `target`, the level it forecasts (e.g. target = \"site.warning_level_m\")".into(),
            );
            None
        }
    }
}

fn risk(ck: &mut Check, params_toml: &toml::Table) -> Option<Kind> {
    let r = match RiskToml::deserialize(toml::Value::Table(params_toml.clone())) {
        Ok(r) => r,
        Err(e) => {
            bad_params(ck, e);
            return None;
        }
    };
    let mut params = RiskParams::default();
    positive(ck, "every", r.every, &mut params.every);
    positive(ck, "window", r.window, &mut params.window);
    if let Some(n) = r.tickets_full {
        params.tickets_full = n;
    }
    if let Some(w) = r.weights {
        for (key, v, slot) in [
            ("warnings", w.warnings, &mut params.warnings),
            ("tickets", w.tickets, &mut params.tickets),
            ("offline", w.offline, &mut params.offline),
            ("credit", w.credit, &mut params.credit),
        ] {
            if let Some(v) = v {
                if v.is_finite() && v >= 0.0 {
                    *slot = v;
                } else {
                    ck.err(key, format!("params.weights.{key}: a weight of 0 or more"));
                }
            }
        }
    }
    if params.tickets_full.is_nan() || params.tickets_full < 1.0 {
        ck.err("tickets_full", "params.tickets_full: 1 or more".into());
    }
    Some(Kind::Risk(params))
}

/// Forecast targets name site parameters: every site the model applies to (with a device
/// measuring its metric) must have them.
pub fn check_targets(models: &[Model], registry: &super::sites::Registry) -> Vec<Diag> {
    let mut out = Vec::new();
    for m in models {
        let Kind::Forecast { target, .. } = &m.kind else {
            continue;
        };
        for site in &registry.sites {
            let in_scope = (m.kinds.is_empty() || m.kinds.iter().any(|k| k == site.kind.as_str()))
                && (m.sites.is_empty() || m.sites.contains(&site.id));
            let measures = site
                .devices
                .iter()
                .any(|d| registry.devices[*d as usize].metrics.contains(&m.metric));
            if !(in_scope && measures) {
                continue;
            }
            if let Err(e) = target.eval(&site.params) {
                let text = std::fs::read_to_string(&m.file).unwrap_or_default();
                out.push(Diag {
                    file: m.file.as_str().into(),
                    pos: super::find_pos(&text, "target"),
                    msg: format!("target: site `{}`: {e}", site.id),
                });
            }
        }
    }
    out
}

/// Read and parse one model file.
pub fn load_file(path: &Path) -> Result<Model, Vec<Diag>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Diag {
            file: path.display().to_string().into(),
            pos: Pos { line: 1, col: 1 },
            msg: e.to_string(),
        }]
    })?;
    parse(path, &text)
}

/// Every `*.toml` of a models folder, by file name (none: an empty list).
pub fn load_dir(dir: &Path) -> Result<Vec<Model>, Vec<Diag>> {
    let mut files: Vec<_> = match std::fs::read_dir(dir) {
        Ok(l) => l
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect(),
        Err(_) => return Ok(Vec::new()),
    };
    files.sort();
    let mut out: Vec<Model> = Vec::new();
    let mut errs = Vec::new();
    for f in files {
        match load_file(&f) {
            Ok(m) => {
                if let Some(other) = out.iter().find(|o| o.output == m.output) {
                    let text = std::fs::read_to_string(&f).unwrap_or_default();
                    errs.push(Diag {
                        file: m.file.as_str().into(),
                        pos: super::find_pos(&text, "output"),
                        msg: format!(
                            "output `{}` is also {}'s: two models cannot write one metric",
                            m.output, other.file
                        ),
                    });
                    continue;
                }
                out.push(m)
            }
            Err(e) => errs.extend(e),
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(errs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_file_with_defaults() {
        let m = parse(
            Path::new("models/pm.toml"),
            "kind = \"anomaly\"\nmetric = \"pm10\"\n",
        )
        .expect("ok");
        assert_eq!(m.id, "pm");
        assert_eq!(m.output, "pm10_anomaly");
        assert_eq!(m.anomaly(), Some(&AnomalyParams::default()));
    }

    #[test]
    fn errors_point_at_the_line() {
        let text = "kind = \"anomaly\"\nmetric = \"pm10\"\n[params]\nlearn = 10\nskip = 2.0\n";
        let e = parse(Path::new("m.toml"), text).expect_err("bad skip");
        assert_eq!(
            e[0].to_string(),
            "m.toml:5:1: params.skip: a fraction in [0, 1)"
        );
        let e = parse(
            Path::new("m.toml"),
            "kind = \"anomaly\"\nmetric = \"pm10\"\nlaern = 3\n",
        )
        .expect_err("unknown");
        assert!(
            e[0].to_string()
                .starts_with("m.toml:3:1: unknown field `laern`"),
            "{}",
            e[0]
        );
    }
}
