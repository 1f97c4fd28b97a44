//! Warnings as users see them: a transition from the engine finished into the warning document
//! of the contract (stable id, level, site, the departments routes.yaml sends it to, zh-CN and
//! English messages, evidence with the 12345 tickets that counted). [`finish`] is the one place
//! a document is made: the live service stores and delivers what it returns, `yujing replay`
//! writes the same bytes ([`json`]), rule tests and the sample day read it. Storage and the
//! lifecycle (ack, feedback, close) are the store's ([`crate::store`]).

use crate::config::routes::Resolved;
use crate::config::rules::Rule;
use crate::config::template::{decimal_digits, fmt_num, Value};
use crate::config::Config;
use crate::engine::{Engine, Transition};
use crate::event::Level;
use crate::event::TransitionKind;
use crate::time::{format_duration, format_ts, Ts};
use serde::Serialize;

pub mod json;

/// The stable id of a warning: the same rule, subject and episode always give the same id.
pub fn warning_id(rule: &str, subject: &str, episode_start: Ts) -> String {
    String::from_utf8_lossy(&warning_id_bytes(rule, subject, episode_start)).into_owned()
}

/// [`warning_id`] as its 18 ASCII bytes.
pub fn warning_id_bytes(rule: &str, subject: &str, episode_start: Ts) -> [u8; 18] {
    // FNV-1a, 64 bit: stable across builds and platforms, unlike std's hasher
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    // the episode start in decimal, as `i64::to_string` writes it, without the allocation
    let mut digits = [0u8; 20];
    let at = decimal_digits(episode_start.unsigned_abs(), &mut digits);
    let sign: &[u8] = if episode_start < 0 { b"-" } else { b"" };
    for part in [
        rule.as_bytes(),
        b"\0",
        subject.as_bytes(),
        b"\0",
        sign,
        &digits[at..],
    ] {
        for b in part {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    // `w-` and 16 lowercase hex digits, as `format!("w-{h:016x}")` writes them
    let mut id = *b"w-0000000000000000";
    for (k, c) in id[2..].iter_mut().rev().enumerate() {
        *c = b"0123456789abcdef"[(h >> (4 * k)) as usize & 15];
    }
    id
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SiteRef<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub kind: &'a str,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct WindowRef {
    pub start: String,
    pub end: String,
}

/// The main condition's window, summarised (fields in alphabetical order, as JSON readers sort).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Aggregates {
    pub avg: Option<f64>,
    pub count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<f64>,
    pub max: Option<f64>,
    pub min: Option<f64>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Evidence<'a> {
    pub window: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregates: Option<Aggregates>,
    pub devices: Vec<&'a str>,
    /// The numbers of the 12345 tickets that counted in the window (rules on `tickets.*`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tickets: Vec<String>,
}

/// Every condition's aggregate by `metric.aggregate`, serialised as a JSON object.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Values(pub Vec<(String, Option<f64>)>);

impl Serialize for Values {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// One warning transition, as written by `yujing replay` and delivered to departments. It
/// borrows names and titles from the loaded configuration.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct WarningEvent<'a> {
    pub id: String,
    pub rule: &'a str,
    pub transition: TransitionKind,
    pub level: Level,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_level: Option<Level>,
    pub seq: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reopened: bool,
    pub site: SiteRef<'a>,
    /// The device or site the rule watched.
    pub subject: &'a str,
    /// Where routes.yaml sends it (the site's own departments when no route matches).
    pub departments: Vec<String>,
    pub title: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title_en: Option<&'a str>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_en: Option<String>,
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "is_empty")]
    pub values: Values,
    pub threshold: Option<f64>,
    pub window: WindowRef,
    pub at: String,
    pub raised_at: String,
    pub evidence: Evidence<'a>,
    pub status: &'static str,
}

fn is_empty(v: &Values) -> bool {
    v.0.is_empty()
}

fn num(v: f64) -> Option<f64> {
    v.is_finite().then_some((v * 1e6).round() / 1e6)
}

/// A transition finished: the document, and the routing it was given (its departments are in
/// the document; the deadlines, the supervising unit and the channels owed a delivery here).
pub struct Finished<'a> {
    pub event: WarningEvent<'a>,
    pub route: Resolved,
    /// (department, channel) owed a delivery.
    pub deliveries: Vec<(String, String)>,
}

impl Finished<'_> {
    /// The row the store keeps for it, with the document as delivered.
    pub fn stored(self, t: &Transition) -> Result<crate::store::NewTransition, serde_json::Error> {
        let doc = serde_json::to_string(&self.event)?;
        let w = self.event;
        Ok(crate::store::NewTransition {
            id: w.id,
            seq: t.step.seq,
            kind: t.step.kind,
            reopened: t.step.reopened,
            level: t.step.level,
            previous: t.step.previous,
            rule: w.rule.to_string(),
            site: w.site.id.to_string(),
            site_kind: w.site.kind.to_string(),
            subject: w.subject.to_string(),
            title: w.title.to_string(),
            message: w.message,
            value: w.value,
            threshold: w.threshold,
            at: t.at,
            raised_at: t.step.raised_at,
            episode_start: t.step.episode_start,
            doc,
            departments: self.route.departments,
            deadlines: self.route.deadlines,
            supervisor: self.route.supervisor,
            deliveries: self.deliveries,
        })
    }
}

/// Where routes.yaml sends a transition of `rule` at `site` and `level`.
pub fn route(cfg: &Config, rule: usize, site: u32, level: Level) -> Resolved {
    let site = &cfg.registry.sites[site as usize];
    cfg.routes.resolve(
        site.kind.as_str(),
        &site.id,
        &cfg.rules[rule].id,
        level,
        &site.departments,
    )
}

/// Finish an engine transition into the warning document, with the numbers of the 12345
/// tickets that counted in its window (the live service finds them in the store).
pub fn finish<'a>(engine: &'a Engine, t: &Transition, tickets: Vec<String>) -> Finished<'a> {
    let cfg: &Config = &engine.config;
    let route = route(cfg, t.rule, t.site, t.step.level);
    let mut deliveries = Vec::new();
    for d in &route.departments {
        for c in cfg.routes.channels_of(d) {
            deliveries.push((d.clone(), c.clone()));
        }
    }
    let mut event = document(engine, t, route.departments.clone());
    event.evidence.tickets = tickets;
    Finished {
        event,
        route,
        deliveries,
    }
}

/// The warning document of an engine transition, without tickets (rule tests, the sample day).
pub fn render<'a>(engine: &'a Engine, t: &Transition) -> WarningEvent<'a> {
    finish(engine, t, Vec::new()).event
}

fn document<'a>(engine: &'a Engine, t: &Transition, departments: Vec<String>) -> WarningEvent<'a> {
    let cfg: &Config = &engine.config;
    let rule = &cfg.rules[t.rule];
    let site = &cfg.registry.sites[t.site as usize];
    let tz = cfg.settings.timezone;
    let subject = engine.subject_id(t.subject);
    let devices: Vec<&str> = t
        .devices
        .iter()
        .map(|d| cfg.registry.devices[*d as usize].id.as_str())
        .collect();
    let (message, message_en) = messages(engine, t);
    let values = value_keys(rule)
        .into_iter()
        .map(|(k, i)| (k, num(t.values.get(i).copied().unwrap_or(f64::NAN))))
        .collect();
    let aggregates = t.evidence.map(|e| Aggregates {
        avg: num(e.avg),
        count: e.count,
        last: num(e.last),
        max: num(e.max),
        min: num(e.min),
    });
    WarningEvent {
        id: warning_id(&rule.id, subject, t.step.episode_start),
        rule: &rule.id,
        transition: t.step.kind,
        level: t.step.level,
        previous_level: t.step.previous,
        seq: t.step.seq,
        reopened: t.step.reopened,
        site: SiteRef {
            id: &site.id,
            name: &site.name,
            kind: site.kind.as_str(),
        },
        subject,
        departments,
        title: &rule.title,
        title_en: rule.title_en.as_deref(),
        message,
        message_en,
        value: num(t.value),
        values: Values(values),
        threshold: num(t.threshold),
        window: WindowRef {
            start: format_ts(t.window.0, tz),
            end: format_ts(t.window.1, tz),
        },
        at: format_ts(t.at, tz),
        raised_at: format_ts(t.step.raised_at, tz),
        evidence: Evidence {
            window: &rule.window_desc,
            aggregates,
            devices,
            tickets: Vec::new(),
        },
        status: status(t.step.kind),
    }
}

/// `status` of the document: a clear closes the warning.
fn status(kind: TransitionKind) -> &'static str {
    if kind == TransitionKind::Clear {
        "cleared"
    } else {
        "open"
    }
}

/// The keys of `values` (`metric.aggregate`), sorted, each with the condition it reports (the
/// first, where two conditions read the same aggregate). Absence rules have none.
pub(crate) fn value_keys(rule: &Rule) -> Vec<(String, usize)> {
    let crate::config::rules::Body::Threshold { conds, .. } = &rule.body else {
        return Vec::new();
    };
    let mut keys: Vec<(String, usize)> = conds
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("{}.{}", c.metric, c.aggregate.name()), i))
        .collect();
    // stable: of equal keys the first condition's stays
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    keys.dedup_by(|a, b| a.0 == b.0);
    keys
}

/// The zh-CN message and, where the rule has one, the English message.
pub(crate) fn messages(engine: &Engine, t: &Transition) -> (String, Option<String>) {
    let cfg: &Config = &engine.config;
    let rule = &cfg.rules[t.rule];
    let site = &cfg.registry.sites[t.site as usize];
    let tz = cfg.settings.timezone;
    let subject = engine.subject_id(t.subject);
    let metric = match &rule.body {
        crate::config::rules::Body::Threshold { conds, .. } => {
            conds.first().map(|c| c.metric.as_str()).unwrap_or("")
        }
        crate::config::rules::Body::Absence { metrics, .. } => {
            metrics.first().map(String::as_str).unwrap_or("")
        }
    };
    let site_en = site.name_en.as_deref().unwrap_or(&site.name);
    if t.step.kind == TransitionKind::Clear {
        // the rule's message describes the breach; a clear says that it is over
        let shown = t.evidence.is_some() && t.value.is_finite();
        let v = if shown {
            fmt_num(t.value)
        } else {
            String::new()
        };
        let (now, now_en, end_en) = if shown {
            ("，当前值", " (now ", ")")
        } else {
            ("", "", "")
        };
        let level = t.step.level;
        return (
            [
                site.name.as_str(),
                &rule.title,
                level.zh(),
                "预警已解除",
                now,
                &v,
            ]
            .concat(),
            rule.message_en.as_ref().map(|_| {
                let title = rule.title_en.as_deref().unwrap_or(&rule.title);
                [
                    site_en,
                    ": ",
                    title,
                    " ",
                    level.as_str(),
                    " warning cleared",
                    now_en,
                    &v,
                    end_en,
                ]
                .concat()
            }),
        );
    }
    let lookup = |en: bool| {
        move |name: &str| -> Value<'_> {
            let s = |x| Value::Str(std::borrow::Cow::Borrowed(x));
            match name {
                "site.id" => s(&site.id),
                "site.name" => s(if en { site_en } else { &site.name }),
                "site.kind" => s(site.kind.as_str()),
                "device" | "key" => s(subject),
                "metric" => s(metric),
                "value" => Value::Num(t.value),
                "threshold" => Value::Num(t.threshold),
                "level" => s(if en {
                    t.step.level.as_str()
                } else {
                    t.step.level.zh()
                }),
                "rule" => s(&rule.id),
                "title" => s(&rule.title),
                "window.start" => Value::Str(format_ts(t.window.0, tz).into()),
                "window.end" => Value::Str(format_ts(t.window.1, tz).into()),
                "window.size" | "duration" => {
                    Value::Str(format_duration(t.window.1 - t.window.0).into())
                }
                "count" => Value::Num(t.evidence.map(|e| e.count as f64).unwrap_or(f64::NAN)),
                _ => s(""),
            }
        }
    };
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
}

/// Where a warning stands in its lifecycle: what the API shows on top of the document of its
/// latest transition.
#[derive(Serialize)]
pub struct Lifecycle<'a> {
    pub id: &'a str,
    pub status: &'a str,
    pub level: &'a str,
    pub active: bool,
    pub departments: &'a [String],
    pub seq: i64,
    pub stored_at: String,
    pub updated_at: String,
    pub acknowledged_at: Option<String>,
    pub handled_at: Option<String>,
    pub closed_at: Option<String>,
    pub cleared_at: Option<String>,
    pub deadlines: Deadlines,
    pub overdue: bool,
    pub supervisor: Option<&'a str>,
}

/// When the acknowledgement and the handling are due.
#[derive(Serialize)]
pub struct Deadlines {
    pub ack: Option<String>,
    pub handle: Option<String>,
}

impl<'a> Lifecycle<'a> {
    pub fn of(w: &'a crate::store::WarningRow, tz: chrono_tz::Tz) -> Lifecycle<'a> {
        let ts = |t: Option<Ts>| t.map(|t| format_ts(t, tz));
        Lifecycle {
            id: &w.id,
            status: &w.status,
            level: &w.level,
            active: w.active,
            departments: &w.departments,
            seq: w.seq,
            stored_at: format_ts(w.stored_at, tz),
            updated_at: format_ts(w.updated_at, tz),
            acknowledged_at: ts(w.acked_at),
            handled_at: ts(w.handled_at),
            closed_at: ts(w.closed_at),
            cleared_at: ts(w.cleared_at),
            deadlines: Deadlines {
                ack: ts(w.ack_due),
                handle: ts(w.handle_due),
            },
            overdue: w.overdue_step > 0,
            supervisor: w.supervisor.as_deref(),
        }
    }
}

/// A stored warning as the API shows it: the document of its latest transition (its
/// `transition` as `last_transition`) with its [`Lifecycle`] on top.
pub fn shown(w: &crate::store::WarningRow, tz: chrono_tz::Tz) -> serde_json::Value {
    let mut doc: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&w.doc).unwrap_or_default();
    if let Some(t) = doc.remove("transition") {
        doc.insert("last_transition".into(), t);
    }
    if let Ok(serde_json::Value::Object(life)) = serde_json::to_value(Lifecycle::of(w, tz)) {
        doc.extend(life);
    }
    serde_json::Value::Object(doc)
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
        // the same ids as the original definition: ids are stored and compared across versions
        assert_eq!(warning_id("r", "k", -5), warning_id_reference("r", "k", -5));
        for t in [0, 7, 1_795_825_800_000, i64::MIN, i64::MAX] {
            assert_eq!(warning_id("r", "k", t), warning_id_reference("r", "k", t));
        }
    }

    /// The original definition: FNV-1a over rule, NUL, subject, NUL, decimal episode start.
    fn warning_id_reference(rule: &str, subject: &str, episode_start: Ts) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let text = format!("{rule}\0{subject}\0{episode_start}");
        for b in text.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("w-{h:016x}")
    }
}
