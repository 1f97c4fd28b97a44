//! Moving sites between engines. Several instances split a deployment's sites by Kafka
//! partition; when a partition moves (an instance died or joined), the window and alert state of
//! its sites moves with it: exported here, checkpointed in the shared store with the partition's
//! offset, and imported by the instance that takes the partition over.
//!
//! The state is only meaningful under the same rules and sites: [`Engine::fingerprint`] names
//! them, and a checkpoint taken under another fingerprint is not imported.

use super::alert::AlertState;
use super::window::Open;
use super::Engine;
use crate::config::rules::{Body, KeyBy, Rule};
use crate::time::Ts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The state of some sites: their open windows and warnings, and their devices' last readings.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SitesState {
    /// Per rule, by index.
    rules: Vec<RuleState>,
    /// (device, newest event time)
    devices: Vec<(u32, Ts)>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RuleState {
    open: Vec<Open>,
    /// Every window of the rule ending by this was final where the state was taken.
    final_until: Ts,
    alerts: Vec<(u32, AlertState)>,
}

impl SitesState {
    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_stdvec(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<SitesState, postcard::Error> {
        postcard::from_bytes(bytes)
    }

    /// Open windows and warnings held.
    pub fn entries(&self) -> usize {
        self.rules
            .iter()
            .map(|r| r.open.len() + r.alerts.len())
            .sum()
    }
}

impl Engine {
    /// The site a rule's key (a device or a site index) belongs to.
    pub(super) fn key_site(&self, ri: usize, key: u32) -> u32 {
        let r = &self.config.rules[ri];
        let by_device = matches!(r.body, Body::Absence { .. }) || r.key == KeyBy::Device;
        if by_device {
            self.dev.get(key as usize).map_or(u32::MAX, |d| d.site)
        } else {
            key
        }
    }

    fn picked(sites: &[bool], site: u32) -> bool {
        sites.get(site as usize).copied().unwrap_or(false)
    }

    /// The state of the sites marked in `sites` (by site index).
    pub fn export_sites(&self, sites: &[bool]) -> SitesState {
        let mut out = SitesState::default();
        for (ri, rt) in self.rules.iter().enumerate() {
            let mut st = RuleState::default();
            if let Some(w) = &rt.windows {
                let take = |series: u32| {
                    w.key_of(series)
                        .is_some_and(|k| Self::picked(sites, self.key_site(ri, k)))
                };
                w.export(&take, &mut st.open);
                st.final_until = w.final_until();
            }
            st.alerts = rt
                .alerts
                .iter()
                .filter(|(k, _)| Self::picked(sites, self.key_site(ri, **k)))
                .map(|(k, a)| (*k, a.clone()))
                .collect();
            st.alerts.sort_by_key(|(k, _)| *k);
            out.rules.push(st);
        }
        out.devices = self
            .dev
            .iter()
            .enumerate()
            .filter(|(_, d)| Self::picked(sites, d.site) && d.last_seen != Ts::MIN)
            .map(|(i, d)| (i as u32, d.last_seen))
            .collect();
        out
    }

    /// Drop the state of the sites marked in `sites` (another instance has them now).
    pub fn forget_sites(&mut self, sites: &[bool]) {
        for ri in 0..self.rules.len() {
            if let Some(mut w) = self.rules[ri].windows.take() {
                let keys: Vec<bool> = (0..)
                    .map_while(|series| w.key_of(series))
                    .map(|k| Self::picked(sites, self.key_site(ri, k)))
                    .collect();
                w.remove(&|series: u32| keys.get(series as usize).copied().unwrap_or(false));
                self.rules[ri].windows = Some(w);
            }
            let keys: Vec<u32> = self.rules[ri]
                .alerts
                .keys()
                .copied()
                .filter(|k| Self::picked(sites, self.key_site(ri, *k)))
                .collect();
            for k in keys {
                self.rules[ri].alerts.remove(&k);
            }
        }
        for d in self.dev.iter_mut() {
            if Self::picked(sites, d.site) {
                d.last_seen = Ts::MIN;
                d.offline = 0;
            }
        }
        self.next_due = Ts::MIN;
    }

    /// Take over the state another engine exported (under the same fingerprint). Windows this
    /// engine has made final already but the other had not are evaluated now (their transitions
    /// join `transitions`). Returns the number of entries that could not be placed.
    pub fn import_sites(&mut self, st: SitesState) -> usize {
        let mut dropped = 0;
        let mut due: Vec<(usize, Vec<super::window::Closed>)> = Vec::new();
        for (ri, rs) in st.rules.into_iter().enumerate().take(self.rules.len()) {
            if let Some(w) = self.rules[ri].windows.as_mut() {
                let mut closed = Vec::new();
                dropped += w.import(rs.open, rs.final_until, &mut closed);
                if !closed.is_empty() {
                    due.push((ri, closed));
                }
            }
            let absence = !self.rules[ri].watched.is_empty();
            for (k, a) in rs.alerts {
                if absence && a.firing.is_some() {
                    if let Some(d) = self.dev.get_mut(k as usize) {
                        d.offline += 1;
                    }
                }
                self.rules[ri].alerts.insert(k, a);
            }
        }
        for (i, seen) in st.devices {
            if let Some(d) = self.dev.get_mut(i as usize) {
                d.last_seen = d.last_seen.max(seen);
            }
        }
        // with the warnings in place, the windows that are final here
        for (ri, closed) in due {
            self.stats.windows_closed += closed.len() as u64;
            for c in closed {
                self.evaluate(ri, c);
            }
        }
        self.stats.handover_dropped += dropped as u64;
        self.next_due = Ts::MIN;
        dropped
    }

    /// Judge silence (absence rules) only for these sites (by site index); `None`: all of them.
    pub fn set_owned(&mut self, owned: Option<Vec<bool>>) {
        self.owned = owned;
    }

    /// Whether this engine is in charge of a site.
    pub fn owns(&self, site: u32) -> bool {
        self.owned.as_ref().is_none_or(|o| Self::picked(o, site))
    }

    /// Names the rules, sites, devices and settings the state depends on (computed once per
    /// configuration: every checkpoint carries it).
    pub fn fingerprint(&self) -> String {
        self.fingerprint
            .get_or_init(|| Self::fingerprint_of(&self.config))
            .clone()
    }

    fn fingerprint_of(c: &crate::config::Config) -> String {
        let rules: Vec<Rule> = c
            .rules
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.file = Arc::from("");
                r.pos = Default::default();
                r
            })
            .collect();
        let text = format!(
            "{rules:?}{:?}{:?}{:?}",
            c.registry.sites, c.registry.devices, c.settings
        );
        let digest = Sha256::digest(text.as_bytes());
        digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, EngineSettings};
    use crate::engine::Input;

    const SITES: &str = "sites:
  - {id: s1, name: 一号, kind: construction, department: zjj, devices: [{id: a, metrics: [pm10]}]}
  - {id: s2, name: 二号, kind: construction, department: zjj, devices: [{id: b, metrics: [pm10]}]}
";
    const RULES: &str = "rules:
  - {id: avg, title: t, metric: pm10, window: {type: tumbling, size: 1m}, aggregate: avg, above: {yellow: 50, red: 80}, message: x}
  - {id: peak, title: t, metric: pm10, window: {type: sliding, size: 3m, step: 1m}, aggregate: p90, above: {orange: 90}, for: 2m, message: x}
  - {id: quiet, title: t, metric: pm10, window: {type: session, gap: 90s}, aggregate: count, above: {blue: 20}, message: x}
";
    const T0: Ts = 1_795_795_200_000;

    fn engine() -> Engine {
        let settings = EngineSettings {
            out_of_orderness: 0,
            ..EngineSettings::default()
        };
        let cfg = Config::from_texts(SITES, &[("r.yaml", RULES)], settings)
            .unwrap_or_else(|e| panic!("{e:?}"));
        Engine::new(Arc::new(cfg))
    }

    /// Readings every 10 s for 20 minutes: site s1 loud in minutes 3-8, s2 in minutes 6-14.
    fn readings() -> Vec<(&'static str, Ts, f64)> {
        let mut out = Vec::new();
        for i in 0..120 {
            let ts = T0 + i * 10_000;
            let minute = i / 6;
            let a = if (3..9).contains(&minute) { 95.0 } else { 30.0 };
            let b = if (6..15).contains(&minute) {
                85.0 + (i % 3) as f64 * 5.0
            } else {
                20.0
            };
            out.push(("a", ts, a));
            out.push(("b", ts, b));
        }
        out
    }

    fn push(e: &mut Engine, src: usize, dev: &str, ts: Ts, v: f64) {
        e.push(&Input {
            site: None,
            device: dev,
            metric: "pm10",
            value: v,
            ts,
            arrival: ts,
            source: src,
        })
        .unwrap_or_else(|r| panic!("{dev} at {ts}: {r:?}"));
    }

    type Seen = (String, String, String, String, u32, Ts);

    fn drain(e: &mut Engine, out: &mut Vec<Seen>) {
        for t in e.transitions.drain(..).collect::<Vec<_>>() {
            out.push((
                e.config.rules[t.rule].id.clone(),
                e.subject_id(t.subject).to_string(),
                t.step.kind.as_str().to_string(),
                t.step.level.as_str().to_string(),
                t.step.seq,
                t.step.episode_start,
            ));
        }
    }

    /// What one engine that sees everything raises.
    fn in_one_engine() -> Vec<Seen> {
        let mut one = engine();
        let src = one.source("kafka");
        let mut seen = Vec::new();
        for (dev, ts, v) in readings() {
            push(&mut one, src, dev, ts, v);
            drain(&mut one, &mut seen);
        }
        one.finish();
        drain(&mut one, &mut seen);
        seen
    }

    /// After s2 moved from `a` to `b`: each takes its own site's readings, then the end.
    fn after_the_move(
        a: &mut Engine,
        b: &mut Engine,
        rest: &[(&str, Ts, f64)],
        got: &mut Vec<Seen>,
    ) {
        let (sa, sb) = (a.source("kafka"), b.source("kafka"));
        for &(dev, ts, v) in rest {
            let (e, s) = if dev == "a" {
                (&mut *a, sa)
            } else {
                (&mut *b, sb)
            };
            push(e, s, dev, ts, v);
            drain(e, got);
        }
        for e in [a, b] {
            e.finish();
            drain(e, got);
        }
    }

    #[test]
    fn a_site_moved_mid_stream_raises_what_it_would_have_raised_in_place() {
        let mut expected = in_one_engine();

        // two: halfway (inside s2's loud spell, a warning firing, windows open) s2 moves over
        let mut a = engine();
        let mut b = engine();
        let sa = a.source("kafka");
        let s2 = [false, true];
        let mut got = Vec::new();
        let all = readings();
        let half = all.len() / 2 + 7;
        for &(dev, ts, v) in &all[..half] {
            push(&mut a, sa, dev, ts, v);
            drain(&mut a, &mut got);
        }
        let state = a.export_sites(&s2);
        assert!(state.entries() > 0, "open windows and a warning move");
        let bytes = state.encode().expect("encode");
        a.forget_sites(&s2);
        a.set_owned(Some(vec![true, false]));
        b.set_owned(Some(s2.to_vec()));
        let dropped = b.import_sites(SitesState::decode(&bytes).expect("decode"));
        assert_eq!(dropped, 0);
        after_the_move(&mut a, &mut b, &all[half..], &mut got);
        expected.sort();
        got.sort();
        assert!(
            expected.iter().any(|t| t.1 == "b" || t.1 == "s2"),
            "s2 raised something: {expected:?}"
        );
        assert_eq!(got, expected);
    }

    #[test]
    fn windows_final_where_the_site_moves_to_are_judged_on_arrival() {
        // as in a cluster: the old owner's event time is held back (by the other instances'
        // checkpoints), the new owner's is already at the moved partition's own watermark
        let mut expected = in_one_engine();

        let (mut a, mut b) = (engine(), engine());
        let sa = a.source("kafka");
        let all = readings();
        let half = all.len() / 2 + 7;
        let mut got = Vec::new();
        for &(dev, ts, v) in &all[..half] {
            a.set_watermark_bound(ts - 150_000);
            push(&mut a, sa, dev, ts, v);
            drain(&mut a, &mut got);
        }
        let s2 = [false, true];
        let state =
            SitesState::decode(&a.export_sites(&s2).encode().expect("encode")).expect("decode");
        a.forget_sites(&s2);
        a.set_watermark_bound(Ts::MAX);
        let last = all[half - 1].1;
        b.advance_to(last);
        assert_eq!(b.import_sites(state), 0);
        assert!(
            !b.transitions.is_empty(),
            "windows the old owner still held open are judged at once"
        );
        drain(&mut b, &mut got);
        after_the_move(&mut a, &mut b, &all[half..], &mut got);
        expected.sort();
        got.sort();
        assert_eq!(got, expected);
    }

    #[test]
    fn state_taken_under_other_rules_has_another_fingerprint() {
        let e = engine();
        let settings = EngineSettings {
            out_of_orderness: 0,
            ..EngineSettings::default()
        };
        let other = Config::from_texts(SITES, &[("r.yaml", &RULES.replace("50", "55"))], settings)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_ne!(e.fingerprint(), Engine::new(Arc::new(other)).fingerprint());
        assert_eq!(e.fingerprint(), engine().fingerprint());
    }
}
