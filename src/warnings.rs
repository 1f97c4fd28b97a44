//! Warnings as users see them: a transition from the engine rendered into the warning document
//! of the contract (stable id, level, site, departments, zh-CN and English messages, evidence).
//! Storage and the lifecycle (ack, feedback, close) join here with the live service.

use crate::config::template::{fmt_num, Value};
use crate::config::Config;
use crate::engine::alert::TransitionKind;
use crate::engine::{Engine, Subject, Transition};
use crate::event::Level;
use crate::time::{format_duration, format_ts, Ts};
use serde::Serialize;

/// The stable id of a warning: the same rule, subject and episode always give the same id.
pub fn warning_id(rule: &str, subject: &str, episode_start: Ts) -> String {
    // FNV-1a, 64 bit: stable across builds and platforms, unlike std's hasher
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [
        rule.as_bytes(),
        b"\0",
        subject.as_bytes(),
        b"\0",
        episode_start.to_string().as_bytes(),
    ] {
        for b in part {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("w-{h:016x}")
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SiteRef {
    pub id: String,
    pub name: String,
    pub kind: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct WindowRef {
    pub start: String,
    pub end: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Evidence {
    pub window: String,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub aggregates: serde_json::Map<String, serde_json::Value>,
    pub devices: Vec<String>,
}

/// One warning transition, as written by `yujing replay` and delivered to departments.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct WarningEvent {
    pub id: String,
    pub rule: String,
    pub transition: TransitionKind,
    pub level: Level,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_level: Option<Level>,
    pub seq: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reopened: bool,
    pub site: SiteRef,
    /// The device or site the rule watched.
    pub subject: String,
    pub departments: Vec<String>,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title_en: Option<String>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_en: Option<String>,
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub values: serde_json::Map<String, serde_json::Value>,
    pub threshold: Option<f64>,
    pub window: WindowRef,
    pub at: String,
    pub raised_at: String,
    pub evidence: Evidence,
    pub status: &'static str,
}

fn num(v: f64) -> Option<f64> {
    v.is_finite().then_some((v * 1e6).round() / 1e6)
}

/// Render an engine transition into the warning document.
pub fn render(engine: &Engine, t: &Transition) -> WarningEvent {
    let cfg: &Config = &engine.config;
    let rule = &cfg.rules[t.rule];
    let site = &cfg.registry.sites[t.site as usize];
    let tz = cfg.settings.timezone;
    let subject = engine.subject_id(t.subject).to_string();
    let devices: Vec<String> = t
        .devices
        .iter()
        .map(|d| cfg.registry.devices[*d as usize].id.clone())
        .collect();
    let metric = rule.metrics().first().cloned().unwrap_or_default();
    let lookup = |en: bool| {
        let subject = subject.clone();
        let metric = metric.clone();
        move |name: &str| -> Value {
            match name {
                "site.id" => Value::Str(site.id.clone()),
                "site.name" => Value::Str(if en {
                    site.name_en.clone().unwrap_or_else(|| site.name.clone())
                } else {
                    site.name.clone()
                }),
                "site.kind" => Value::Str(site.kind.as_str().to_string()),
                "device" | "key" => Value::Str(subject.clone()),
                "metric" => Value::Str(metric.clone()),
                "value" => Value::Num(t.value),
                "threshold" => Value::Num(t.threshold),
                "level" => Value::Str(if en {
                    t.step.level.as_str().to_string()
                } else {
                    t.step.level.zh().to_string()
                }),
                "rule" => Value::Str(rule.id.clone()),
                "title" => Value::Str(rule.title.clone()),
                "window.start" => Value::Str(format_ts(t.window.0, tz)),
                "window.end" => Value::Str(format_ts(t.window.1, tz)),
                "window.size" | "duration" => Value::Str(format_duration(t.window.1 - t.window.0)),
                "count" => Value::Num(t.evidence.map(|e| e.count as f64).unwrap_or(f64::NAN)),
                _ => Value::Str(String::new()),
            }
        }
    };
    let site_en = site.name_en.clone().unwrap_or_else(|| site.name.clone());
    let (message, message_en) = if t.step.kind == TransitionKind::Clear {
        // the rule's message describes the breach; a clear says that it is over
        let now = if t.evidence.is_some() && t.value.is_finite() {
            format!("，当前值{}", fmt_num(t.value))
        } else {
            String::new()
        };
        let now_en = if t.evidence.is_some() && t.value.is_finite() {
            format!(" (now {})", fmt_num(t.value))
        } else {
            String::new()
        };
        (
            format!(
                "{}{}{}预警已解除{now}",
                site.name,
                rule.title,
                t.step.level.zh()
            ),
            rule.message_en.as_ref().map(|_| {
                format!(
                    "{site_en}: {} {} warning cleared{now_en}",
                    rule.title_en.as_deref().unwrap_or(&rule.title),
                    t.step.level
                )
            }),
        )
    } else {
        let mut m = rule.message.render(lookup(false));
        let mut m_en = rule.message_en.as_ref().map(|m| m.render(lookup(true)));
        let (suffix, suffix_en) = match t.step.kind {
            TransitionKind::Escalate => ("（升级）", " (escalated)"),
            TransitionKind::DeEscalate => ("（降级）", " (de-escalated)"),
            _ => ("", ""),
        };
        m.push_str(suffix);
        if let Some(e) = &mut m_en {
            e.push_str(suffix_en);
        }
        (m, m_en)
    };
    let mut values = serde_json::Map::new();
    for (m, a, v) in &t.values {
        values.insert(format!("{m}.{a}"), num(*v).into());
    }
    let mut aggregates = serde_json::Map::new();
    if let Some(e) = t.evidence {
        aggregates.insert("count".into(), e.count.into());
        aggregates.insert("min".into(), num(e.min).into());
        aggregates.insert("max".into(), num(e.max).into());
        aggregates.insert("avg".into(), num(e.avg).into());
        if e.last.is_finite() {
            aggregates.insert("last".into(), num(e.last).into());
        }
    }
    let window_desc = match rule.window() {
        Some(w) => w.describe(),
        None => "absence".to_string(),
    };
    let status = if t.step.kind == TransitionKind::Clear {
        "cleared"
    } else {
        "open"
    };
    WarningEvent {
        id: warning_id(&rule.id, &subject, t.step.episode_start),
        rule: rule.id.clone(),
        transition: t.step.kind,
        level: t.step.level,
        previous_level: t.step.previous,
        seq: t.step.seq,
        reopened: t.step.reopened,
        site: SiteRef {
            id: site.id.clone(),
            name: site.name.clone(),
            kind: site.kind.as_str().to_string(),
        },
        subject: match t.subject {
            Subject::Device(_) | Subject::Site(_) => subject.clone(),
        },
        departments: site.departments.clone(),
        title: rule.title.clone(),
        title_en: rule.title_en.clone(),
        message,
        message_en,
        value: num(t.value),
        values,
        threshold: num(t.threshold),
        window: WindowRef {
            start: format_ts(t.window.0, tz),
            end: format_ts(t.window.1, tz),
        },
        at: format_ts(t.at, tz),
        raised_at: format_ts(t.step.raised_at, tz),
        evidence: Evidence {
            window: window_desc,
            aggregates,
            devices,
        },
        status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable() {
        let a = warning_id("dust", "cs-01-pm10", 1_795_825_800_000);
        assert_eq!(a, warning_id("dust", "cs-01-pm10", 1_795_825_800_000));
        assert_ne!(a, warning_id("dust", "cs-01-pm10", 1_795_825_860_000));
        assert_ne!(a, warning_id("dust", "cs-02-pm10", 1_795_825_800_000));
        assert_eq!(a.len(), 18);
    }
}
