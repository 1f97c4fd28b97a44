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

use super::yaml::{Diag, Pos};
use crate::model::anomaly::AnomalyParams;
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
    pub params: AnomalyParams,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelToml {
    pub kind: String,
    pub metric: String,
    pub output: Option<String>,
    pub threshold: Option<f64>,
    pub scope: Option<ScopeToml>,
    #[serde(default)]
    pub params: AnomalyParams,
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
    let at = |key: &str| super::find_pos(text, key);
    let diag = |pos: Pos, msg: String| Diag {
        file: file.as_str().into(),
        pos,
        msg,
    };
    let mut errs = Vec::new();
    if t.kind != "anomaly" {
        errs.push(diag(
            at("kind"),
            format!(
                "kind: `{}` is not a model kind yujing has (anomaly)",
                t.kind
            ),
        ));
    }
    for p in t.params.problems() {
        let key = p.split(':').next().unwrap_or("params").to_string();
        errs.push(diag(at(&key), format!("params.{p}")));
    }
    let threshold = t.threshold.unwrap_or(0.5);
    if !(0.0..=1.0).contains(&threshold) {
        errs.push(diag(at("threshold"), "threshold: a score in [0, 1]".into()));
    }
    let scope = t.scope.unwrap_or_default();
    for k in &scope.kind {
        if super::sites::SiteKind::parse(k).is_none() {
            errs.push(diag(
                at(k),
                format!("scope.kind: unknown site kind `{k}` (environment, construction, water, tourism)"),
            ));
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    let id = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Model {
        output: t.output.unwrap_or_else(|| format!("{}_anomaly", t.metric)),
        id,
        file,
        metric: t.metric,
        threshold,
        kinds: scope.kind,
        sites: scope.sites,
        params: t.params,
    })
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
        assert_eq!(m.params, AnomalyParams::default());
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
