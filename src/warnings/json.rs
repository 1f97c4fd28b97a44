//! The warning document as a JSON line, fast: exactly the bytes
//! `serde_json::to_writer(out, &render(engine, t))` writes, without building the document.
//!
//! A replay writes one document per transition (150,000 for the 10 M-reading peer workload), and
//! most of each is the same for every warning of its rule and site: those parts (the site object,
//! departments, titles, the `values` keys, the window description, the levels) are serialised
//! once, by serde_json, and copied (departments once per rule, site and level, as routes.yaml
//! resolves them); what changes (id, times, numbers, message, subject, devices)
//! is written into the line, every string and number still by serde_json. The tests hold it to
//! the serde path byte for byte, so the derive on [`super::WarningEvent`] stays the definition.

use super::{messages, num, route, status, value_keys, warning_id_bytes, SiteRef};
use crate::config::Config;
use crate::engine::{Engine, Transition};
use crate::event::Level;
use crate::event::TransitionKind;
use crate::time::{format_ts, Ts};
use chrono_tz::Tz;
use std::sync::Arc;

/// Encodes transitions of one engine's configuration (a new configuration resets the caches).
#[derive(Default)]
pub struct Encoder {
    /// The configuration the cached parts were taken from.
    config: Option<Arc<Config>>,
    rules: Vec<Option<RuleParts>>,
    sites: Vec<Option<SiteParts>>,
    /// `,"departments":[…]` by (rule, site, level), as routes.yaml resolves them.
    departments: rustc_hash::FxHashMap<(usize, u32, Level), Vec<u8>>,
    /// `"blue"` .. `"red"`, and `"raise"` .. `"clear"`, as serde writes them.
    levels: Vec<Vec<u8>>,
    kinds: Vec<Vec<u8>>,
    /// Recently written timestamps (a warning's are mostly its window's, shared by every
    /// warning of that window close).
    times: Times,
}

/// A rule's constant parts.
struct RuleParts {
    /// `,"rule":"…"`
    rule: Vec<u8>,
    /// `,"title":"…"` and `,"title_en":"…"` when the rule has one.
    title: Vec<u8>,
    /// `values` in document order: (`"metric.aggregate":`, the condition it reports).
    values: Vec<(Vec<u8>, usize)>,
    /// `,"evidence":{"window":"…"`
    evidence: Vec<u8>,
}

/// A site's constant parts.
struct SiteParts {
    /// `,"site":{…}`
    site: Vec<u8>,
}

const TIME_SLOTS: usize = 8;

impl Encoder {
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// Append the document of `t` to `out` (no newline).
    pub fn encode(
        &mut self,
        engine: &Engine,
        t: &Transition,
        out: &mut Vec<u8>,
    ) -> Result<(), serde_json::Error> {
        let cfg = &engine.config;
        self.prepare(cfg, t)?;
        let Encoder {
            rules,
            sites,
            departments,
            levels,
            kinds,
            times,
            ..
        } = self;
        let (Some(Some(rp)), Some(Some(sp))) = (rules.get(t.rule), sites.get(t.site as usize))
        else {
            // `prepare` fills both for any rule and site of the configuration
            return Err(serde::ser::Error::custom(format!(
                "transition of rule {} at site {} is outside the configuration",
                t.rule, t.site
            )));
        };
        let rule = &cfg.rules[t.rule];
        let tz = cfg.settings.timezone;
        let subject = engine.subject_id(t.subject);
        let step = &t.step;
        out.extend_from_slice(b"{\"id\":\"");
        out.extend_from_slice(&warning_id_bytes(&rule.id, subject, step.episode_start));
        out.push(b'"');
        out.extend_from_slice(&rp.rule);
        out.extend_from_slice(b",\"transition\":");
        out.extend_from_slice(&kinds[kind_index(step.kind)]);
        out.extend_from_slice(b",\"level\":");
        out.extend_from_slice(&levels[step.level.index()]);
        if let Some(p) = step.previous {
            out.extend_from_slice(b",\"previous_level\":");
            out.extend_from_slice(&levels[p.index()]);
        }
        out.extend_from_slice(b",\"seq\":");
        serde_json::to_writer(&mut *out, &step.seq)?;
        if step.reopened {
            out.extend_from_slice(b",\"reopened\":true");
        }
        out.extend_from_slice(&sp.site);
        out.extend_from_slice(b",\"subject\":");
        serde_json::to_writer(&mut *out, subject)?;
        let to = match departments.entry((t.rule, t.site, step.level)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let r = route(cfg, t.rule, t.site, step.level);
                e.insert(field(b",\"departments\":", &r.departments)?)
            }
        };
        out.extend_from_slice(to);
        out.extend_from_slice(&rp.title);
        let (message, message_en) = messages(engine, t);
        out.extend_from_slice(b",\"message\":");
        serde_json::to_writer(&mut *out, &message)?;
        if let Some(en) = &message_en {
            out.extend_from_slice(b",\"message_en\":");
            serde_json::to_writer(&mut *out, en)?;
        }
        out.extend_from_slice(b",\"value\":");
        serde_json::to_writer(&mut *out, &num(t.value))?;
        if !rp.values.is_empty() {
            out.extend_from_slice(b",\"values\":{");
            for (k, (key, i)) in rp.values.iter().enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(key);
                let v = t.values.get(*i).copied().unwrap_or(f64::NAN);
                serde_json::to_writer(&mut *out, &num(v))?;
            }
            out.push(b'}');
        }
        out.extend_from_slice(b",\"threshold\":");
        serde_json::to_writer(&mut *out, &num(t.threshold))?;
        out.extend_from_slice(b",\"window\":{\"start\":");
        time(times, t.window.0, tz, out)?;
        out.extend_from_slice(b",\"end\":");
        time(times, t.window.1, tz, out)?;
        out.extend_from_slice(b"},\"at\":");
        time(times, t.at, tz, out)?;
        out.extend_from_slice(b",\"raised_at\":");
        time(times, step.raised_at, tz, out)?;
        out.extend_from_slice(&rp.evidence);
        if let Some(e) = &t.evidence {
            out.extend_from_slice(b",\"aggregates\":{\"avg\":");
            serde_json::to_writer(&mut *out, &num(e.avg))?;
            out.extend_from_slice(b",\"count\":");
            serde_json::to_writer(&mut *out, &e.count)?;
            if let Some(last) = num(e.last) {
                out.extend_from_slice(b",\"last\":");
                serde_json::to_writer(&mut *out, &last)?;
            }
            out.extend_from_slice(b",\"max\":");
            serde_json::to_writer(&mut *out, &num(e.max))?;
            out.extend_from_slice(b",\"min\":");
            serde_json::to_writer(&mut *out, &num(e.min))?;
            out.push(b'}');
        }
        out.extend_from_slice(b",\"devices\":[");
        for (k, d) in t.devices.iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            let id = cfg.registry.devices[*d as usize].id.as_str();
            serde_json::to_writer(&mut *out, id)?;
        }
        out.extend_from_slice(b"]},\"status\":");
        serde_json::to_writer(&mut *out, status(step.kind))?;
        out.push(b'}');
        Ok(())
    }

    /// Make sure the parts of `t`'s rule and site are cached for this configuration.
    fn prepare(&mut self, cfg: &Arc<Config>, t: &Transition) -> Result<(), serde_json::Error> {
        if !self.config.as_ref().is_some_and(|c| Arc::ptr_eq(c, cfg)) {
            *self = Encoder {
                config: Some(cfg.clone()),
                rules: Vec::new(),
                sites: Vec::new(),
                departments: Default::default(),
                levels: Level::ALL
                    .iter()
                    .map(serde_json::to_vec)
                    .collect::<Result<_, _>>()?,
                kinds: KINDS
                    .iter()
                    .map(serde_json::to_vec)
                    .collect::<Result<_, _>>()?,
                times: Times {
                    slots: (0..TIME_SLOTS).map(|_| (Ts::MIN, Vec::new())).collect(),
                    next: 0,
                },
            };
            self.rules.resize_with(cfg.rules.len(), || None);
            self.sites.resize_with(cfg.registry.sites.len(), || None);
        }
        if let (Some(slot @ None), Some(rule)) = (self.rules.get_mut(t.rule), cfg.rules.get(t.rule))
        {
            let mut title = b",\"title\":".to_vec();
            serde_json::to_writer(&mut title, &rule.title)?;
            if let Some(en) = &rule.title_en {
                title.extend_from_slice(b",\"title_en\":");
                serde_json::to_writer(&mut title, en)?;
            }
            let mut evidence = b",\"evidence\":{\"window\":".to_vec();
            serde_json::to_writer(&mut evidence, &rule.window_desc)?;
            *slot = Some(RuleParts {
                rule: field(b",\"rule\":", &rule.id)?,
                title,
                values: value_keys(rule)
                    .into_iter()
                    .map(|(k, i)| {
                        let mut key = serde_json::to_vec(&k)?;
                        key.push(b':');
                        Ok((key, i))
                    })
                    .collect::<Result<_, serde_json::Error>>()?,
                evidence,
            });
        }
        let i = t.site as usize;
        if let (Some(slot @ None), Some(site)) = (self.sites.get_mut(i), cfg.registry.sites.get(i))
        {
            let site_ref = SiteRef {
                id: &site.id,
                name: &site.name,
                kind: site.kind.as_str(),
            };
            *slot = Some(SiteParts {
                site: field(b",\"site\":", &site_ref)?,
            });
        }
        Ok(())
    }
}

const KINDS: [TransitionKind; 4] = [
    TransitionKind::Raise,
    TransitionKind::Escalate,
    TransitionKind::DeEscalate,
    TransitionKind::Clear,
];

fn kind_index(k: TransitionKind) -> usize {
    match k {
        TransitionKind::Raise => 0,
        TransitionKind::Escalate => 1,
        TransitionKind::DeEscalate => 2,
        TransitionKind::Clear => 3,
    }
}

/// `prefix` then `value` as JSON.
fn field<T: serde::Serialize + ?Sized>(
    prefix: &[u8],
    value: &T,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut v = prefix.to_vec();
    serde_json::to_writer(&mut v, value)?;
    Ok(v)
}

/// A timestamp as a JSON string, from the cache when it was written lately (the slots are
/// searched in turn and refilled round-robin: start, end and raise time of one window close all
/// stay).
fn time(times: &mut Times, ts: Ts, tz: Tz, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let slot = match times
        .slots
        .iter()
        .position(|(at, b)| *at == ts && !b.is_empty())
    {
        Some(i) => i,
        None => {
            let i = times.next;
            times.next = (i + 1) % times.slots.len();
            let (at, bytes) = &mut times.slots[i];
            bytes.clear();
            serde_json::to_writer(&mut *bytes, &format_ts(ts, tz))?;
            *at = ts;
            i
        }
    };
    out.extend_from_slice(&times.slots[slot].1);
    Ok(())
}

/// Recently written timestamps: (time, its JSON string).
#[derive(Default)]
struct Times {
    slots: Vec<(Ts, Vec<u8>)>,
    next: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::WindowEvidence;
    use proptest::prelude::*;
    use std::path::Path;

    /// The sample configuration's engine after the sample day, and every transition it made.
    fn sample_transitions() -> (Engine, Vec<Transition>) {
        let cfg =
            Arc::new(Config::load(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("sample config"));
        let day = crate::sim::sample_day(&cfg);
        let mut engine = Engine::new(cfg);
        let src = engine.source("sim");
        let mut all = Vec::new();
        for r in &day {
            let _ = engine.push(&r.as_input(src));
            all.append(&mut engine.transitions);
        }
        engine.finish();
        all.append(&mut engine.transitions);
        (engine, all)
    }

    fn by_serde(engine: &Engine, t: &Transition) -> String {
        serde_json::to_string(&super::super::render(engine, t)).expect("serialises")
    }

    fn by_encoder(enc: &mut Encoder, engine: &Engine, t: &Transition) -> String {
        let mut out = Vec::new();
        enc.encode(engine, t, &mut out).expect("encodes");
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn the_sample_days_warnings_are_what_serde_writes() {
        let (engine, all) = sample_transitions();
        let mut enc = Encoder::new();
        let mut kinds = [0usize; 4];
        let (mut english, mut site_keyed, mut absence, mut several_values) = (0, 0, 0, 0);
        for t in &all {
            assert_eq!(by_encoder(&mut enc, &engine, t), by_serde(&engine, t));
            kinds[kind_index(t.step.kind)] += 1;
            english += usize::from(engine.config.rules[t.rule].message_en.is_some());
            site_keyed += usize::from(t.devices.len() > 1);
            absence += usize::from(t.evidence.is_none());
            several_values += usize::from(t.values.len() > 1);
        }
        // the sample day exercises every part of the document
        assert!(kinds.iter().all(|&n| n > 0), "transition kinds {kinds:?}");
        assert!(english > 0 && site_keyed > 0 && absence > 0 && several_values > 0);
    }

    fn float() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(-0.0),
            (-1e6..1e6f64),
            (0..100_000i64).prop_map(|v| v as f64 / 100.0),
        ]
    }

    fn time_strategy() -> impl Strategy<Value = Ts> {
        prop_oneof![
            // beyond the years 0000-9999 as well (chrono's path)
            (-1_000_000_000_000_000i64..1_000_000_000_000_000),
            (-62_167_219_200_000i64..253_402_300_800_000),
            (1_700_000_000i64..1_800_000_000).prop_map(|s| s * 1000),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Any numbers, times and steps in a transition of any sample rule encode as serde writes
        /// them (the cache of times and parts is shared across cases, as in a replay).
        #[test]
        fn any_transition_is_what_serde_writes(
            pick in any::<prop::sample::Index>(),
            kind in 0..4usize,
            level in 0..4usize,
            previous in proptest::option::of(0..4usize),
            seq in any::<u32>(),
            reopened in any::<bool>(),
            value in float(),
            threshold in float(),
            values in prop::collection::vec(float(), 0..4),
            times in prop::collection::vec(time_strategy(), 4),
            evidence in proptest::option::of((any::<u64>(), float(), float(), float(), float())),
            episode in any::<i64>(),
        ) {
            thread_local! {
                static SAMPLE: (Engine, Vec<Transition>) = sample_transitions();
                static ENC: std::cell::RefCell<Encoder> = std::cell::RefCell::new(Encoder::new());
            }
            SAMPLE.with(|(engine, all)| {
                let mut t = pick.get(all).clone();
                t.step.kind = KINDS[kind];
                t.step.level = Level::ALL[level];
                t.step.previous = previous.map(|p| Level::ALL[p]);
                t.step.seq = seq;
                t.step.reopened = reopened;
                t.step.episode_start = episode;
                t.value = value;
                t.threshold = threshold;
                t.values = values.clone();
                t.window = (times[0], times[1]);
                t.at = times[2];
                t.step.raised_at = times[3];
                t.evidence = evidence.map(|(count, min, max, avg, last)| WindowEvidence {
                    count, min, max, avg, last,
                });
                let fast = ENC.with(|e| by_encoder(&mut e.borrow_mut(), engine, &t));
                prop_assert_eq!(fast, by_serde(engine, &t));
                Ok(())
            })?;
        }
    }
}
