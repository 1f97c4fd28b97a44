//! The rule file format (`rules/*.yaml`) and its validation against the site registry. The
//! format is separate from the engine (Prometheus `rulefmt`): loading returns every problem with
//! `file:line:col`, and what it returns is ready to run: thresholds are already evaluated per site.

use super::expr::Expr;
use super::sites::{Registry, SiteKind};
use super::template::Template;
use super::yaml::{Ctx, Diag, Obj, Pos, Spanned};
use crate::event::Level;
use crate::time::{format_duration, parse_clock, Millis};
use rustc_hash::FxHashMap;
use std::collections::BTreeSet;
use std::sync::Arc;

/// How readings are grouped in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowSpec {
    /// Fixed, non-overlapping windows aligned to the epoch. `step == size` of a sliding window.
    Tumbling { size: Millis },
    /// Windows of `size` starting every `step` (hopping); `size` a multiple of `step`.
    Sliding { size: Millis, step: Millis },
    /// A window per burst of activity, closed after `gap` without readings.
    Session { gap: Millis },
}

impl WindowSpec {
    /// (size, step) of the pane grid for tumbling and sliding windows.
    pub fn grid(&self) -> Option<(Millis, Millis)> {
        match *self {
            WindowSpec::Tumbling { size } => Some((size, size)),
            WindowSpec::Sliding { size, step } => Some((size, step)),
            WindowSpec::Session { .. } => None,
        }
    }
    pub fn describe(&self) -> String {
        match *self {
            WindowSpec::Tumbling { size } => format!("tumbling {}", format_duration(size)),
            WindowSpec::Sliding { size, step } => {
                format!(
                    "sliding {} every {}",
                    format_duration(size),
                    format_duration(step)
                )
            }
            WindowSpec::Session { gap } => format!("session (gap {})", format_duration(gap)),
        }
    }
}

/// What a window is reduced to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Agg {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    First,
    Last,
    /// last - first (by event time)
    Delta,
    /// (last - first) per hour of event time between them
    Rate,
    Stddev,
    /// A quantile in 0..1 (`p50`, `p95`), from a bounded-memory sketch.
    Quantile(f64),
}

impl Agg {
    pub const NAMES: &'static str =
        "count, sum, avg, min, max, first, last, delta, rate, stddev, p50, p90, p95, p99 (any pNN)";
    pub fn parse(s: &str) -> Option<Agg> {
        Some(match s {
            "count" => Agg::Count,
            "sum" => Agg::Sum,
            "avg" | "mean" => Agg::Avg,
            "min" => Agg::Min,
            "max" => Agg::Max,
            "first" => Agg::First,
            "last" => Agg::Last,
            "delta" => Agg::Delta,
            "rate" => Agg::Rate,
            "stddev" => Agg::Stddev,
            _ => {
                let q: f64 = s.strip_prefix('p')?.parse().ok()?;
                if !(0.0..=100.0).contains(&q) {
                    return None;
                }
                Agg::Quantile(q / 100.0)
            }
        })
    }
    pub fn name(&self) -> String {
        match self {
            Agg::Count => "count".into(),
            Agg::Sum => "sum".into(),
            Agg::Avg => "avg".into(),
            Agg::Min => "min".into(),
            Agg::Max => "max".into(),
            Agg::First => "first".into(),
            Agg::Last => "last".into(),
            Agg::Delta => "delta".into(),
            Agg::Rate => "rate".into(),
            Agg::Stddev => "stddev".into(),
            Agg::Quantile(q) => format!("p{}", (q * 100.0).round()),
        }
    }
    pub fn needs_sketch(&self) -> bool {
        matches!(self, Agg::Quantile(_))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Warn when the value is greater than the threshold.
    Above,
    /// Warn when the value is less than the threshold.
    Below,
}

/// Thresholds of one condition on one site: `NaN` where a level is not defined.
pub type LevelThresholds = [f64; 4];

#[derive(Clone, Debug)]
pub struct Condition {
    pub metric: String,
    pub aggregate: Agg,
    pub direction: Direction,
    /// A single threshold (no levels): the condition is a gate and the rule's `level` applies.
    pub gate: bool,
    /// Per covered site (index into the registry): thresholds per level.
    pub thresholds: FxHashMap<u32, LevelThresholds>,
    /// The thresholds as written, for `yujing check` and the API.
    pub written: Vec<(Level, String)>,
    pub pos: Pos,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    All,
    Any,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyBy {
    /// One series per device (and metric): the default.
    Device,
    /// One series per site: readings of all the site's devices together.
    Site,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Hysteresis {
    Abs(f64),
    /// A fraction of the threshold (`10%` -> 0.1).
    Frac(f64),
}

#[derive(Clone, Debug)]
pub enum Body {
    /// Window aggregates compared to thresholds, combined with AND/OR.
    Threshold {
        conds: Vec<Condition>,
        combine: Combine,
        window: WindowSpec,
        /// Count exceedance windows per local day; the levels then compare that count (>=).
        per_day: Option<DailyCount>,
    },
    /// No reading from a device for `after` -> device-offline warning.
    Absence { after: Millis, metrics: Vec<String> },
}

#[derive(Clone, Debug)]
pub struct DailyCount {
    /// A window is an exceedance when the aggregate is beyond this, per site.
    pub exceeds: FxHashMap<u32, f64>,
    pub direction: Direction,
}

/// A loaded, validated rule.
#[derive(Clone, Debug)]
pub struct Rule {
    pub id: String,
    pub file: Arc<str>,
    pub pos: Pos,
    pub title: String,
    pub title_en: Option<String>,
    pub kinds: Vec<SiteKind>,
    /// Sites the rule covers (indexes into the registry), sorted.
    pub sites: Vec<u32>,
    pub sources: Vec<String>,
    /// Devices named in the scope (empty: every device of the covered sites).
    pub devices: Vec<String>,
    pub key: KeyBy,
    pub body: Body,
    /// The condition must hold this long before the warning is raised.
    pub hold_for: Millis,
    pub hysteresis: Hysteresis,
    /// The condition must be gone this long before the warning de-escalates or clears.
    pub clear_after: Millis,
    /// A new episode within this time of the last clear reopens that warning instead.
    pub min_gap: Millis,
    /// Local time-of-day scope in minutes after midnight, `[from, to)`, wrapping past midnight.
    pub active: Option<(u32, u32)>,
    /// Level for gates and absence.
    pub level: Level,
    pub message: Template,
    pub message_en: Option<Template>,
    /// The window as a warning's evidence names it (`tumbling 1h`, `absence`), written once
    /// when the rule loads.
    pub window_desc: String,
}

impl Rule {
    pub fn window(&self) -> Option<WindowSpec> {
        match &self.body {
            Body::Threshold { window, .. } => Some(*window),
            Body::Absence { .. } => None,
        }
    }
    pub fn metrics(&self) -> Vec<String> {
        match &self.body {
            Body::Threshold { conds, .. } => conds.iter().map(|c| c.metric.clone()).collect(),
            Body::Absence { metrics, .. } => metrics.clone(),
        }
    }
}

const RULE_FIELDS: &[&str] = &[
    "id",
    "title",
    "title_en",
    "description",
    "scope",
    "key",
    "metric",
    "aggregate",
    "above",
    "below",
    "all",
    "any",
    "window",
    "for",
    "clear",
    "min_gap",
    "active",
    "count_per_day",
    "absent",
    "level",
    "message",
    "message_en",
];
const COND_FIELDS: &[&str] = &["metric", "aggregate", "above", "below"];

/// Load rule files (name, text) against a registry. All problems come back at once.
pub fn load(files: &[(String, String)], reg: &Registry) -> Result<Vec<Rule>, Vec<Diag>> {
    let mut rules = Vec::new();
    let mut diags = Vec::new();
    let mut seen: FxHashMap<String, (Arc<str>, Pos)> = FxHashMap::default();
    for (name, text) in files {
        let ctx = Ctx::new(name);
        let before = rules.len();
        read_file(&ctx, text, reg, &mut rules);
        for r in &rules[before..] {
            if let Some((f, p)) = seen.get(&r.id) {
                ctx.err(
                    r.pos,
                    format!(
                        "rule id `{}` is already used at {}:{}:{}",
                        r.id, f, p.line, p.col
                    ),
                );
            } else {
                seen.insert(r.id.clone(), (r.file.clone(), r.pos));
            }
        }
        diags.extend(ctx.into_diags());
    }
    if diags.is_empty() {
        Ok(rules)
    } else {
        diags.sort();
        Err(diags)
    }
}

fn read_file(ctx: &Ctx, text: &str, reg: &Registry, out: &mut Vec<Rule>) {
    let Some(root) = ctx.parse(text) else { return };
    let Some(top) = ctx.obj(&root, "rule file", &["rules"]) else {
        return;
    };
    let Some(list) = top.required("rules") else {
        return;
    };
    for n in ctx.seq(list, "rules") {
        let errors_before = ctx.error_count();
        if let Some(rule) = read_rule(ctx, n, reg) {
            if ctx.error_count() == errors_before {
                out.push(rule);
            }
        }
    }
}

fn read_rule(ctx: &Ctx, node: &marked_yaml::Node, reg: &Registry) -> Option<Rule> {
    let mut o = ctx.obj(node, "rule", RULE_FIELDS)?;
    let id = o.req_string("id")?;
    let what = format!("rule `{}`", id.v);
    o.rename(&what);
    let title = o.req_string("title").map(|s| s.v).unwrap_or_default();

    let Scope {
        kinds,
        sites,
        sources,
        devices: device_filter,
    } = read_scope(ctx, &o, reg, &what);

    let key = read_key(ctx, &o);
    let level = read_level(ctx, &o);

    let hold_for = o.duration("for").map(|d| d.v).unwrap_or(0);
    let min_gap = o.duration("min_gap").map(|d| d.v).unwrap_or(0);
    let (hysteresis, clear_after) = read_clear(ctx, &o);
    let active = read_active(ctx, &o);

    let message = read_template(ctx, &o, "message", true);
    let message_en = read_template(ctx, &o, "message_en", false);

    let body = read_body(ctx, &o, reg, &what, &sites, &device_filter)?;

    let key = settle_key(ctx, &o, &body, key);

    let needs_level = match &body {
        Body::Absence { .. } => true,
        Body::Threshold { conds, .. } => conds.iter().all(|c| c.gate),
    };
    if needs_level && level.is_none() {
        ctx.err(
            o.pos(),
            format!(
                "{what} needs a `level` (blue, yellow, orange or red): its thresholds name none"
            ),
        );
    }

    let window_desc = match &body {
        Body::Threshold { window, .. } => window.describe(),
        Body::Absence { .. } => "absence".to_string(),
    };
    Some(Rule {
        window_desc,
        id: id.v,
        file: ctx.file.clone(),
        pos: id.pos,
        title,
        title_en: o.string("title_en").map(|s| s.v),
        kinds,
        sites,
        sources,
        devices: device_filter.into_iter().map(|d| d.v).collect(),
        key,
        body,
        hold_for,
        hysteresis,
        clear_after,
        min_gap,
        active,
        level: level.unwrap_or(Level::Yellow),
        message: message?,
        message_en,
    })
}

/// What a rule's `scope` picks: site kinds, sites (indexes), sources, devices.
struct Scope {
    kinds: Vec<SiteKind>,
    sites: Vec<u32>,
    sources: Vec<String>,
    devices: Vec<Spanned<String>>,
}

/// The sites and devices a rule covers: its `scope` checked against sites.yaml.
fn read_scope(ctx: &Ctx, o: &Obj, reg: &Registry, what: &str) -> Scope {
    let mut kinds = Vec::new();
    let mut site_filter: Vec<Spanned<String>> = Vec::new();
    let mut sources = Vec::new();
    let mut device_filter: Vec<Spanned<String>> = Vec::new();
    let mut types: Vec<Spanned<String>> = Vec::new();
    let mut except_types: Vec<Spanned<String>> = Vec::new();
    if let Some(sn) = o.node("scope") {
        if let Some(s) = ctx.obj(
            sn,
            "scope",
            &[
                "kind",
                "kinds",
                "sites",
                "site",
                "source",
                "devices",
                "types",
                "except_types",
            ],
        ) {
            for k in s.strings("kind").into_iter().chain(s.strings("kinds")) {
                match SiteKind::parse(&k.v) {
                    Some(kind) => kinds.push(kind),
                    None => ctx.err(
                        k.pos,
                        format!(
                            "unknown site kind `{}` (expected one of: {})",
                            k.v,
                            SiteKind::NAMES.join(", ")
                        ),
                    ),
                }
            }
            site_filter = s.strings("sites");
            site_filter.extend(s.strings("site"));
            for sf in &site_filter {
                if reg.site(&sf.v).is_none() {
                    ctx.err(
                        sf.pos,
                        format!("unknown site `{}` (not in sites.yaml)", sf.v),
                    );
                }
            }
            sources = s.strings("source").into_iter().map(|s| s.v).collect();
            types = s.strings("types");
            except_types = s.strings("except_types");
            for t in types.iter().chain(&except_types) {
                if !reg
                    .devices
                    .iter()
                    .any(|d| d.kind.as_deref() == Some(t.v.as_str()))
                {
                    ctx.err(
                        t.pos,
                        format!("no device in sites.yaml has the type `{}`", t.v),
                    );
                }
            }
            device_filter = s.strings("devices");
            for d in &device_filter {
                if reg.device(&d.v).is_none() {
                    ctx.err(
                        d.pos,
                        format!(
                            "unknown device `{}` (not bound to any site in sites.yaml)",
                            d.v
                        ),
                    );
                }
            }
        }
    }
    let mut sites: Vec<u32> = reg
        .sites
        .iter()
        .enumerate()
        .filter(|(_, s)| kinds.is_empty() || kinds.contains(&s.kind))
        .filter(|(_, s)| site_filter.is_empty() || site_filter.iter().any(|f| f.v == s.id))
        .map(|(i, _)| i as u32)
        .collect();
    if sites.is_empty() && !reg.sites.is_empty() {
        ctx.err(
            o.key_pos("scope"),
            format!("{what} covers no site: no site in sites.yaml matches its scope"),
        );
    }
    // device types narrow the devices: the covered sites' devices of those types (and of the
    // listed devices, if any)
    if !types.is_empty() || !except_types.is_empty() {
        let typed = |d: &crate::config::sites::Device, list: &[Spanned<String>]| {
            d.kind
                .as_deref()
                .is_some_and(|k| list.iter().any(|t| t.v == k))
        };
        let picked: Vec<Spanned<String>> = sites
            .iter()
            .flat_map(|&s| reg.sites[s as usize].devices.iter())
            .map(|&d| &reg.devices[d as usize])
            .filter(|d| types.is_empty() || typed(d, &types))
            .filter(|d| !typed(d, &except_types))
            .filter(|d| device_filter.is_empty() || device_filter.iter().any(|f| f.v == d.id))
            .map(|d| Spanned {
                v: d.id.clone(),
                pos: o.key_pos("scope"),
            })
            .collect();
        if picked.is_empty() {
            ctx.err(
                o.key_pos("scope"),
                format!("{what} covers no device: no device of its sites has the types its scope asks for"),
            );
        }
        // and the rule covers only the sites that have such devices
        sites.retain(|&si| {
            reg.sites[si as usize]
                .devices
                .iter()
                .any(|&d| picked.iter().any(|p| p.v == reg.devices[d as usize].id))
        });
        device_filter = picked;
    }
    Scope {
        kinds,
        sites,
        sources,
        devices: device_filter,
    }
}

fn read_key(ctx: &Ctx, o: &Obj) -> Option<KeyBy> {
    match o.string("key") {
        None => None,
        Some(k) if k.v == "device" => Some(KeyBy::Device),
        Some(k) if k.v == "site" => Some(KeyBy::Site),
        Some(k) => {
            ctx.err(
                k.pos,
                format!("key must be `device` or `site`, not `{}`", k.v),
            );
            None
        }
    }
}

fn read_level(ctx: &Ctx, o: &Obj) -> Option<Level> {
    match o.string("level") {
        None => None,
        Some(l) => match Level::parse(&l.v) {
            Some(l) => Some(l),
            None => {
                ctx.err(
                    l.pos,
                    format!("unknown level `{}` (blue, yellow, orange, red)", l.v),
                );
                None
            }
        },
    }
}

/// `clear`: the hysteresis a level needs to fall back, and how long it must stay below.
fn read_clear(ctx: &Ctx, o: &Obj) -> (Hysteresis, Millis) {
    let (mut hysteresis, mut clear_after) = (Hysteresis::Abs(0.0), 0);
    if let Some(cn) = o.node("clear") {
        if let Some(c) = ctx.obj(cn, "clear", &["hysteresis", "after"]) {
            if let Some(h) = c.string("hysteresis") {
                let parsed = match h.v.strip_suffix('%') {
                    Some(p) => p
                        .trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|v| (0.0..100.0).contains(v))
                        .map(|v| Hysteresis::Frac(v / 100.0)),
                    None => {
                        h.v.trim()
                            .parse::<f64>()
                            .ok()
                            .filter(|v| *v >= 0.0 && v.is_finite())
                            .map(Hysteresis::Abs)
                    }
                };
                match parsed {
                    Some(p) => hysteresis = p,
                    None => ctx.err(h.pos, format!("clear.hysteresis: `{}` is not a non-negative number or a percentage like `10%`", h.v)),
                }
            }
            clear_after = c.duration("after").map(|d| d.v).unwrap_or(0);
        }
    }
    (hysteresis, clear_after)
}

/// `active`: the hours of the day (local) the rule applies in.
fn read_active(ctx: &Ctx, o: &Obj) -> Option<(u32, u32)> {
    o.node("active").and_then(|an| {
        let a = ctx.obj(an, "active", &["from", "to"])?;
        let from = a.req_string("from")?;
        let to = a.req_string("to")?;
        let f = parse_clock(&from.v)
            .map_err(|e| ctx.err(from.pos, e))
            .ok()?;
        let t = parse_clock(&to.v).map_err(|e| ctx.err(to.pos, e)).ok()?;
        if f == t {
            ctx.err(
                from.pos,
                "active.from and active.to are equal: the rule would never (or always) apply",
            );
        }
        Some((f, t))
    })
}

/// The rule's body: an absence (`absent`) or conditions on windows.
fn read_body(
    ctx: &Ctx,
    o: &Obj,
    reg: &Registry,
    what: &str,
    sites: &[u32],
    device_filter: &[Spanned<String>],
) -> Option<Body> {
    let body = if let Some(absent) = o.node("absent") {
        for f in [
            "aggregate",
            "above",
            "below",
            "all",
            "any",
            "window",
            "count_per_day",
        ] {
            if o.has(f) {
                ctx.err(
                    o.key_pos(f),
                    format!("`{f}` does not apply to an absence rule (`absent`)"),
                );
            }
        }
        let after = ctx.duration(absent, "absent")?;
        if after.v == 0 {
            ctx.err(after.pos, "absent: the silence must last longer than 0");
        }
        let metrics: Vec<String> = o.strings("metric").into_iter().map(|m| m.v).collect();
        Body::Absence {
            after: after.v,
            metrics,
        }
    } else {
        let window = read_window(ctx, o);
        let (conds, combine) = if o.has("all") || o.has("any") {
            if o.has("all") && o.has("any") {
                ctx.err(
                    o.key_pos("any"),
                    "use either `all` or `any`, not both (nest rules instead)",
                );
            }
            for f in ["metric", "aggregate", "above", "below"] {
                if o.has(f) {
                    ctx.err(
                        o.key_pos(f),
                        format!("`{f}` belongs inside each condition of `all`/`any`"),
                    );
                }
            }
            let (combine, list) = if let Some(l) = o.node("all") {
                (Combine::All, l)
            } else {
                (Combine::Any, o.node("any")?)
            };
            let mut conds = Vec::new();
            for cn in ctx.seq(list, "conditions") {
                if let Some(c) = ctx.obj(cn, "condition", COND_FIELDS) {
                    if let Some(cond) = read_condition(ctx, &c, sites, reg, device_filter) {
                        conds.push(cond);
                    }
                }
            }
            if conds.is_empty() {
                ctx.err(o.pos(), format!("{what} has no conditions"));
            }
            (conds, combine)
        } else {
            let cond = read_condition(ctx, o, sites, reg, device_filter);
            (cond.into_iter().collect(), Combine::All)
        };
        let per_day = o.node("count_per_day").and_then(|pn| {
            let p = ctx.obj(pn, "count_per_day", &["above", "below"])?;
            let (dir, node) = match (p.node("above"), p.node("below")) {
                (Some(n), None) => (Direction::Above, n),
                (None, Some(n)) => (Direction::Below, n),
                _ => {
                    ctx.err(p.pos(), "count_per_day needs exactly one of `above` or `below`: what makes a window an exceedance");
                    return None;
                }
            };
            let (expr, pos) = read_expr(ctx, node)?;
            let mut exceeds = FxHashMap::default();
            for &s in sites {
                if let Some(v) = eval_on_site(ctx, &expr, pos, reg, s) {
                    exceeds.insert(s, v);
                }
            }
            Some(DailyCount { exceeds, direction: dir })
        });
        if per_day.is_some() && conds.len() != 1 {
            ctx.err(
                o.key_pos("count_per_day"),
                "count_per_day works on a single condition",
            );
        }
        Body::Threshold {
            conds,
            combine,
            window: window?,
            per_day,
        }
    };
    Some(body)
}

/// What the rule is keyed by, given its body: multi-metric rules group by site, absence is
/// watched per device.
fn settle_key(ctx: &Ctx, o: &Obj, body: &Body, key: Option<KeyBy>) -> KeyBy {
    match (body, key) {
        (Body::Threshold { conds, .. }, k) if conds.len() > 1 => {
            if k == Some(KeyBy::Device) {
                ctx.err(
                    o.key_pos("key"),
                    "a rule with several conditions compares metrics of one site: use `key: site`",
                );
            }
            KeyBy::Site
        }
        (Body::Absence { .. }, Some(KeyBy::Site)) => {
            ctx.err(
                o.key_pos("key"),
                "absence is watched per device: drop `key: site`",
            );
            KeyBy::Device
        }
        (_, k) => k.unwrap_or(KeyBy::Device),
    }
}

fn read_window(ctx: &Ctx, o: &Obj) -> Option<WindowSpec> {
    let wn = o.required("window")?;
    let w = ctx.obj(wn, "window", &["type", "size", "step", "gap"])?;
    let ty = w.req_string("type")?;
    let pos = ty.pos;
    // a positive duration that the window type needs
    let need = |key: &str| -> Option<Spanned<Millis>> {
        let d = w.duration(key).or_else(|| {
            if !w.has(key) {
                ctx.err(pos, format!("a {} window needs a `{key}`", ty.v));
            }
            None
        })?;
        if d.v == 0 {
            ctx.err(d.pos, format!("window {key} must be longer than 0"));
            return None;
        }
        Some(d)
    };
    match ty.v.as_str() {
        "tumbling" => Some(WindowSpec::Tumbling {
            size: need("size")?.v,
        }),
        "sliding" | "hopping" => {
            let (size, step) = (need("size")?, need("step")?);
            if size.v % step.v != 0 {
                ctx.err(
                    step.pos,
                    format!(
                        "window size {} must be a whole multiple of step {}",
                        format_duration(size.v),
                        format_duration(step.v)
                    ),
                );
                return None;
            }
            if size.v / step.v > 1440 {
                ctx.err(step.pos, "a sliding window may overlap at most 1440 steps");
                return None;
            }
            Some(WindowSpec::Sliding {
                size: size.v,
                step: step.v,
            })
        }
        "session" => Some(WindowSpec::Session {
            gap: need("gap")?.v,
        }),
        other => {
            ctx.err(
                pos,
                format!("unknown window type `{other}` (tumbling, sliding, session)"),
            );
            None
        }
    }
}

fn read_expr(ctx: &Ctx, node: &marked_yaml::Node) -> Option<(Expr, Pos)> {
    let s = ctx.string(node, "threshold")?;
    match Expr::parse(&s.v) {
        Ok(e) => Some((e, s.pos)),
        Err(e) => {
            ctx.err(
                ctx.inside(s.pos, s.v[..e.offset.min(s.v.len())].chars().count()),
                format!("bad threshold `{}`: {}", s.v, e.msg),
            );
            None
        }
    }
}

fn eval_on_site(ctx: &Ctx, e: &Expr, pos: Pos, reg: &Registry, site: u32) -> Option<f64> {
    let s = &reg.sites[site as usize];
    match e.eval(&s.params) {
        Ok(v) if v.is_finite() => Some(v),
        Ok(_) => {
            ctx.err(
                pos,
                format!("threshold `{e}` is not a finite number on site `{}`", s.id),
            );
            None
        }
        Err(msg) => {
            let at = reg.site_pos.get(site as usize).copied().unwrap_or_default();
            ctx.err(
                pos,
                format!(
                    "{msg} on site `{}` (declared at line {}, column {} of the registry), which this rule covers",
                    s.id, at.line, at.col
                ),
            );
            None
        }
    }
}

fn read_condition(
    ctx: &Ctx,
    o: &Obj,
    sites: &[u32],
    reg: &Registry,
    device_filter: &[Spanned<String>],
) -> Option<Condition> {
    let metric = o.req_string("metric")?;
    let aggregate = o.req_string("aggregate").and_then(|a| {
        let parsed = Agg::parse(&a.v);
        if parsed.is_none() {
            ctx.err(
                a.pos,
                format!(
                    "unknown aggregate `{}` (expected one of: {})",
                    a.v,
                    Agg::NAMES
                ),
            );
        }
        parsed
    });
    // some device in scope must measure the metric
    let provides = |d: &crate::config::sites::Device| {
        d.metrics.contains(&metric.v)
            && (device_filter.is_empty() || device_filter.iter().any(|f| f.v == d.id))
    };
    let covered = sites.iter().any(|&s| {
        reg.sites[s as usize]
            .devices
            .iter()
            .any(|&d| provides(&reg.devices[d as usize]))
    });
    if !covered && !sites.is_empty() {
        let mut known: BTreeSet<&str> = BTreeSet::new();
        for &s in sites {
            for &d in &reg.sites[s as usize].devices {
                known.extend(reg.devices[d as usize].metrics.iter().map(|m| m.as_str()));
            }
        }
        let known: Vec<&str> = known.into_iter().collect();
        ctx.err(
            metric.pos,
            format!(
                "no device in this rule's scope measures `{}` (they measure: {})",
                metric.v,
                known.join(", ")
            ),
        );
    }
    let (direction, tnode, tkey) = match (o.node("above"), o.node("below")) {
        (Some(n), None) => (Direction::Above, n, "above"),
        (None, Some(n)) => (Direction::Below, n, "below"),
        (Some(_), Some(_)) => {
            ctx.err(
                o.key_pos("below"),
                "use either `above` or `below`, not both",
            );
            return None;
        }
        (None, None) => {
            ctx.err(
                o.pos(),
                format!(
                    "condition on `{}` needs thresholds: `above` or `below`",
                    metric.v
                ),
            );
            return None;
        }
    };
    let mut written: Vec<(Level, Expr, Pos)> = Vec::new();
    let gate = match tnode {
        marked_yaml::Node::Mapping(_) => {
            let t = ctx.obj(tnode, tkey, &["blue", "yellow", "orange", "red"])?;
            for (k, v) in t.entries() {
                if let Some(level) = Level::parse(&k.v) {
                    if let Some((e, p)) = read_expr(ctx, v) {
                        written.push((level, e, p));
                    }
                }
            }
            if written.is_empty() {
                ctx.err(
                    t.pos(),
                    "no thresholds given: name at least one of blue, yellow, orange, red",
                );
            }
            written.sort_by_key(|w| w.0);
            false
        }
        _ => {
            let (e, p) = read_expr(ctx, tnode)?;
            written.push((Level::Red, e, p));
            true
        }
    };
    let mut thresholds = FxHashMap::default();
    // constant thresholds: check order once, where they are written
    if written.iter().all(|w| w.1.as_const().is_some()) {
        check_order(
            ctx,
            direction,
            written
                .iter()
                .map(|w| (w.0, w.1.as_const().unwrap_or(0.0), w.2)),
            None,
        );
    }
    for &s in sites {
        let mut t = [f64::NAN; 4];
        let mut ok = true;
        for (level, e, p) in &written {
            match eval_on_site(ctx, e, *p, reg, s) {
                Some(v) => t[level.index()] = v,
                None => ok = false,
            }
        }
        if ok && !written.iter().all(|w| w.1.as_const().is_some()) {
            check_order(
                ctx,
                direction,
                written.iter().map(|w| (w.0, t[w.0.index()], w.2)),
                Some(&reg.sites[s as usize].id),
            );
        }
        thresholds.insert(s, t);
    }
    Some(Condition {
        metric: metric.v,
        aggregate: aggregate?,
        direction,
        gate,
        thresholds,
        written: written
            .into_iter()
            .map(|(l, e, _)| (l, e.to_string()))
            .collect(),
        pos: metric.pos,
    })
}

fn check_order(
    ctx: &Ctx,
    dir: Direction,
    levels: impl Iterator<Item = (Level, f64, Pos)>,
    site: Option<&str>,
) {
    let mut prev: Option<(Level, f64)> = None;
    for (level, v, pos) in levels {
        if let Some((pl, pv)) = prev {
            let bad = match dir {
                Direction::Above => v <= pv,
                Direction::Below => v >= pv,
            };
            if bad {
                let on = site.map(|s| format!(" on site `{s}`")).unwrap_or_default();
                let want = if dir == Direction::Above {
                    "higher"
                } else {
                    "lower"
                };
                ctx.err(
                    pos,
                    format!(
                        "thresholds out of order{on}: {level} ({}) must be {want} than {pl} ({})",
                        super::template::fmt_num(v),
                        super::template::fmt_num(pv)
                    ),
                );
            }
        }
        prev = Some((level, v));
    }
}

fn read_template(ctx: &Ctx, o: &Obj, key: &str, required: bool) -> Option<Template> {
    let s = if required {
        o.req_string(key)?
    } else {
        o.string(key)?
    };
    match Template::parse(&s.v) {
        Ok(t) => Some(t),
        Err((off, msg)) => {
            ctx.err(ctx.inside(s.pos, s.v[..off].chars().count()), msg);
            None
        }
    }
}
