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
    fn key_site(&self, ri: usize, key: u32) -> u32 {
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

    /// Take over the state another engine exported (under the same fingerprint). Returns the
    /// number of open windows dropped because this engine had already made their time final.
    pub fn import_sites(&mut self, st: SitesState) -> usize {
        let mut dropped = 0;
        for (ri, rs) in st.rules.into_iter().enumerate().take(self.rules.len()) {
            if let Some(w) = self.rules[ri].windows.as_mut() {
                dropped += w.import(rs.open);
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

    /// Names the rules, sites, devices and settings the state depends on.
    pub fn fingerprint(&self) -> String {
        let c = &self.config;
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
