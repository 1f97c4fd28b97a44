//! Models inside the engine: the site risk score fed by warnings and readings, and each
//! model (anomaly score, trend forecast) fed by the readings of its input metric, its output
//! pushed back as a reading rules can use.

use super::*;

impl Engine {
    /// Site risk scores: count tickets as they come; every `every` of event time, score each
    /// site in scope and feed the score as a reading of its carrier device.
    pub(super) fn run_risk(&mut self, r: &Input, site: u32) {
        if r.metric.starts_with("tickets.") {
            if let Some(log) = self.tickets_log.get_mut(site as usize) {
                log.push_back(r.ts);
            }
        }
        let now = self.wm.newest();
        if now == Ts::MIN {
            return;
        }
        for k in 0..self.models.len() {
            let crate::config::models::Kind::Risk(p) = &self.models[k].kind else {
                continue;
            };
            let p = p.clone();
            let every = p.every.max(1);
            let next = self.models[k].next;
            if next == Ts::MIN {
                self.models[k].next = now - now.rem_euclid(every) + every;
                continue;
            }
            if now < next {
                continue;
            }
            self.models[k].next = now - now.rem_euclid(every) + every;
            let signals = self.risk_signals(&p, now);
            let output = self.models[k].output.clone();
            for i in 0..self.models[k].carriers.len() {
                let (s, d) = self.models[k].carriers[i];
                let score = crate::model::risk::score(&p, &signals[s as usize]);
                let device = self.config.registry.devices[d as usize].id.clone();
                let derived = Input {
                    site: None,
                    device: &device,
                    metric: &output,
                    value: score,
                    ts: now,
                    arrival: now,
                    source: r.source,
                };
                let slot = self.route_slot(&output, d, s);
                let _ = self.insert_reading(&derived, d, slot, true);
            }
        }
    }

    /// What is known about every site now (see `crate::model::risk`).
    pub(super) fn risk_signals(
        &mut self,
        p: &crate::model::risk::RiskParams,
        now: Ts,
    ) -> Vec<crate::model::risk::Signals> {
        let reg = &self.config.registry;
        let mut out = vec![crate::model::risk::Signals::default(); reg.sites.len()];
        for (ri, rt) in self.rules.iter().enumerate() {
            if self.reads_risk.get(ri).copied().unwrap_or(false) {
                continue;
            }
            for (k, st) in &rt.alerts {
                if let Some(f) = &st.firing {
                    let s = self.key_site(ri, *k) as usize;
                    if let Some(x) = out.get_mut(s) {
                        x.warnings += (f.level.index() + 1) as f64 / 4.0;
                    }
                }
            }
        }
        for (s, log) in self.tickets_log.iter_mut().enumerate() {
            while log.front().is_some_and(|t| *t <= now - p.window) {
                log.pop_front();
            }
            out[s].tickets = log.len();
        }
        for (s, site) in reg.sites.iter().enumerate() {
            let devs: Vec<u32> = site
                .devices
                .iter()
                .copied()
                .filter(|d| !reg.devices[*d as usize].is_hotline())
                .collect();
            if !devs.is_empty() {
                let off = devs
                    .iter()
                    .filter(|d| self.dev[**d as usize].offline > 0)
                    .count();
                out[s].offline = off as f64 / devs.len() as f64;
            }
            out[s].credit = site
                .enterprises
                .iter()
                .filter_map(|e| e.rating.and_then(crate::model::risk::credit_term))
                .reduce(f64::max);
        }
        out
    }

    /// The models reading this metric at this device score it; their outputs are readings of
    /// the same device and time.
    pub(super) fn run_models(&mut self, r: &Input, dev: u32, site: u32) {
        let Some(mid) = self.metric_ids.get(r.metric) else {
            return;
        };
        for k in 0..self.models_of_metric[mid as usize].len() {
            let m = &mut self.models[self.models_of_metric[mid as usize][k] as usize];
            if !m.scoped[dev as usize] {
                continue;
            }
            let state = match m.state.entry(dev) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => match &m.kind {
                    crate::config::models::Kind::Anomaly(p) => v.insert(ModelState::Anomaly(
                        Box::new(crate::model::anomaly::Anomaly::new(p, None)),
                    )),
                    crate::config::models::Kind::Forecast { params, .. } => v.insert(
                        ModelState::Forecast(crate::model::forecast::Forecast::new(params)),
                    ),
                    // scored per site by run_risk
                    crate::config::models::Kind::Risk(_) => continue,
                },
            };
            let score = match state {
                ModelState::Anomaly(a) if a.seasonal() => {
                    let tz = self.config.settings.timezone;
                    let seasonal = match &m.kind {
                        crate::config::models::Kind::Anomaly(p) => p.seasonal,
                        _ => crate::model::anomaly::Seasonal::None,
                    };
                    a.update_in(seasonal.slot_of(r.ts, tz), r.value)
                }
                ModelState::Anomaly(a) => a.update(r.value),
                ModelState::Forecast(f) => {
                    let target = m.targets.get(dev as usize).copied().unwrap_or(f64::NAN);
                    if target.is_nan() {
                        continue;
                    }
                    f.update(r.ts, r.value, target)
                }
            };
            let output = m.output.clone();
            let derived = Input {
                site: None,
                device: r.device,
                metric: &output,
                value: score,
                ts: r.ts,
                arrival: r.arrival,
                source: r.source,
            };
            // late or not, the model has learnt from the reading; its output follows the rules'
            // windows like any reading
            let slot = self.route_slot(&output, dev, site);
            let _ = self.insert_reading(&derived, dev, slot, true);
        }
    }
}
