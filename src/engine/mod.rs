//! The engine: readings in, window results and warning transitions out, all on event time.
//!
//! Rules are indexed by (site, metric) when they load, so a reading only ever touches the rules
//! that can use it: 1,000 rules cost a reading no more than the few that match it. Windows close
//! when the watermark passes their end; the rule's state machine ([`alert`]) turns each final
//! window into at most one transition. Absence rules watch each device's newest event time.

pub mod acc;
pub mod alert;
mod compile;
use compile::first_threshold;
mod eval;
pub mod handover;
pub mod jump;
mod models;
pub mod watermark;
pub mod window;

pub use eval::level_of;

use crate::config::rules::Agg;
use crate::config::rules::{Body, Combine, Direction, Hysteresis, KeyBy, LevelThresholds, Rule};
use crate::config::Config;
use crate::event::TransitionKind;
use crate::event::{Level, RejectReason};
use crate::intern::{Interner, ShortKey};
use crate::time::{local_day, local_minute_of_day, Ts};
use acc::{AccSet, Needs};
use alert::{AlertState, Step, Timing};
pub use jump::Held;
use jump::JumpGuard;
use rustc_hash::FxHashMap;
use std::sync::Arc;
use watermark::Watermarks;
use window::{AccShape, Closed, Windows};

/// Earliest and latest event times accepted at all (2000-01-01 .. 2100-01-01 UTC).
pub const MIN_SANE_TS: Ts = 946_684_800_000;
pub const MAX_SANE_TS: Ts = 4_102_444_800_000;

/// A reading as the engine takes it: borrowed from the decoder's buffer, no allocation.
pub use crate::event::ReadingRef as Input;

enum Accepted {
    Processed,
    Held,
}

/// Metrics a device declares that are checked without hashing (more go through the name table).
const DECLARED: usize = 4;

/// Ask the processor to bring `x` into cache without waiting for it (a hint: no effect on
/// what the program computes).
#[inline(always)]
pub(crate) fn prefetch<T>(x: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and reads nothing the program sees; SSE is part of x86-64
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((x as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}

/// A reading's device, its site and its slot of the route table, found ahead of pushing it
/// ([`Engine::route`]).
#[derive(Clone, Copy, Debug)]
pub struct Routed {
    pub dev: u32,
    pub site: u32,
    /// `u32::MAX`: no rule of the reading's metric anywhere.
    slot: u32,
}

impl Routed {
    #[inline]
    fn slot(self) -> Option<usize> {
        (self.slot != u32::MAX).then_some(self.slot as usize)
    }
}

/// Per-device state a reading touches, kept together (32 bytes).
#[derive(Clone, Copy, Debug)]
struct DevHot {
    /// Newest event time (`Ts::MIN` = never seen).
    last_seen: Ts,
    site: u32,
    /// The index of its site's first device (a site's devices are numbered contiguously).
    first_of_site: u32,
    /// Declared metric ids, `u16::MAX` past the end.
    metrics: [u16; DECLARED],
    /// Offline warnings firing for it.
    offline: u16,
}

/// What a warning is about: a device, or a whole site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    Device(u32),
    Site(u32),
}

/// A change in a warning's state, ready to be rendered and stored.
#[derive(Clone, Debug)]
pub struct Transition {
    pub rule: usize,
    pub subject: Subject,
    pub site: u32,
    pub step: Step,
    /// The rule's main value (first condition) and the threshold it crossed.
    pub value: f64,
    pub threshold: f64,
    /// Every condition's aggregate, in the rule's order (none for absence rules).
    pub values: Vec<f64>,
    /// Count, min, max, avg of the main condition's window.
    pub evidence: Option<WindowEvidence>,
    pub window: (Ts, Ts),
    /// Event time of the transition (window end, or when silence began + the limit).
    pub at: Ts,
    pub devices: Vec<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowEvidence {
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
    pub last: f64,
}

/// A final window in which a rule's condition held (with or without a transition).
#[derive(Clone, Debug)]
pub struct Exceedance {
    pub rule: usize,
    pub subject: Subject,
    pub start: Ts,
    pub end: Ts,
    pub level: Level,
    pub accs: AccSet,
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub readings: u64,
    pub accepted: u64,
    /// Accepted readings that no rule uses (still counted toward absence and state).
    pub unrouted: u64,
    pub rejected: [u64; RejectReason::ALL.len()],
    pub windows_closed: u64,
    pub transitions: u64,
    pub raised_by_level: [u64; 4],
    /// Open windows taken over from another instance after this one had made their time final.
    pub handover_dropped: u64,
}

impl Stats {
    pub fn rejected(&self, r: RejectReason) -> u64 {
        self.rejected[r as usize]
    }
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum()
    }
}

#[derive(Clone, Copy)]
struct Route {
    rule: u32,
    cond: u8,
    filtered: bool,
    /// The rule's dense series index of this site's first device (device-keyed) or of the site.
    base: u32,
    /// The rule keeps one series per site (else per device).
    by_site: bool,
}

impl Route {
    /// The rule's series a reading of device `dev` (whose record is `hot`) goes to.
    #[inline]
    fn series(&self, dev: u32, hot: &DevHot) -> u32 {
        if self.by_site {
            self.base
        } else {
            self.base + (dev - hot.first_of_site)
        }
    }
}

struct RuleRt {
    windows: Option<Windows>,
    alerts: FxHashMap<u32, AlertState>,
    timing: Timing,
    /// For scoped devices or sources: who may feed this rule.
    devices: Option<Vec<u32>>,
    sources: Vec<usize>,
    /// Absence rules: devices watched and whether each is offline now.
    watched: Vec<u32>,
}

pub struct Engine {
    pub config: Arc<Config>,
    metric_ids: Interner,
    /// Each metric id's [`ShortKey`] (`u128::MAX` for long names, which no key equals): a
    /// reading's metric is matched against its device's declared metrics by one comparison each.
    metric_keys: Vec<u128>,
    n_metrics: usize,
    /// Rules per (site, metric), flattened: the routes of slot `i` are
    /// `routes[route_start[i]..route_start[i + 1]]` (one contiguous array, no pointer chasing).
    routes: Vec<Route>,
    route_start: Vec<u32>,
    rules: Vec<RuleRt>,
    wm: Watermarks,
    /// What a reading touches of its device, in one cache line's worth.
    dev: Vec<DevHot>,
    /// Watermark at which the engine first saw time: silence is measured from there at most.
    started_at: Ts,
    next_due: Ts,
    collect_exceedances: bool,
    pub stats: Stats,
    pub transitions: Vec<Transition>,
    pub exceedances: Vec<Exceedance>,
    scratch: Vec<Closed>,
    eval_scratch: Vec<CondEval>,
    jumps: JumpGuard,
    deferred_rejects: Vec<(RejectReason, Held)>,
    /// The sites this engine judges silence for (`None`: all); see `handover`.
    owned: Option<Vec<bool>>,
    /// [`Engine::fingerprint`], computed once per configuration.
    fingerprint: std::sync::OnceLock<String>,
    /// Models (`models/*.toml`) and, per metric id, the models that read it.
    models: Vec<ModelRt>,
    models_of_metric: Vec<Vec<u16>>,
    /// Site risk models: 12345 tickets counted per site (event times), and the rules that read
    /// a risk score (their warnings do not feed it back).
    tickets_log: Vec<std::collections::VecDeque<Ts>>,
    reads_risk: Vec<bool>,
}

/// A model at run time: its state per device.
struct ModelRt {
    output: Arc<str>,
    kind: crate::config::models::Kind,
    /// Per device: whether the model scores its readings.
    scoped: Vec<bool>,
    /// Forecasts: the target level per device (its site's).
    targets: Vec<f64>,
    state: FxHashMap<u32, ModelState>,
    /// Risk scores: the next event time they are due, and (site, carrier device) pairs.
    next: Ts,
    carriers: Vec<(u32, u32)>,
}

enum ModelState {
    Anomaly(Box<crate::model::anomaly::Anomaly>),
    Forecast(crate::model::forecast::Forecast),
}

/// One condition's result in one window.
#[derive(Clone, Copy, Debug)]
struct CondEval {
    /// The window's aggregate.
    raw: f64,
    /// What the thresholds compare: the aggregate, or today's exceedance count.
    v: f64,
    thr: f64,
    level: Option<Level>,
}

impl Engine {
    /// Also report every final window whose condition held (benchmarks, backtests).
    pub fn collect_exceedances(&mut self, on: bool) {
        self.collect_exceedances = on;
    }

    /// Register (or look up) an input source for watermarking.
    pub fn source(&mut self, name: &str) -> usize {
        self.wm.source(name)
    }

    /// A source that holds event time back before it delivers (see
    /// [`watermark::Watermarks::expect_source`]).
    pub fn expect_source(&mut self, name: &str, now: Ts) -> usize {
        self.wm.expect_source(name, now)
    }

    /// Hold event time at or below `bound` (see [`watermark::Watermarks::set_bound`]).
    pub fn set_watermark_bound(&mut self, bound: Ts) {
        self.wm.set_bound(bound);
    }

    /// A source's own watermark (see [`watermark::Watermarks::of_source`]).
    pub fn source_watermark(&self, i: usize) -> Option<Ts> {
        self.wm.of_source(i)
    }

    /// A source that no longer holds event time back (see
    /// [`watermark::Watermarks::retire_source`]).
    pub fn retire_source(&mut self, i: usize) {
        self.wm.retire_source(i)
    }

    /// A source that never holds event time back (see [`watermark::Watermarks::passive_source`]).
    pub fn passive_source(&mut self, name: &str) -> usize {
        self.wm.passive_source(name)
    }

    pub fn watermark(&self) -> Ts {
        self.wm.current()
    }

    pub fn newest(&self) -> Ts {
        self.wm.newest()
    }

    /// Number of window entries held across rules (a gauge of state size).
    pub fn window_entries(&self) -> usize {
        self.rules
            .iter()
            .filter_map(|r| r.windows.as_ref())
            .map(|w| w.entries())
            .sum()
    }

    /// Warnings currently firing: (rule, subject, level).
    pub fn firing(&self) -> Vec<(usize, Subject, Level)> {
        let mut v = Vec::new();
        for (ri, rt) in self.rules.iter().enumerate() {
            let key_by = self.config.rules[ri].key;
            for (k, st) in &rt.alerts {
                if let Some(l) = st.current_level() {
                    v.push((ri, subject(key_by, *k), l));
                }
            }
        }
        v.sort();
        v
    }

    /// Take one reading. `Err` names why it was rejected; it is counted either way.
    #[inline]
    pub fn push(&mut self, r: &Input) -> Result<(), RejectReason> {
        self.push_located(r).map(|_| ())
    }

    /// [`Engine::push`], telling the device and site the reading was taken as (it was
    /// processed, or held until the stream confirms a far jump).
    #[inline]
    pub fn push_located(&mut self, r: &Input) -> Result<(u32, u32), RejectReason> {
        let at = self.locate(r);
        self.push_routed(r, at)
    }

    /// [`Engine::resolve`] and [`Engine::route`] of one reading (`None`: no such device).
    #[inline]
    pub fn locate(&self, r: &Input) -> Option<Routed> {
        self.resolve(r.device).map(|dev| self.route(r.metric, dev))
    }

    /// The index of the device a reading names, looked up ahead of [`Engine::push_routed`],
    /// and a hint to the processor to fetch the device's state. Callers with many readings at
    /// hand resolve a few before pushing them: the lookups of different readings do not wait
    /// for each other, where one reading at a time waits for each in turn.
    #[inline]
    pub fn resolve(&self, device: &str) -> Option<u32> {
        let dev = self.config.registry.device(device)?;
        if let Some(hot) = self.dev.get(dev as usize) {
            prefetch(hot);
        }
        Some(dev)
    }

    /// Where a reading of `metric` by device `dev` (from [`Engine::resolve`]) goes: its site and
    /// the rules of that metric there. The window state it will update is asked of the
    /// processor (prefetched), so that, like `resolve`, the memory of several readings loads at
    /// once. Valid until the configuration changes ([`Engine::reload`]).
    #[inline]
    pub fn route(&self, metric: &str, dev: u32) -> Routed {
        let site = self.dev[dev as usize].site;
        let slot = self.route_slot(metric, dev, site);
        if let Some((w, series)) = slot.and_then(|i| self.first_series(i, dev)) {
            w.prefetch(series);
        }
        Routed {
            dev,
            site,
            slot: slot.map_or(u32::MAX, |i| i as u32),
        }
    }

    /// The windows and series of the first rule routed at `slot` that a reading of device
    /// `dev` goes to (for the prefetch: the first is the one most readings update).
    #[inline]
    fn first_series(&self, slot: usize, dev: u32) -> Option<(&Windows, u32)> {
        let (a, b) = (
            *self.route_start.get(slot)?,
            *self.route_start.get(slot + 1)?,
        );
        let route = self.routes.get(a as usize).filter(|_| a < b)?;
        let windows = self.rules.get(route.rule as usize)?.windows.as_ref()?;
        Some((windows, route.series(dev, &self.dev[dev as usize])))
    }

    /// [`Engine::push_located`] with the reading's device and route already found
    /// ([`Engine::resolve`] and [`Engine::route`]; `None`: no such device). Always inlined:
    /// callers push one reading after another, and the call cost as much as its checks.
    #[inline(always)]
    pub fn push_routed(
        &mut self,
        r: &Input,
        at: Option<Routed>,
    ) -> Result<(u32, u32), RejectReason> {
        self.stats.readings += 1;
        match self.accept(r, at) {
            Ok((Accepted::Processed, dev, site)) => {
                self.stats.accepted += 1;
                Ok((dev, site))
            }
            Ok((Accepted::Held, dev, site)) => Ok((dev, site)),
            Err(reason) => {
                self.stats.rejected[reason as usize] += 1;
                Err(reason)
            }
        }
    }

    /// The checks of [`Engine::push_routed`] (always inlined, as it is).
    #[inline(always)]
    fn accept(
        &mut self,
        r: &Input,
        at: Option<Routed>,
    ) -> Result<(Accepted, u32, u32), RejectReason> {
        if !r.value.is_finite() {
            return Err(RejectReason::NonFinite);
        }
        let s = &self.config.settings;
        // against the clock it arrived by (live sources; a recording arrives "at" its own time)
        if !(MIN_SANE_TS..MAX_SANE_TS).contains(&r.ts)
            || r.ts
                > r.arrival
                    .saturating_add(s.max_future.min(s.max_clock_ahead))
            || r.ts < r.arrival.saturating_sub(s.max_past)
        {
            return Err(RejectReason::BadTimestamp);
        }
        let Some(at) = at else {
            return Err(RejectReason::UnknownDevice);
        };
        let (dev, site) = (at.dev, at.site);
        if let Some(claimed) = r.site {
            if !self.config.registry.site_is(site, claimed) {
                return Err(RejectReason::SiteMismatch);
            }
        }
        // against the stream: far behind is bad; far ahead is an outlier or the stream resuming
        // after an outage, and the readings after it tell which
        let newest = self.wm.newest();
        if newest != Ts::MIN {
            if r.ts < newest.saturating_sub(s.max_past) {
                return Err(RejectReason::BadTimestamp);
            }
            if r.ts > newest.saturating_add(s.max_future) {
                let decided = self.jumps.ahead(r, s.max_future);
                self.apply(decided);
                return Ok((Accepted::Held, dev, site));
            }
        }
        if !self.jumps.is_empty() {
            let decided = self.jumps.in_range();
            self.apply(decided);
        }
        self.process(r, dev, site, at.slot())
            .map(|()| (Accepted::Processed, dev, site))
    }

    /// Carry out what the jump guard decided about held readings.
    fn apply(&mut self, d: jump::Decided) {
        for h in d.refuted {
            self.stats.rejected[RejectReason::BadTimestamp as usize] += 1;
            self.deferred_rejects.push((RejectReason::BadTimestamp, h));
        }
        for h in d.confirmed {
            let r = h.as_input();
            let outcome = match self.config.registry.device(r.device) {
                Some(dev) => {
                    let site = self.dev[dev as usize].site;
                    let slot = self.route_slot(r.metric, dev, site);
                    self.process(&r, dev, site, slot)
                }
                // checked before it was held; kept for the record all the same
                None => Err(RejectReason::UnknownDevice),
            };
            match outcome {
                Ok(()) => self.stats.accepted += 1,
                Err(reason) => {
                    self.stats.rejected[reason as usize] += 1;
                    self.deferred_rejects.push((reason, h));
                }
            }
        }
    }

    /// Rejections decided after `push` returned (held readings the stream did not confirm), for
    /// the dead-letter place.
    pub fn take_deferred_rejects(&mut self) -> Vec<(RejectReason, Held)> {
        std::mem::take(&mut self.deferred_rejects)
    }

    /// Whether [`Engine::take_deferred_rejects`] has anything (checked per line by replay).
    #[inline]
    pub fn has_deferred_rejects(&self) -> bool {
        !self.deferred_rejects.is_empty()
    }

    #[inline]
    fn process(
        &mut self,
        r: &Input,
        dev: u32,
        site: u32,
        slot: Option<usize>,
    ) -> Result<(), RejectReason> {
        let res = self.insert_reading(r, dev, slot, false);
        if !self.models.is_empty() {
            self.run_models(r, dev, site);
            if !self.tickets_log.is_empty() {
                self.run_risk(r, site);
            }
        }
        res
    }

    /// Into the windows of the rules that use it (`routes_idx`: its slot of the route table,
    /// from [`Engine::route_slot`]). A model's output (`derived`) neither tells
    /// that its device is alive nor moves event time: only measured readings do.
    #[inline]
    fn insert_reading(
        &mut self,
        r: &Input,
        dev: u32,
        routes_idx: Option<usize>,
        derived: bool,
    ) -> Result<(), RejectReason> {
        // late for every rule it would feed?
        let lateness = self.config.settings.allowed_lateness;
        let limit = self.wm.current().saturating_sub(lateness);
        let mut fed = 0usize;
        let mut late = 0usize;
        if let Some(ri) = routes_idx {
            for i in self.route_start[ri] as usize..self.route_start[ri + 1] as usize {
                let route = self.routes[i];
                let rt = &mut self.rules[route.rule as usize];
                if route.filtered {
                    if rt.devices.as_ref().is_some_and(|d| !d.contains(&dev)) {
                        continue;
                    }
                    if !rt.sources.is_empty() && !rt.sources.contains(&r.source) {
                        continue;
                    }
                }
                let series = route.series(dev, &self.dev[dev as usize]);
                if let Some(w) = &mut rt.windows {
                    fed += 1;
                    match w.insert(r.ts, series, route.cond as usize, r.value, dev, limit) {
                        Ok(due) => self.next_due = self.next_due.min(due.saturating_add(lateness)),
                        Err(_) => late += 1,
                    }
                }
            }
        }
        if derived {
            return if fed > 0 && late == fed {
                Err(RejectReason::Late)
            } else {
                Ok(())
            };
        }
        if fed == 0 {
            self.stats.unrouted += 1;
        }
        let was_seen = self.dev[dev as usize].last_seen;
        if r.ts > was_seen {
            self.dev[dev as usize].last_seen = r.ts;
            if self.dev[dev as usize].offline > 0 {
                self.device_back(dev, r.ts);
            }
        }
        let wm = self.wm.observe(r.source, r.ts, r.arrival);
        if self.started_at == Ts::MIN {
            self.started_at = wm;
        }
        if wm >= self.next_due {
            self.run_due(wm, true);
        }
        if fed > 0 && late == fed {
            return Err(RejectReason::Late);
        }
        Ok(())
    }

    /// The slot of `routes` for a reading of `metric` by device `dev` at `site` (`None`: no rule
    /// of that metric anywhere).
    #[inline]
    fn route_slot(&self, metric: &str, dev: u32, site: u32) -> Option<usize> {
        // the metrics a device declares are few: compare against those before hashing
        let key = ShortKey::of(metric);
        let mut declared = None;
        for &m in &self.dev[dev as usize].metrics {
            if m == u16::MAX {
                break;
            }
            let same = match key {
                Some(k) => self.metric_keys.get(m as usize) == Some(&k.0),
                None => self.metric_ids.resolve(m as u32) == metric,
            };
            if same {
                declared = Some(m);
                break;
            }
        }
        declared
            .map(u32::from)
            .or_else(|| match key {
                Some(k) => self.metric_ids.get_short(k),
                None => self.metric_ids.get(metric),
            })
            .map(|m| site as usize * self.n_metrics + m as usize)
    }

    /// Ids a warning is known by: rule id, subject id and episode start always give the same id.
    pub fn subject_id(&self, s: Subject) -> &str {
        match s {
            Subject::Device(d) => &self.config.registry.devices[d as usize].id,
            Subject::Site(i) => &self.config.registry.sites[i as usize].id,
        }
    }
}

fn subject(key: KeyBy, k: u32) -> Subject {
    match key {
        KeyBy::Device => Subject::Device(k),
        KeyBy::Site => Subject::Site(k),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EngineSettings;
    use crate::time::{DAY, MINUTE, SECOND};

    const T0: Ts = 1_795_795_200_000;
    const SITES: &str = "sites:
  - id: s1
    name: 一号站
    kind: construction
    department: zjj
    devices:
      - {id: a, metrics: [pm10]}
      - {id: b, metrics: [pm10]}
";

    fn engine(rules: &str, settings: EngineSettings) -> Engine {
        let cfg = Config::from_texts(SITES, &[("r.yaml", rules)], settings)
            .unwrap_or_else(|e| panic!("{e:?}"));
        let mut e = Engine::new(Arc::new(cfg));
        e.collect_exceedances(true);
        e
    }

    /// An engine whose watermark is the newest event time (no out-of-orderness).
    fn strict(rules: &str) -> Engine {
        engine(
            rules,
            EngineSettings {
                out_of_orderness: 0,
                ..EngineSettings::default()
            },
        )
    }

    fn push(
        e: &mut Engine,
        src: usize,
        dev: &str,
        ts: Ts,
        arrival: Ts,
        v: f64,
    ) -> Result<(), RejectReason> {
        e.push(&Input {
            site: None,
            device: dev,
            metric: "pm10",
            value: v,
            ts,
            arrival,
            source: src,
        })
    }

    const TUMBLING: &str = "rules:
  - {id: r, title: t, metric: pm10, window: {type: tumbling, size: 1m}, aggregate: avg, above: 0, level: blue, message: x}
";

    /// An engine over SITES with one model file (`name`, `text`) and `rules`.
    fn engine_with_model(name: &str, text: &str, rules: &str) -> Engine {
        let path = std::path::Path::new("models").join(name);
        let model = crate::config::models::parse(&path, text).expect("model");
        let cfg = Config::from_texts_with_models(
            SITES,
            &[("r.yaml", rules)],
            vec![model],
            EngineSettings::default(),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        Engine::new(Arc::new(cfg))
    }

    #[test]
    fn the_site_risk_score_follows_the_sites_warnings() {
        let mut e = engine_with_model(
            "risk.toml",
            "kind = \"risk\"\n[params]\nevery = \"10m\"\n[params.weights]\nwarnings = 1.0\ntickets = 0.0\noffline = 0.0\n",
            "rules:
  - {id: dust, title: t, metric: pm10, window: {type: tumbling, size: 10m}, aggregate: avg, above: {red: 100}, message: x}
  - {id: risky, title: t, metric: site_risk, window: {type: tumbling, size: 10m}, aggregate: last, above: {yellow: 0.5}, message: x}
",
        );
        let src = e.source("t");
        // 30 minutes clean, an hour of dust at device b, clean again
        for i in 0..180 {
            let v = if (30..90).contains(&i) { 300.0 } else { 20.0 };
            let ts = T0 + i * MINUTE;
            push(&mut e, src, "b", ts, ts, v).expect("push");
        }
        e.finish();
        let seen: Vec<(&str, TransitionKind)> = e
            .transitions
            .iter()
            .map(|t| (e.config.rules[t.rule].id.as_str(), t.step.kind))
            .collect();
        // the red dust warning (risk 1.0 while it fires: the score is a reading of device a,
        // the site's first) makes the site risky; both clear after the dust
        let first = |id: &str, k: TransitionKind| seen.iter().position(|x| *x == (id, k));
        let dust = first("dust", TransitionKind::Raise).expect("dust raised");
        let risky = first("risky", TransitionKind::Raise).expect("risk raised");
        assert!(dust < risky, "{seen:?}");
        assert!(first("risky", TransitionKind::Clear).is_some(), "{seen:?}");
        // the score of a site with no warning is 0: device a carries it, b does not
        assert!(e.models[0].carriers == vec![(0, 0)]);
    }

    #[test]
    fn rules_use_a_models_output_like_any_metric() {
        let mut e = engine_with_model(
            "pm.toml",
            "kind = \"anomaly\"\nmetric = \"pm10\"\n[params]\nlearn = 600\n",
            "rules:
  - {id: odd, title: t, metric: pm10_anomaly, window: {type: tumbling, size: 1m}, aggregate: max, above: {yellow: 0.5}, message: x}
",
        );
        let src = e.source("t");
        // a steady cycle (about 6 h) for 2,000 minutes at device a, learnt over more than one
        // cycle, then a spike
        for i in 0..2000 {
            let v = 50.0 + 10.0 * (i as f64 / 60.0).sin();
            let ts = T0 + i * MINUTE;
            push(&mut e, src, "a", ts, ts, v).expect("push");
        }
        assert!(e.transitions.is_empty(), "the cycle is normal");
        let ts = T0 + 2000 * MINUTE;
        push(&mut e, src, "a", ts, ts, 400.0).expect("spike");
        e.finish();
        let raised: Vec<_> = e
            .transitions
            .iter()
            .filter(|t| t.step.kind == TransitionKind::Raise)
            .collect();
        assert_eq!(raised.len(), 1, "one warning for the spike");
        assert_eq!(raised[0].step.level, Level::Yellow);
        // device b never measured anything: no model state for it
        assert_eq!(e.models[0].state.len(), 1);
    }

    #[test]
    fn allowed_lateness_keeps_windows_open() {
        let settings = EngineSettings {
            out_of_orderness: 0,
            allowed_lateness: MINUTE,
            ..EngineSettings::default()
        };
        let mut e = engine(TUMBLING, settings);
        let src = e.source("s");
        for i in 0..60 {
            push(&mut e, src, "a", T0 + i * SECOND, T0 + i * SECOND, 100.0).unwrap();
        }
        push(&mut e, src, "a", T0 + 65 * SECOND, T0 + 65 * SECOND, 100.0).unwrap();
        // 35 s behind the watermark, but within the minute of allowed lateness
        push(&mut e, src, "a", T0 + 30 * SECOND, T0 + 66 * SECOND, 1000.0).unwrap();
        assert!(
            e.exceedances.is_empty(),
            "the window waits for its lateness"
        );
        push(
            &mut e,
            src,
            "a",
            T0 + 121 * SECOND,
            T0 + 121 * SECOND,
            100.0,
        )
        .unwrap();
        assert_eq!(e.exceedances.len(), 1);
        let a = e.exceedances[0].accs.get(0);
        assert_eq!((a.count, a.max), (61, 1000.0));
        // past end + lateness: late
        assert_eq!(
            push(&mut e, src, "a", T0 + 10 * SECOND, T0 + 122 * SECOND, 1.0),
            Err(RejectReason::Late)
        );
    }

    #[test]
    fn an_idle_source_stops_holding_windows_open() {
        let settings = EngineSettings {
            out_of_orderness: 0,
            idle_timeout: 2 * MINUTE,
            ..EngineSettings::default()
        };
        let mut e = engine(TUMBLING, settings);
        let (s1, s2) = (e.source("mqtt"), e.source("hj212"));
        push(&mut e, s1, "a", T0, T0, 10.0).unwrap();
        push(&mut e, s2, "b", T0, T0, 10.0).unwrap();
        // only s2 keeps talking: s1 holds the watermark at T0 until it is idle
        for i in 1..=4 {
            push(&mut e, s2, "b", T0 + i * MINUTE, T0 + i * MINUTE, 10.0).unwrap();
        }
        assert_eq!(
            e.watermark(),
            T0 + 4 * MINUTE,
            "s1 idle after 2 minutes of processing time"
        );
        assert!(e.exceedances.len() >= 3, "{}", e.exceedances.len());
        // a heartbeat with no data does the same
        let mut e = engine(
            TUMBLING,
            EngineSettings {
                out_of_orderness: 0,
                idle_timeout: 2 * MINUTE,
                // s2's clock is ahead of the arrival clock here on purpose
                max_clock_ahead: DAY,
                ..EngineSettings::default()
            },
        );
        let (s1, s2) = (e.source("mqtt"), e.source("hj212"));
        push(&mut e, s1, "a", T0, T0, 10.0).unwrap();
        push(&mut e, s2, "b", T0 + 5 * MINUTE, T0, 10.0).unwrap();
        assert_eq!(e.watermark(), T0);
        e.tick(T0 + 3 * MINUTE);
        assert_eq!(e.watermark(), T0 + 5 * MINUTE);
    }

    #[test]
    fn session_windows_warn_on_a_burst() {
        let rules = "rules:
  - {id: burst, title: t, metric: pm10, window: {type: session, gap: 5m}, aggregate: count, above: {yellow: 3}, message: x}
";
        let mut e = strict(rules);
        let src = e.source("s");
        for m in [0, 1, 2, 3] {
            push(&mut e, src, "a", T0 + m * MINUTE, T0 + m * MINUTE, 1.0).unwrap();
        }
        push(&mut e, src, "a", T0 + 20 * MINUTE, T0 + 20 * MINUTE, 1.0).unwrap();
        assert_eq!(e.transitions.len(), 1);
        let t = &e.transitions[0];
        assert_eq!(
            (t.step.kind, t.step.level, t.value),
            (TransitionKind::Raise, Level::Yellow, 4.0)
        );
        assert_eq!(t.window, (T0, T0 + 8 * MINUTE));
    }

    #[test]
    fn site_keyed_rules_list_contributing_devices() {
        let rules = "rules:
  - {id: site_avg, title: t, key: site, metric: pm10, window: {type: tumbling, size: 1m}, aggregate: avg, above: {blue: 150}, message: x}
";
        let mut e = strict(rules);
        let src = e.source("s");
        push(&mut e, src, "a", T0, T0, 300.0).unwrap();
        push(&mut e, src, "b", T0 + SECOND, T0 + SECOND, 100.0).unwrap();
        e.advance_to(T0 + MINUTE);
        let t = &e.transitions[0];
        assert_eq!(t.subject, Subject::Site(0));
        assert_eq!(t.value, 200.0);
        assert_eq!(t.devices, vec![0, 1]);
    }

    #[test]
    fn scopes_by_device_and_source() {
        let rules = "rules:
  - {id: only_b, title: t, scope: {devices: [b]}, metric: pm10, window: {type: tumbling, size: 1m}, aggregate: max, above: 0, level: blue, message: x}
  - {id: only_hj, title: t, scope: {source: hj212}, metric: pm10, window: {type: tumbling, size: 1m}, aggregate: max, above: 0, level: blue, message: x}
";
        let mut e = strict(rules);
        let (mqtt, hj) = (e.source("mqtt"), e.source("hj212"));
        push(&mut e, mqtt, "a", T0, T0, 1.0).unwrap();
        push(&mut e, mqtt, "b", T0, T0, 1.0).unwrap();
        push(&mut e, hj, "a", T0, T0, 1.0).unwrap();
        e.advance_to(T0 + MINUTE);
        let got: Vec<(usize, Subject)> =
            e.exceedances.iter().map(|x| (x.rule, x.subject)).collect();
        assert_eq!(got, vec![(0, Subject::Device(1)), (1, Subject::Device(0))]);
        assert_eq!(
            e.exceedances[1].accs.get(0).count,
            1,
            "only the hj212 reading"
        );
    }

    #[test]
    fn a_jump_far_ahead_needs_confirmation() {
        let mut e = strict(TUMBLING);
        let src = e.source("file");
        // recorded data: arrival is the event time, so only the stream can judge
        let at = |m: i64| T0 + m * MINUTE;
        push(&mut e, src, "a", at(0), at(0), 1.0).unwrap();
        // one reading a year ahead (a broken clock), then the stream goes on
        push(&mut e, src, "a", at(525_600), at(525_600), 9.0).unwrap();
        for m in 1..=3 {
            push(&mut e, src, "a", at(m), at(m), 1.0).unwrap();
        }
        let rejected = e.take_deferred_rejects();
        assert_eq!(rejected.len(), 1);
        assert_eq!(
            (rejected[0].0, rejected[0].1.ts),
            (RejectReason::BadTimestamp, at(525_600))
        );
        assert!(
            e.watermark() < at(10),
            "the outlier never moved the watermark"
        );
        // the feed resumes after a two-day outage: the readings agree, the stream moves on
        for m in 0..3 {
            push(&mut e, src, "b", at(2 * 1440 + m), at(2 * 1440 + m), 2.0).unwrap();
        }
        assert!(e.take_deferred_rejects().is_empty());
        assert_eq!(e.stats.accepted, 7);
        assert_eq!(e.stats.rejected(RejectReason::BadTimestamp), 1);
        assert!(e.newest() >= at(2 * 1440 + 2));
    }

    #[test]
    fn quantiles_stddev_and_rate_reach_rules() {
        let rules = "rules:
  - {id: p95, title: t, metric: pm10, window: {type: tumbling, size: 2m}, aggregate: p95, above: {yellow: 90}, message: x}
  - {id: sd, title: t, metric: pm10, window: {type: tumbling, size: 2m}, aggregate: stddev, above: {blue: 20}, message: x}
  - {id: rate, title: t, metric: pm10, window: {type: tumbling, size: 2m}, aggregate: rate, above: {red: 1000}, message: x}
";
        let mut e = strict(rules);
        let src = e.source("s");
        for i in 0..100 {
            push(
                &mut e,
                src,
                "a",
                T0 + i * SECOND,
                T0 + i * SECOND,
                (i + 1) as f64,
            )
            .unwrap();
        }
        e.advance_to(T0 + 2 * MINUTE);
        let by_rule = |id: usize| {
            e.transitions
                .iter()
                .find(|t| t.rule == id)
                .map(|t| (t.step.level, t.value))
        };
        let (level, p95) = by_rule(0).expect("p95 warning");
        assert_eq!(level, Level::Yellow);
        assert!((p95 - 95.0).abs() <= 0.01 * 95.0 + 1e-9, "{p95}");
        let (_, sd) = by_rule(1).expect("stddev warning");
        assert!((sd - 29.011491975882016).abs() < 1e-9, "{sd}");
        // 1 -> 100 over 99 s: 3,600 per hour
        let (_, rate) = by_rule(2).expect("rate warning");
        assert!((rate - 3600.0).abs() < 1e-6, "{rate}");
    }

    #[test]
    fn rejects_with_reasons_and_keeps_going() {
        let mut e = engine(TUMBLING, EngineSettings::default());
        let src = e.source("s");
        assert_eq!(
            push(&mut e, src, "a", T0, T0, f64::NAN),
            Err(RejectReason::NonFinite)
        );
        assert_eq!(
            push(&mut e, src, "zz", T0, T0, 1.0),
            Err(RejectReason::UnknownDevice)
        );
        assert_eq!(
            push(&mut e, src, "a", 0, T0, 1.0),
            Err(RejectReason::BadTimestamp)
        );
        assert_eq!(push(&mut e, src, "a", T0, T0, 1.0), Ok(()));
        assert_eq!(
            push(&mut e, src, "a", T0 + 400 * crate::time::DAY, T0, 1.0),
            Err(RejectReason::BadTimestamp)
        );
        let claimed = e.push(&Input {
            site: Some("s9"),
            device: "a",
            metric: "pm10",
            value: 1.0,
            ts: T0,
            arrival: T0,
            source: src,
        });
        assert_eq!(claimed, Err(RejectReason::SiteMismatch));
        assert_eq!(e.stats.readings, 6);
        assert_eq!(e.stats.accepted, 1);
        assert_eq!(e.stats.rejected_total(), 5);
    }
}
