//! Rule unit tests (`yujing test`), in the spirit of `promtool test rules`: input series in a
//! compact notation, evaluation times, and the warning transitions expected by then.
//!
//! ```yaml
//! tests:
//!   - name: dust episode raises orange, then clears
//!     start: 2026-11-28T08:00:00+08:00   # default 2026-01-01T00:00:00+08:00
//!     interval: 1m                       # default 1m
//!     input:
//!       - {device: cs-01-pm10, metric: pm10, values: "80x60 420x60 60x90"}
//!       - {device: cs-01-pm10, metric: pm10, at: 30m, value: 500, arrive: 3h}   # late
//!     expect:
//!       - at: 2h
//!         warnings: [{rule: dust_pm10_1h, site: cs-01, level: orange, transition: raise}]
//!       - at: 3h
//!         warnings: []            # silence in (2h, 3h]
//!     rejected: {late: 1}            # rejections by reason, checked at the end
//!     rules: [dust_pm10_1h]           # optional: compare only these rules' warnings
//!     sites: [cs-01]                  # optional: and only these sites'
//! ```
//! Values: `V` one sample, `VxN` N samples of V, `A+BxN` N samples from A rising by B each
//! (`A-BxN` falling), `_` one missing sample, `_xN` N missing samples.

use crate::config::yaml::{Ctx, Diag, Pos};
use crate::config::Config;
use crate::engine::Engine;
use crate::event::TransitionKind;
use crate::event::{Level, ReadingRef, RejectReason};
use crate::time::{parse_ts, Millis, Ts, MINUTE};
use crate::warnings::render;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

#[derive(Clone, Debug)]
struct Sample {
    ts: Ts,
    arrive: Ts,
    device: String,
    metric: String,
    value: f64,
    order: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expected {
    pub rule: String,
    pub site: String,
    pub level: Level,
    pub transition: TransitionKind,
    pub subject: Option<String>,
    pub value: Option<f64>,
    /// When it happened, relative to the test's start (reported, never compared).
    pub at: Option<Millis>,
}

#[derive(Clone, Debug)]
struct Check {
    at: Millis,
    pos: Pos,
    warnings: Vec<Expected>,
}

#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub file: String,
    pub pos: Pos,
    start: Ts,
    samples: Vec<Sample>,
    checks: Vec<Check>,
    rules: Vec<String>,
    sites: Vec<String>,
    rejected: BTreeMap<String, u64>,
}

/// Result of one case: `Ok` or a description of every difference.
pub struct Outcome {
    pub name: String,
    pub location: String,
    pub failure: Option<String>,
}

/// Run every rule test of a configuration (`rules/tests/*.yaml`), in file order. A file that
/// does not load is one failed outcome naming its errors. (`yujing test` and the dashboard's
/// admin page.)
pub fn run_all(config: &Arc<Config>) -> Vec<Outcome> {
    let dir = crate::config::Layout::find(&config.dir)
        .rules_dir
        .join("tests");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| crate::config::is_yaml(p))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let name = f.display().to_string();
        let loaded = std::fs::read_to_string(&f)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                load(&name, &text, config.settings.timezone).map_err(|d| {
                    d.iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                })
            });
        match loaded {
            Ok(cases) => out.extend(cases.iter().map(|c| run(config, c))),
            Err(why) => out.push(Outcome {
                name: String::new(),
                location: name,
                failure: Some(why),
            }),
        }
    }
    out
}

/// Default start of a test's time axis: 2026-01-01T00:00:00+08:00.
pub const DEFAULT_START: Ts = 1_767_196_800_000;

/// Parse the values notation into samples (None = a missing sample).
pub fn parse_values(s: &str) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for item in s.split_whitespace() {
        let (head, count) = match item.rsplit_once('x') {
            Some((h, n)) => (
                h,
                n.parse::<usize>()
                    .map_err(|_| format!("bad repeat count in `{item}`"))?,
            ),
            None => (item, 1),
        };
        if count > 1_000_000 {
            return Err(format!("`{item}`: at most 1,000,000 samples per item"));
        }
        if head == "_" {
            out.extend(std::iter::repeat_n(None, count));
            continue;
        }
        // A+B or A-B (a sign after the first character)
        let split = head
            .char_indices()
            .skip(1)
            .find(|(i, c)| (*c == '+' || *c == '-') && !head[..*i].ends_with(['e', 'E']));
        let (a, b) = match split {
            Some((i, _)) => {
                let a: f64 = head[..i]
                    .parse()
                    .map_err(|_| format!("bad number in `{item}`"))?;
                let b: f64 = head[i..]
                    .parse()
                    .map_err(|_| format!("bad step in `{item}`"))?;
                (a, b)
            }
            None => (
                head.parse::<f64>()
                    .map_err(|_| format!("bad value `{item}`: expected V, VxN, A+BxN, _ or _xN"))?,
                0.0,
            ),
        };
        for k in 0..count {
            out.push(Some(a + b * k as f64));
        }
    }
    Ok(out)
}

const TEST_FIELDS: &[&str] = &[
    "name", "start", "interval", "input", "expect", "rules", "sites", "rejected",
];

/// Load a test file.
pub fn load(file: &str, text: &str, tz: chrono_tz::Tz) -> Result<Vec<Case>, Vec<Diag>> {
    let ctx = Ctx::new(file);
    let mut cases = Vec::new();
    if let Some(root) = ctx.parse(text) {
        if let Some(top) = ctx.obj(&root, "test file", &["tests"]) {
            if let Some(list) = top.required("tests") {
                for n in ctx.seq(list, "tests") {
                    if let Some(c) = read_case(&ctx, n, file, tz) {
                        cases.push(c);
                    }
                }
            }
        }
    }
    let d = ctx.into_diags();
    if d.is_empty() {
        Ok(cases)
    } else {
        Err(d)
    }
}

fn read_case(ctx: &Ctx, n: &marked_yaml::Node, file: &str, tz: chrono_tz::Tz) -> Option<Case> {
    let o = ctx.obj(n, "test", TEST_FIELDS)?;
    let name = o.req_string("name")?;
    let start = match o.string("start") {
        Some(s) => parse_ts(&s.v, tz).map_err(|e| ctx.err(s.pos, e)).ok()?,
        None => DEFAULT_START,
    };
    let interval = o.duration("interval").map(|d| d.v).unwrap_or(MINUTE);
    if interval <= 0 {
        ctx.err(o.key_pos("interval"), "interval must be longer than 0");
        return None;
    }
    let mut samples = Vec::new();
    for item in ctx.seq(o.required("input")?, "input") {
        read_input(ctx, item, start, interval, &mut samples);
    }
    let mut checks = Vec::new();
    for e in ctx.seq(o.required("expect")?, "expect") {
        if let Some(check) = read_expectation(ctx, e) {
            checks.push(check);
        }
    }
    checks.sort_by_key(|c| c.at);
    let mut rejected = BTreeMap::new();
    if let Some(r) = o.node("rejected") {
        if let Some(map) = r.as_mapping() {
            for (k, v) in map.iter() {
                if !RejectReason::ALL.iter().any(|r| r.as_str() == k.as_str()) {
                    ctx.err(
                        Pos::of(k.span()),
                        format!("unknown reason `{}`", k.as_str()),
                    );
                }
                if let Some(n) = ctx.number(v, "count") {
                    rejected.insert(k.as_str().to_string(), n.v as u64);
                }
            }
        }
    }
    samples.sort_by_key(|s| (s.arrive, s.order));
    Some(Case {
        name: name.v,
        file: file.to_string(),
        pos: o.key_pos("name"),
        start,
        samples,
        checks,
        rules: o.strings("rules").into_iter().map(|s| s.v).collect(),
        sites: o.strings("sites").into_iter().map(|s| s.v).collect(),
        rejected,
    })
}

/// One `input` item: a series (`values`) or one reading (`at` + `value`) into `samples`.
fn read_input(
    ctx: &Ctx,
    item: &marked_yaml::Node,
    start: Ts,
    interval: Millis,
    samples: &mut Vec<Sample>,
) {
    let Some(i) = ctx.obj(
        item,
        "input",
        &[
            "device", "metric", "values", "value", "at", "arrive", "offset", "interval", "delay",
        ],
    ) else {
        return;
    };
    let (Some(device), Some(metric)) = (i.req_string("device"), i.req_string("metric")) else {
        return;
    };
    let iv = i.duration("interval").map(|d| d.v).unwrap_or(interval);
    let delay = i.duration("delay").map(|d| d.v).unwrap_or(0);
    if let Some(values) = i.string("values") {
        let offset = i.duration("offset").map(|d| d.v).unwrap_or(0);
        match parse_values(&values.v) {
            Ok(vals) => {
                for (k, v) in vals.into_iter().enumerate() {
                    if let Some(v) = v {
                        let ts = start + offset + iv * k as i64;
                        samples.push(Sample {
                            ts,
                            arrive: ts + delay,
                            device: device.v.clone(),
                            metric: metric.v.clone(),
                            value: v,
                            order: samples.len(),
                        });
                    }
                }
            }
            Err(e) => ctx.err(values.pos, e),
        }
    } else if let (Some(at), Some(v)) = (i.duration("at"), i.node("value")) {
        let value = match ctx
            .scalar(v, "value")
            .map(|s| s.as_str().trim().to_string())
        {
            Some(s) => match s.as_str() {
                "NaN" | "nan" => f64::NAN,
                "inf" | "+inf" | "Inf" => f64::INFINITY,
                "-inf" | "-Inf" => f64::NEG_INFINITY,
                _ => match s.parse::<f64>() {
                    Ok(v) => v,
                    Err(_) => {
                        ctx.err(at.pos, format!("value `{s}` is not a number"));
                        return;
                    }
                },
            },
            None => return,
        };
        let arrive = i.duration("arrive").map(|d| d.v).unwrap_or(at.v + delay);
        samples.push(Sample {
            ts: start + at.v,
            arrive: start + arrive,
            device: device.v,
            metric: metric.v,
            value,
            order: samples.len(),
        });
    } else {
        ctx.err(
            i.pos(),
            "an input needs `values` (a series) or `at` + `value` (one reading)",
        );
    }
}

/// One expectation: the warnings expected at a time since the start.
fn read_expectation(ctx: &Ctx, e: &marked_yaml::Node) -> Option<Check> {
    let eo = ctx.obj(e, "expectation", &["at", "warnings"])?;
    let (Some(at), Some(ws)) = (eo.duration("at"), eo.required("warnings")) else {
        if !eo.has("at") {
            ctx.err(eo.pos(), "an expectation needs `at` (time since start)");
        }
        return None;
    };
    let mut warnings = Vec::new();
    for w in ctx.seq(ws, "warnings") {
        warnings.extend(read_expected_warning(ctx, w));
    }
    Some(Check {
        at: at.v,
        pos: eo.pos(),
        warnings,
    })
}

fn read_expected_warning(ctx: &Ctx, w: &marked_yaml::Node) -> Option<Expected> {
    let wo = ctx.obj(
        w,
        "expected warning",
        &["rule", "site", "level", "transition", "subject", "value"],
    )?;
    let (Some(rule), Some(site), Some(level)) = (
        wo.req_string("rule"),
        wo.req_string("site"),
        wo.req_string("level"),
    ) else {
        return None;
    };
    let Some(lv) = Level::parse(&level.v) else {
        ctx.err(level.pos, format!("unknown level `{}`", level.v));
        return None;
    };
    let transition = match wo.string("transition") {
        None => TransitionKind::Raise,
        Some(t) => match TransitionKind::parse(&t.v) {
            Some(k) => k,
            None => {
                ctx.err(
                    t.pos,
                    format!(
                        "unknown transition `{}` (raise, escalate, de-escalate, clear)",
                        t.v
                    ),
                );
                return None;
            }
        },
    };
    Some(Expected {
        rule: rule.v,
        site: site.v,
        level: lv,
        transition,
        subject: wo.string("subject").map(|s| s.v),
        value: wo.number("value").map(|v| v.v),
        at: None,
    })
}

fn describe(e: &Expected) -> String {
    let mut s = format!(
        "{{rule: {}, site: {}, level: {}, transition: {}",
        e.rule,
        e.site,
        e.level,
        e.transition.as_str()
    );
    if let Some(sub) = &e.subject {
        let _ = write!(s, ", subject: {sub}");
    }
    if let Some(v) = e.value {
        let _ = write!(s, ", value: {v}");
    }
    s.push('}');
    if let Some(at) = e.at {
        let _ = write!(s, " at {}", crate::time::format_duration(at));
    }
    s
}

/// Run one case against a config.
pub fn run(config: &Arc<Config>, case: &Case) -> Outcome {
    let location = format!("{}:{}:{}", case.file, case.pos.line, case.pos.col);
    let mut problems = String::new();
    for r in &case.rules {
        if !config.rules.iter().any(|x| &x.id == r) {
            let _ = writeln!(problems, "  unknown rule `{r}`");
        }
    }
    // the rules under test alone: another rule's open window must not make a reading that is
    // late for them count as on time
    let config = if case.rules.is_empty() {
        config.clone()
    } else {
        let mut c = (**config).clone();
        c.rules.retain(|r| case.rules.contains(&r.id));
        Arc::new(c)
    };
    let config = &config;
    let mut engine = Engine::new(config.clone());
    let src = engine.source("test");
    let mut next = 0;
    for check in &case.checks {
        let until = case.start + check.at;
        while next < case.samples.len() && case.samples[next].arrive <= until {
            let s = &case.samples[next];
            let _ = engine.push(&ReadingRef {
                site: None,
                device: &s.device,
                metric: &s.metric,
                value: s.value,
                ts: s.ts,
                arrival: s.arrive,
                source: src,
            });
            next += 1;
        }
        engine.advance_to(until);
        let got: Vec<Expected> = std::mem::take(&mut engine.transitions)
            .iter()
            .filter(|t| case.rules.is_empty() || case.rules.contains(&config.rules[t.rule].id))
            .filter(|t| {
                case.sites.is_empty()
                    || case
                        .sites
                        .contains(&config.registry.sites[t.site as usize].id)
            })
            .map(|t| {
                let w = render(&engine, t);
                Expected {
                    rule: w.rule.to_string(),
                    site: w.site.id.to_string(),
                    level: w.level,
                    transition: w.transition,
                    subject: Some(w.subject.to_string()),
                    value: w.value,
                    at: Some(t.at - case.start),
                }
            })
            .collect();
        let mut unmatched: Vec<&Expected> = got.iter().collect();
        let mut missing = Vec::new();
        for e in &check.warnings {
            let found = unmatched.iter().position(|g| {
                g.rule == e.rule
                    && g.site == e.site
                    && g.level == e.level
                    && g.transition == e.transition
                    && e.subject
                        .as_ref()
                        .is_none_or(|s| Some(s) == g.subject.as_ref())
                    && e.value.is_none_or(|v| {
                        g.value
                            .is_some_and(|gv| (gv - v).abs() <= 1e-6 * v.abs().max(1.0))
                    })
            });
            match found {
                Some(i) => {
                    unmatched.remove(i);
                }
                None => missing.push(e),
            }
        }
        if !missing.is_empty() || !unmatched.is_empty() {
            let _ = writeln!(
                problems,
                "  at {} (line {}):",
                crate::time::format_duration(check.at),
                check.pos.line
            );
            for m in missing {
                let _ = writeln!(problems, "    expected, not raised: {}", describe(m));
            }
            for u in unmatched {
                let _ = writeln!(problems, "    raised, not expected: {}", describe(u));
            }
        }
    }
    for (reason, want) in &case.rejected {
        let got = RejectReason::ALL
            .iter()
            .find(|r| r.as_str() == reason)
            .map(|r| engine.stats.rejected(*r))
            .unwrap_or(0);
        if got != *want {
            let _ = writeln!(problems, "  rejected {reason}: expected {want}, got {got}");
        }
    }
    Outcome {
        name: case.name.clone(),
        location,
        failure: (!problems.is_empty()).then_some(problems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_notation() {
        assert_eq!(
            parse_values("1 2x3").unwrap(),
            vec![Some(1.0), Some(2.0), Some(2.0), Some(2.0)]
        );
        assert_eq!(
            parse_values("10+5x3 _x2 -1").unwrap(),
            vec![Some(10.0), Some(15.0), Some(20.0), None, None, Some(-1.0)]
        );
        assert_eq!(
            parse_values("10-2.5x3").unwrap(),
            vec![Some(10.0), Some(7.5), Some(5.0)]
        );
        assert_eq!(
            parse_values("1e3x2").unwrap(),
            vec![Some(1000.0), Some(1000.0)]
        );
        assert!(parse_values("abc").is_err());
        assert!(parse_values("1xq").is_err());
    }
}
