//! Judging on event time: the watermark advances (by readings, by the clock when every source
//! is idle, at the end of input), due windows close and each rule's condition is evaluated
//! into its alert machine; absence rules watch each device's newest event time; firing
//! warnings resume after a restart.

use super::*;

impl Engine {
    /// Processing time passed (no input): idle sources stop holding the watermark back.
    pub fn tick(&mut self, now: Ts) {
        let wm = self.wm.tick(now);
        // no event time yet: nothing can be due
        if wm == Ts::MIN {
            return;
        }
        if wm >= self.next_due {
            self.run_due(wm, true);
        }
    }

    /// Move the watermark to `ts` (end of a test step, a heartbeat from a source).
    pub fn advance_to(&mut self, ts: Ts) {
        let wm = self.wm.advance_to(ts);
        if self.started_at == Ts::MIN {
            self.started_at = wm;
        }
        self.run_due(wm, true);
    }

    /// End of input: close every open window. Silence is judged only up to the newest event.
    pub fn finish(&mut self) {
        let decided = self.jumps.finish();
        self.apply(decided);
        let newest = self.wm.newest();
        if newest == Ts::MIN {
            return;
        }
        let wm = self.wm.advance_to(newest);
        self.run_due(wm, true);
        // close the windows that hold the last readings; sliding windows that would only see
        // data leave (ending after the last step past the newest reading) are not evaluated
        for ri in 0..self.rules.len() {
            self.close_windows(ri, |w, out| w.flush(newest, out));
        }
        self.next_due = Ts::MAX;
    }

    /// Close a rule's windows with `close` and evaluate each; returns when the rule is next due
    /// (`None` for rules without windows).
    pub(super) fn close_windows(
        &mut self,
        ri: usize,
        close: impl FnOnce(&mut Windows, &mut Vec<Closed>),
    ) -> Option<Ts> {
        let mut w = self.rules[ri].windows.take()?;
        let mut closed = std::mem::take(&mut self.scratch);
        close(&mut w, &mut closed);
        self.stats.windows_closed += closed.len() as u64;
        for c in closed.drain(..) {
            self.evaluate(ri, c);
        }
        self.scratch = closed;
        let due = w.next_due();
        self.rules[ri].windows = Some(w);
        Some(due)
    }

    pub(super) fn run_due(&mut self, wm: Ts, absence: bool) {
        let lateness = self.config.settings.allowed_lateness;
        let close_at = wm.saturating_sub(lateness);
        let mut next = Ts::MAX;
        for ri in 0..self.rules.len() {
            if let Some(due) = self.close_windows(ri, |w, out| w.close_until(close_at, out)) {
                next = next.min(due.saturating_add(lateness));
            } else if absence && wm != Ts::MAX {
                next = next.min(self.check_absence(ri, wm));
            }
        }
        self.next_due = next;
    }

    pub(super) fn evaluate(&mut self, ri: usize, c: Closed) {
        let rule: &Rule = &self.config.rules[ri];
        let Body::Threshold {
            conds,
            combine,
            per_day,
            ..
        } = &rule.body
        else {
            return;
        };
        let site = match rule.key {
            KeyBy::Device => self.dev[c.key as usize].site,
            KeyBy::Site => c.key,
        };
        let tz = self.config.settings.timezone;
        let in_hours = in_active_hours(rule, c.start, tz);
        let rt = &mut self.rules[ri];
        // most windows of most series meet no condition and have no state: no map insert then
        let existing = rt.alerts.get(&c.key);
        let needs_state = per_day.is_some() || existing.is_some();
        let current = existing.and_then(|s| s.current_level());
        let mut evals = std::mem::take(&mut self.eval_scratch);
        evals.clear();
        let mut day_state: Option<(i64, u32)> = None;
        for (ci, cond) in conds.iter().enumerate() {
            let raw = c.accs.get(ci).get(cond.aggregate);
            let mut v = raw;
            let Some(thr) = cond.thresholds.get(&site) else {
                evals.push(CondEval {
                    raw,
                    v,
                    thr: f64::NAN,
                    level: None,
                });
                continue;
            };
            let mut inclusive = false;
            if let Some(pd) = per_day {
                let day = local_day(c.start, tz);
                let exceeded = pd.exceeds.get(&site).is_some_and(|&x| match pd.direction {
                    Direction::Above => v > x,
                    Direction::Below => v < x,
                });
                let prev = rt
                    .alerts
                    .get(&c.key)
                    .and_then(|s| s.day)
                    .filter(|d| d.0 == day);
                let mut entry = prev.unwrap_or((day, 0));
                if exceeded && in_hours {
                    entry.1 += 1;
                }
                day_state = Some(entry);
                v = entry.1 as f64;
                inclusive = true;
            }
            let dir = if per_day.is_some() {
                Direction::Above
            } else {
                cond.direction
            };
            let lvl = if in_hours && !v.is_nan() {
                level_of(v, thr, dir, current, rule.hysteresis, inclusive)
            } else {
                None
            };
            let shown = lvl
                .map(|l| thr[l.index()])
                .unwrap_or_else(|| first_threshold(thr));
            evals.push(CondEval {
                raw,
                v,
                thr: shown,
                level: lvl.map(|l| if cond.gate { rule.level } else { l }),
            });
        }
        let observed = combined_level(*combine, conds, &evals, rule.level);
        if observed.is_none() && !needs_state {
            self.eval_scratch = evals;
            return;
        }
        // the condition that decided the level speaks for the warning
        let decisive = decisive_condition(*combine, conds, &evals);
        let main = evals
            .get(decisive)
            .map(|e| (e.v, e.thr))
            .unwrap_or((f64::NAN, f64::NAN));
        let state = rt.alerts.entry(c.key).or_default();
        if day_state.is_some() {
            state.day = day_state;
        }
        // conditions are measured from the start of the newest step of the window
        let since = c.start.max(c.end - rt.timing.continuity);
        let step = state.step(&rt.timing, since, c.end, observed);
        if state.is_idle() {
            rt.alerts.remove(&c.key);
        }
        let subj = subject(rule.key, c.key);
        if let Some(level) = observed {
            if self.collect_exceedances {
                self.exceedances.push(Exceedance {
                    rule: ri,
                    subject: subj,
                    start: c.start,
                    end: c.end,
                    level,
                    accs: c.accs.clone(),
                });
            }
        }
        if let Some(step) = step {
            let a0 = c.accs.get(decisive);
            let devices = contributing_devices(rule.key, &c);
            let values = evals.iter().map(|e| e.raw).collect();
            self.record(Transition {
                rule: ri,
                subject: subj,
                site,
                value: main.0,
                threshold: main.1,
                values,
                evidence: Some(WindowEvidence {
                    count: a0.count,
                    min: a0.min,
                    max: a0.max,
                    avg: a0.get(Agg::Avg),
                    last: a0.last(),
                }),
                window: (c.start, c.end),
                at: c.end,
                devices,
                step,
            });
        }
        self.eval_scratch = evals;
    }

    pub(super) fn record(&mut self, t: Transition) {
        self.stats.transitions += 1;
        if matches!(
            t.step.kind,
            TransitionKind::Raise | TransitionKind::Escalate
        ) {
            self.stats.raised_by_level[t.step.level.index()] += 1;
        }
        self.transitions.push(t);
    }

    /// Raise offline warnings for watched devices silent past the limit; returns the next due time.
    pub(super) fn check_absence(&mut self, ri: usize, wm: Ts) -> Ts {
        let Body::Absence { after, .. } = self.config.rules[ri].body else {
            return Ts::MAX;
        };
        let level = self.config.rules[ri].level;
        if let Some((from, to)) = self.config.rules[ri].active {
            // outside its hours an absence rule raises nothing; look again in a minute
            let m = local_minute_of_day(wm, self.config.settings.timezone);
            let inside = if from < to {
                m >= from && m < to
            } else {
                m >= from || m < to
            };
            if !inside {
                return wm.saturating_add(60_000);
            }
        }
        let mut next = Ts::MAX;
        let mut raised = Vec::new();
        let rt = &mut self.rules[ri];
        for &d in &rt.watched {
            let site = self.dev[d as usize].site;
            if self
                .owned
                .as_ref()
                .is_some_and(|o| !o.get(site as usize).copied().unwrap_or(false))
            {
                continue;
            }
            let seen = self.dev[d as usize].last_seen;
            if seen == Ts::MIN && !self.config.settings.watch_unseen_devices {
                continue;
            }
            let since = if seen == Ts::MIN {
                self.started_at
            } else {
                seen
            };
            if since == Ts::MIN {
                continue;
            }
            let due = since.saturating_add(after);
            if rt.alerts.get(&d).is_some_and(|s| s.firing.is_some()) {
                continue;
            }
            if wm >= due {
                let st = rt.alerts.entry(d).or_default();
                self.dev[d as usize].offline += 1;
                st.firing = Some(alert::Firing {
                    episode_start: since,
                    level,
                    raised_at: due,
                    seq: 0,
                });
                raised.push((d, since, due));
            } else {
                next = next.min(due);
            }
        }
        for (d, since, due) in raised {
            let site = self.config.registry.devices[d as usize].site;
            self.record(Transition {
                rule: ri,
                subject: Subject::Device(d),
                site,
                step: Step {
                    kind: TransitionKind::Raise,
                    level,
                    previous: None,
                    episode_start: since,
                    raised_at: due,
                    seq: 0,
                    reopened: false,
                },
                value: ((due - since) / 60_000) as f64,
                threshold: (after / 60_000) as f64,
                values: Vec::new(),
                evidence: None,
                window: (since, due),
                at: due,
                devices: vec![d],
            });
        }
        next
    }

    /// A reading from `dev` arrived: clear its offline warnings.
    pub(super) fn device_back(&mut self, dev: u32, ts: Ts) {
        for ri in 0..self.rules.len() {
            if self.rules[ri].watched.is_empty() || !self.rules[ri].alerts.contains_key(&dev) {
                continue;
            }
            let Some(st) = self.rules[ri].alerts.remove(&dev) else {
                continue;
            };
            let Some(f) = st.firing else { continue };
            self.dev[dev as usize].offline = self.dev[dev as usize].offline.saturating_sub(1);
            let site = self.config.registry.devices[dev as usize].site;
            self.record(Transition {
                rule: ri,
                subject: Subject::Device(dev),
                site,
                step: Step {
                    kind: TransitionKind::Clear,
                    level: f.level,
                    previous: Some(f.level),
                    episode_start: f.episode_start,
                    raised_at: f.raised_at,
                    seq: 1,
                    reopened: false,
                },
                value: ((ts - f.episode_start) / 60_000) as f64,
                threshold: f64::NAN,
                values: Vec::new(),
                evidence: None,
                window: (f.episode_start, ts),
                at: ts,
                devices: vec![dev],
            });
            // a reading is due again within the limit
            self.next_due = self.next_due.min(ts);
        }
    }

    /// Resume a warning that was firing when the service stopped (from the store), so that the
    /// same episode keeps its id and its transitions continue its sequence instead of raising a
    /// second warning. Returns false when the rule or subject no longer exists.
    pub fn resume(
        &mut self,
        rule: &str,
        subject: &str,
        level: Level,
        seq: u32,
        episode_start: Ts,
        raised_at: Ts,
    ) -> bool {
        let Some(ri) = self.config.rules.iter().position(|r| r.id == rule) else {
            return false;
        };
        let absence = matches!(self.config.rules[ri].body, Body::Absence { .. });
        let key = if absence || self.config.rules[ri].key == KeyBy::Device {
            self.config.registry.device(subject)
        } else {
            self.config.registry.site(subject)
        };
        let Some(key) = key else { return false };
        if absence && !self.rules[ri].watched.contains(&key) {
            return false;
        }
        let st = self.rules[ri].alerts.entry(key).or_default();
        if st.firing.is_some() {
            return true;
        }
        st.firing = Some(alert::Firing {
            episode_start,
            level,
            raised_at,
            seq,
        });
        if absence {
            self.dev[key as usize].offline += 1;
        }
        true
    }
}

/// The level a value reaches. While firing at `current`, levels up to it use the threshold less
/// the hysteresis, so a value hovering at a threshold does not flap.
pub fn level_of(
    v: f64,
    t: &LevelThresholds,
    dir: Direction,
    current: Option<Level>,
    h: Hysteresis,
    inclusive: bool,
) -> Option<Level> {
    for level in Level::ALL.iter().rev() {
        let thr = t[level.index()];
        if thr.is_nan() {
            continue;
        }
        let hyst = if current.is_some_and(|c| *level <= c) {
            match h {
                Hysteresis::Abs(a) => a,
                Hysteresis::Frac(f) => (thr * f).abs(),
            }
        } else {
            0.0
        };
        let hit = match (dir, inclusive) {
            (Direction::Above, false) => v > thr - hyst,
            (Direction::Above, true) => v >= thr - hyst,
            (Direction::Below, false) => v < thr + hyst,
            (Direction::Below, true) => v <= thr + hyst,
        };
        if hit {
            return Some(*level);
        }
    }
    None
}

/// Whether a window starting at `start` falls in the rule's active hours (`active: 22:00-06:00`
/// wraps midnight).
fn in_active_hours(rule: &Rule, start: Ts, tz: chrono_tz::Tz) -> bool {
    rule.active.is_none_or(|(from, to)| {
        let m = local_minute_of_day(start, tz);
        if from < to {
            m >= from && m < to
        } else {
            m >= from || m < to
        }
    })
}

/// The level the conditions reach together: `all` the lowest of the non-gate conditions (the
/// rule's level when only gates), if every one holds; `any` the highest.
fn combined_level(
    combine: Combine,
    conds: &[crate::config::rules::Condition],
    evals: &[CondEval],
    rule_level: Level,
) -> Option<Level> {
    match combine {
        Combine::All => {
            if evals.iter().all(|e| e.level.is_some()) {
                conds
                    .iter()
                    .zip(evals.iter())
                    .filter(|(c, _)| !c.gate)
                    .filter_map(|(_, e)| e.level)
                    .min()
                    .or(Some(rule_level))
            } else {
                None
            }
        }
        Combine::Any => evals.iter().filter_map(|e| e.level).max(),
    }
}

/// The condition that decided the level, which speaks for the warning.
fn decisive_condition(
    combine: Combine,
    conds: &[crate::config::rules::Condition],
    evals: &[CondEval],
) -> usize {
    match combine {
        Combine::Any => (0..evals.len()).max_by_key(|&i| (evals[i].level, std::cmp::Reverse(i))),
        Combine::All => (0..evals.len())
            .filter(|&i| !conds[i].gate)
            .min_by_key(|&i| (evals[i].level, i)),
    }
    .unwrap_or(0)
}

/// The devices a window's readings came from: the device itself, or a site's contributors.
fn contributing_devices(key: KeyBy, c: &Closed) -> Vec<u32> {
    match key {
        KeyBy::Device => vec![c.key],
        KeyBy::Site => {
            let mut d: Vec<u32> = (0..c.accs.len())
                .flat_map(|i| c.accs.get(i).devices().to_vec())
                .collect();
            d.sort_unstable();
            d.dedup();
            d
        }
    }
}
