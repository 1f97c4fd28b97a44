//! Backtests: replay labelled history through models and rules and say how right they were.
//!
//! - [`nab`]: the Numenta Anomaly Benchmark, scored exactly as NAB scores, with its result
//!   files.
//! - [`incidents`]: any series with an incident list (technician flags, recorded floods):
//!   precision, recall, lead times and false warnings per site-week.
//! - [`fit`]: `yujing fit`: anomaly-model parameters from history, judged on its incidents.
//! - [`html`]: the report page: each series, its labelled windows and the warnings.

pub mod fit;
pub mod html;
pub mod incidents;
pub mod nab;

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}: {err}")]
    Csv { path: PathBuf, err: csv::Error },
    #[error("{0}")]
    Input(String),
}

impl BacktestError {
    pub fn io(path: &Path, source: std::io::Error) -> BacktestError {
        BacktestError::Io {
            path: path.to_path_buf(),
            err: source,
        }
    }
    pub fn csv(path: &Path, source: csv::Error) -> BacktestError {
        BacktestError::Csv {
            path: path.to_path_buf(),
            err: source,
        }
    }
}

/// Quantiles of a sample (nearest rank), `None` when it is empty.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// The rule a model gets in a backtest: its output at or above the model's threshold is a
/// (yellow) warning, one per episode.
pub fn model_rule(m: &crate::config::models::Model) -> String {
    format!(
        "rules:\n  - id: model_{id}\n    title: 模型{id}异常\n    title_en: \"model {id}: anomaly\"\n    metric: {out}\n    window: {{type: tumbling, size: 1m}}\n    aggregate: max\n    above: {{yellow: {thr}}}\n    message: \"{{site.name}}模型{id}异常评分{{value:.2}}\"\n    message_en: \"{{site.name}}: model {id} anomaly score {{value:.2}}\"\n",
        id = m.id,
        out = m.output,
        thr = m.threshold,
    )
}

/// `config` with `model` added (replacing one of the same id or output) and its rule (see
/// [`model_rule`]).
pub fn with_model(
    config: &crate::config::Config,
    model: crate::config::models::Model,
) -> Result<crate::config::Config, BacktestError> {
    if model.anomaly().is_none() {
        return Err(BacktestError::Input(format!(
            "{}: --model takes anomaly models; a forecast is judged through the rules that use it",
            model.file
        )));
    }
    let mut cfg = config.clone();
    // it stands in for the model of the same id or output
    cfg.models
        .retain(|m| m.id != model.id && m.output != model.output);
    let rule = model_rule(&model);
    cfg.models.push(model);
    crate::config::provide_model_outputs(&mut cfg.registry, &cfg.models);
    let rules = crate::config::rules::load(&[("(model rule)".to_string(), rule)], &cfg.registry)
        .map_err(|d| {
            BacktestError::Input(
                d.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })?;
    cfg.rules.extend(rules);
    Ok(cfg)
}

/// A replay judged against incidents.
pub struct Judged {
    pub summary: crate::replay::Summary,
    pub alarms: Vec<incidents::Alarm>,
    pub verdicts: Vec<incidents::Verdict>,
}

/// Replay `opts.input` through `config` (its rules and models) and judge the warnings raised
/// against `list`: each warning counts once, when it is raised at `min_level` or above, or
/// when it first escalates to it.
pub fn against_incidents(
    config: std::sync::Arc<crate::config::Config>,
    mut opts: crate::replay::Options,
    list: &[incidents::Incident],
    early: crate::time::Millis,
    min_level: crate::event::Level,
) -> Result<Judged, BacktestError> {
    let tz = config.settings.timezone;
    let warnings = std::env::temp_dir().join(format!(
        "yujing-backtest-{}-{}.jsonl",
        std::process::id(),
        crate::store::now_ms()
    ));
    opts.output = Some(warnings.clone());
    let summary =
        crate::replay::run(config, &opts).map_err(|e| BacktestError::Input(e.to_string()))?;
    let text = std::fs::read_to_string(&warnings).map_err(|e| BacktestError::io(&warnings, e));
    let _ = std::fs::remove_file(&warnings);
    let mut alarms = Vec::new();
    let mut counted: std::collections::HashSet<String> = Default::default();
    for line in text?.lines() {
        let Ok(doc) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if doc["transition"] != "raise" && doc["transition"] != "escalate" {
            continue;
        }
        let level = doc["level"].as_str().and_then(crate::event::Level::parse);
        if level.is_none_or(|l| l < min_level) {
            continue;
        }
        if !counted.insert(doc["id"].as_str().unwrap_or_default().to_string()) {
            continue;
        }
        let at = doc["at"].as_str().unwrap_or_default();
        let Ok(at) = crate::time::parse_ts(at, tz) else {
            continue;
        };
        alarms.push(incidents::Alarm {
            rule: doc["rule"].as_str().unwrap_or_default().to_string(),
            site: doc["site"]["id"].as_str().unwrap_or_default().to_string(),
            at,
        });
    }
    let verdicts = incidents::judge(&alarms, list, &summary.spans, early);
    Ok(Judged {
        summary,
        alarms,
        verdicts,
    })
}
