//! Compiling a configuration into the engine: rules indexed by (site, metric), each rule's
//! windows, alert machines and scope, models wired to their inputs; and a reload that keeps
//! the state of every rule and model whose definition did not change.

use super::*;

impl Engine {
    pub fn new(config: Arc<Config>) -> Engine {
        let reg = &config.registry;
        let mut metric_ids = Interner::default();
        for d in &reg.devices {
            for m in &d.metrics {
                metric_ids.intern(m);
            }
        }
        for r in &config.rules {
            for m in r.metrics() {
                metric_ids.intern(&m);
            }
        }
        let n_metrics = metric_ids.len().max(1);
        let mut routes = vec![Vec::new(); reg.sites.len() * n_metrics];
        let mut rules = Vec::with_capacity(config.rules.len());
        let mut wm = Watermarks::new(
            config.settings.out_of_orderness,
            config.settings.idle_timeout,
        );
        for (ri, r) in config.rules.iter().enumerate() {
            rules.push(compile_rule(
                ri,
                r,
                &config,
                &metric_ids,
                &mut routes,
                &mut wm,
            ));
        }
        let dev = device_slots(&config, &metric_ids);
        let (models, models_of_metric) = compile_models(&config, &metric_ids, n_metrics);
        let risk_outputs: Vec<&str> = config
            .models
            .iter()
            .filter(|m| matches!(m.kind, crate::config::models::Kind::Risk(_)))
            .map(|m| m.output.as_str())
            .collect();
        let reads_risk = config
            .rules
            .iter()
            .map(|r| match &r.body {
                Body::Threshold { conds, .. } => conds
                    .iter()
                    .any(|c| risk_outputs.contains(&c.metric.as_str())),
                Body::Absence { .. } => false,
            })
            .collect();
        let tickets_log = if risk_outputs.is_empty() {
            Vec::new()
        } else {
            vec![std::collections::VecDeque::new(); reg.sites.len()]
        };
        Engine {
            tickets_log,
            reads_risk,
            models,
            models_of_metric,
            config,
            metric_keys: (0..metric_ids.len() as u32)
                .map(|i| ShortKey::of(metric_ids.resolve(i)).map_or(u128::MAX, |k| k.0))
                .collect(),
            metric_ids,
            n_metrics,
            routes: routes.concat(),
            route_start: {
                let mut starts = Vec::with_capacity(routes.len() + 1);
                let mut n = 0u32;
                starts.push(0);
                for r in &routes {
                    n += r.len() as u32;
                    starts.push(n);
                }
                starts
            },
            rules,
            wm,
            dev,
            started_at: Ts::MIN,
            next_due: Ts::MIN,
            collect_exceedances: false,
            stats: Stats::default(),
            transitions: Vec::new(),
            exceedances: Vec::new(),
            scratch: Vec::new(),
            eval_scratch: Vec::new(),
            jumps: JumpGuard::default(),
            deferred_rejects: Vec::new(),
            owned: None,
            fingerprint: std::sync::OnceLock::new(),
        }
    }

    /// Swap in a new configuration. When the registry is unchanged, every rule whose definition
    /// is unchanged keeps its windows and warning state (and devices their last-seen times);
    /// new or edited rules start empty. A changed registry renumbers devices and sites, so then
    /// every rule starts afresh. Returns (rules kept, rules started afresh).
    pub fn reload(&mut self, config: Arc<Config>) -> (usize, usize) {
        let mut next = Engine::new(config);
        let old = &self.config;
        let same_registry = format!(
            "{:?}{:?}{:?}",
            old.registry.sites, old.registry.devices, old.registry.departments
        ) == format!(
            "{:?}{:?}{:?}",
            next.config.registry.sites,
            next.config.registry.devices,
            next.config.registry.departments
        ) && old.settings == next.config.settings;
        let total = next.rules.len();
        if !same_registry {
            next.stats = std::mem::take(&mut self.stats);
            *self = next;
            return (0, total);
        }
        let fingerprint = |r: &Rule| {
            let mut c = r.clone();
            c.file = Arc::from("");
            c.pos = Default::default();
            format!("{c:?}")
        };
        let old_prints: Vec<String> = self.config.rules.iter().map(fingerprint).collect();
        // keep the old watermarks (carried rules' sources index into them)
        std::mem::swap(&mut next.wm, &mut self.wm);
        let mut kept = 0;
        for ni in 0..next.rules.len() {
            let print = fingerprint(&next.config.rules[ni]);
            let found =
                self.config.rules.iter().enumerate().position(|(oi, r)| {
                    r.id == next.config.rules[ni].id && old_prints[oi] == print
                });
            match found {
                Some(oi) => {
                    next.rules[ni] = std::mem::replace(
                        &mut self.rules[oi],
                        RuleRt {
                            windows: None,
                            alerts: FxHashMap::default(),
                            timing: next.rules[ni].timing,
                            devices: None,
                            sources: Vec::new(),
                            watched: Vec::new(),
                        },
                    );
                    kept += 1;
                }
                None => {
                    let names = next.config.rules[ni].sources.clone();
                    next.rules[ni].sources = names.iter().map(|s| next.wm.source(s)).collect();
                }
            }
        }
        // devices: last seen carries; offline counts follow the absence warnings that carried
        for (d, h) in next.dev.iter_mut().enumerate() {
            h.last_seen = self.dev[d].last_seen;
            h.offline = 0;
        }
        for rt in &next.rules {
            if rt.watched.is_empty() {
                continue;
            }
            for (k, st) in &rt.alerts {
                if st.firing.is_some() {
                    next.dev[*k as usize].offline += 1;
                }
            }
        }
        next.started_at = self.started_at;
        next.next_due = Ts::MIN;
        next.stats = std::mem::take(&mut self.stats);
        next.jumps = std::mem::take(&mut self.jumps);
        next.collect_exceedances = self.collect_exceedances;
        next.owned = self.owned.take();
        *self = next;
        (kept, total - kept)
    }
}

pub(super) fn scoped_devices(r: &Rule, config: &Config) -> Option<Vec<u32>> {
    if r.devices.is_empty() {
        return None;
    }
    Some(
        r.devices
            .iter()
            .filter_map(|d| config.registry.device(d))
            .collect(),
    )
}

pub(super) fn first_threshold(t: &LevelThresholds) -> f64 {
    t.iter().copied().find(|v| !v.is_nan()).unwrap_or(f64::NAN)
}

/// One rule's runtime: its windows (and the routes from (site, metric) to them) or the
/// devices it watches for silence, its alert timing, scope and sources.
fn compile_rule(
    ri: usize,
    r: &Rule,
    config: &Config,
    metric_ids: &Interner,
    routes: &mut [Vec<Route>],
    wm: &mut Watermarks,
) -> RuleRt {
    let reg = &config.registry;
    let n_metrics = metric_ids.len().max(1);
    let devices = scoped_devices(r, config);
    let sources: Vec<usize> = r.sources.iter().map(|s| wm.source(s)).collect();
    let filtered = devices.is_some() || !sources.is_empty();
    let mut watched = Vec::new();
    let (windows, continuity) = match &r.body {
        Body::Threshold { conds, window, .. } => {
            // the rule's series, densely numbered: every device of the covered sites, or
            // every covered site; `keys` maps the number back
            let mut keys: Vec<u32> = Vec::new();
            let mut bases = Vec::with_capacity(r.sites.len());
            for &s in &r.sites {
                bases.push(keys.len() as u32);
                match r.key {
                    KeyBy::Device => keys.extend(&reg.sites[s as usize].devices),
                    KeyBy::Site => keys.push(s),
                }
            }
            for (ci, c) in conds.iter().enumerate() {
                let m = metric_ids.get(&c.metric).unwrap_or(0) as usize;
                for (&s, &base) in r.sites.iter().zip(&bases) {
                    routes[s as usize * n_metrics + m].push(Route {
                        rule: ri as u32,
                        cond: ci as u8,
                        filtered,
                        base,
                        by_site: r.key == KeyBy::Site,
                    });
                }
            }
            let has = |f: fn(&Agg) -> bool| conds.iter().any(|c| f(&c.aggregate));
            let shape = AccShape {
                conds: conds.len(),
                needs: Needs {
                    order: has(|a| matches!(a, Agg::First | Agg::Last | Agg::Delta | Agg::Rate)),
                    spread: has(|a| *a == Agg::Stddev),
                    sketch: has(|a| a.needs_sketch()),
                    devices: r.key == KeyBy::Site,
                },
            };
            let continuity = match window.grid() {
                Some((_, step)) => step,
                None => Ts::MAX / 4,
            };
            (Some(Windows::new(*window, shape, keys)), continuity)
        }
        Body::Absence { metrics, .. } => {
            for &s in &r.sites {
                for &d in &reg.sites[s as usize].devices {
                    let dev = &reg.devices[d as usize];
                    let provides =
                        metrics.is_empty() || dev.metrics.iter().any(|m| metrics.contains(m));
                    let allowed = devices.as_ref().is_none_or(|ds| ds.contains(&d));
                    // a site's tickets are not a device that can go silent
                    if provides && allowed && !dev.metrics.is_empty() && !dev.is_hotline() {
                        watched.push(d);
                    }
                }
            }
            (None, Ts::MAX / 4)
        }
    };
    RuleRt {
        windows,
        alerts: FxHashMap::default(),
        timing: Timing {
            hold_for: r.hold_for,
            clear_after: r.clear_after,
            min_gap: r.min_gap,
            continuity,
        },
        devices,
        sources,
        watched,
    }
}

/// Each device's hot state: its site, its first declared metrics, never seen.
fn device_slots(config: &Config, metric_ids: &Interner) -> Vec<DevHot> {
    let reg = &config.registry;
    config
        .registry
        .devices
        .iter()
        .map(|d| {
            let mut metrics = [u16::MAX; DECLARED];
            for (slot, m) in metrics
                .iter_mut()
                .zip(d.metrics.iter().filter_map(|m| metric_ids.get(m)))
            {
                *slot = m as u16;
            }
            DevHot {
                last_seen: Ts::MIN,
                site: d.site,
                first_of_site: reg.sites[d.site as usize]
                    .devices
                    .first()
                    .copied()
                    .unwrap_or(0),
                metrics,
                offline: 0,
            }
        })
        .collect()
}

/// Each model's runtime and, by metric id, the models it feeds.
fn compile_models(
    config: &Config,
    metric_ids: &Interner,
    n_metrics: usize,
) -> (Vec<ModelRt>, Vec<Vec<u16>>) {
    let reg = &config.registry;
    let mut models_of_metric = vec![Vec::new(); n_metrics];
    let models = config
        .models
        .iter()
        .enumerate()
        .map(|(k, m)| {
            if let Some(id) = metric_ids.get(&m.metric) {
                models_of_metric[id as usize].push(k as u16);
            }
            let targets = match &m.kind {
                crate::config::models::Kind::Forecast { target, .. } => reg
                    .devices
                    .iter()
                    .map(|d| {
                        target
                            .eval(&reg.sites[d.site as usize].params)
                            .unwrap_or(f64::NAN)
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let carriers = match &m.kind {
                crate::config::models::Kind::Risk(_) => reg
                    .sites
                    .iter()
                    .enumerate()
                    .filter_map(|(si, s)| {
                        s.devices
                            .iter()
                            .find(|d| reg.devices[**d as usize].metrics.contains(&m.output))
                            .map(|d| (si as u32, *d))
                    })
                    .collect(),
                _ => Vec::new(),
            };
            ModelRt {
                next: Ts::MIN,
                carriers,
                output: Arc::from(m.output.as_str()),
                kind: m.kind.clone(),
                // devices provide a model's output where it applies (config::provide_model_outputs)
                scoped: reg
                    .devices
                    .iter()
                    .map(|d| d.metrics.contains(&m.metric) && d.metrics.contains(&m.output))
                    .collect(),
                targets,
                state: FxHashMap::default(),
            }
        })
        .collect();
    (models, models_of_metric)
}
