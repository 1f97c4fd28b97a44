//! The sample day: a deterministic simulation of one day of readings for every device in the
//! registry (diurnal patterns and noise by metric), with scripted incidents at the sample
//! county's sites: a dust episode, night-time construction noise, an air-pollution episode, a
//! river rising after heavy rain, a holiday crowd, and a gauge going silent. `yujing demo
//! --offline` replays it through the rules; `yujing demo` publishes the same shapes live over
//! MQTT ([`crate::service::simulate`]).

use crate::config::Config;
use crate::engine::Engine;
use crate::event::{Level, ReadingRef, TransitionKind};
use crate::time::{format_ts, Ts, HOUR, MINUTE};
use crate::warnings::render;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// 2026-11-28T00:00:00+08:00, the start of the sample day.
pub const DAY_START: Ts = 1_795_795_200_000;

/// A small deterministic generator (SplitMix64): the same day every run.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    pub(crate) fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(1e-12);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// One simulated reading.
#[derive(Clone, Debug, PartialEq)]
pub struct SimReading {
    pub ts: Ts,
    pub site: String,
    pub device: String,
    pub metric: String,
    pub value: f64,
}

impl SimReading {
    /// The reading as the engine takes it, arriving at its own time from `source`.
    pub fn as_input(&self, source: usize) -> ReadingRef<'_> {
        ReadingRef {
            site: Some(&self.site),
            device: &self.device,
            metric: &self.metric,
            value: self.value,
            ts: self.ts,
            arrival: self.ts,
            source,
        }
    }
}

pub(crate) fn hour_of(t: Ts) -> f64 {
    (t - DAY_START) as f64 / HOUR as f64
}

/// A bump that rises from 0 at `a` to 1 between `a` and `b`, holds until `c`, falls to 0 at `d`.
pub(crate) fn ramp(h: f64, a: f64, b: f64, c: f64, d: f64) -> f64 {
    if h <= a || h >= d {
        0.0
    } else if h < b {
        (h - a) / (b - a)
    } else if h <= c {
        1.0
    } else {
        (d - h) / (d - c)
    }
}

pub(crate) fn value(
    rng: &mut Rng,
    site: &str,
    params: &std::collections::BTreeMap<String, f64>,
    metric: &str,
    h: f64,
) -> Option<f64> {
    let n = rng.normal();
    let work = ramp(h, 6.5, 7.5, 17.5, 18.5);
    let v = match metric {
        "pm10" if site.starts_with("cs-") => {
            let mut v = 55.0 + 35.0 * work + 10.0 * n;
            if site == "cs-02" {
                v += 370.0 * ramp(h, 8.75, 9.25, 12.25, 12.75);
            }
            v
        }
        "tsp" => 95.0 + 60.0 * work + 15.0 * n,
        "noise" => {
            let day = ramp(h, 5.5, 6.5, 21.5, 22.0);
            let mut v = 44.0 + 14.0 * day + 6.0 * work + 2.5 * n;
            if site == "cs-03" {
                v += 17.0 * ramp(h, 22.4, 22.6, 23.8, 23.95);
                if (23.6..23.65).contains(&h) {
                    v = 73.5;
                }
            }
            if site == "cs-05" && (14.0..15.0).contains(&h) {
                v += 16.0; // piling work by day
            }
            v
        }
        "pm2_5" | "pm10" => {
            let diurnal =
                8.0 * ramp(h, 6.0, 8.0, 9.0, 11.0) + 10.0 * ramp(h, 17.0, 19.0, 21.0, 23.5);
            let mut v = 35.0 + diurnal + 4.0 * n;
            if site == "aq-02" {
                v += 220.0 * ramp(h, 2.0, 20.0, 23.0, 30.0);
            }
            if metric == "pm10" {
                v *= 1.6;
            }
            v
        }
        "so2" => 8.0 + 1.5 * n,
        "no2" => 30.0 + 8.0 * ramp(h, 6.0, 8.0, 9.0, 11.0) + 4.0 * n,
        "co" => 0.8 + 0.1 * n,
        "o3" => 60.0 + 70.0 * ramp(h, 10.0, 14.0, 16.0, 19.0) + 6.0 * n,
        "water_level" => {
            let warn = params.get("warning_level_m").copied().unwrap_or(10.0);
            let mut v = warn - 2.0 + 0.01 * n;
            if site == "rv-01" {
                v += 2.3 * ramp(h, 5.0, 11.0, 13.0, 30.0);
            }
            v
        }
        "rainfall" => {
            // per 5 minutes, mm
            let mut v = (0.05 * n).max(0.0);
            if site == "rv-01" {
                v += 3.0 * ramp(h, 3.5, 4.0, 8.0, 8.5);
            }
            v
        }
        "visitors" => {
            let cap = params.get("capacity").copied().unwrap_or(1000.0);
            let open = ramp(h, 7.5, 11.0, 14.5, 18.0);
            let mut share = 0.45 * open;
            if site == "sa-01" {
                share = 0.93 * ramp(h, 7.5, 11.0, 13.5, 17.0);
            }
            (cap * share * (1.0 + 0.02 * n)).round()
        }
        _ => 50.0 + 5.0 * n,
    };
    // the West Creek gauge goes silent in the early afternoon
    if site == "rv-03" && metric == "water_level" && (13.0..15.0).contains(&h) {
        return None;
    }
    Some(match metric {
        "visitors" | "water_level" | "co" => v.max(0.0),
        "noise" => (v * 10.0).round() / 10.0,
        _ => (v.max(0.0) * 10.0).round() / 10.0,
    })
}

/// The readings of the sample day for every device of every site, in event-time order.
pub fn sample_day(config: &Config) -> Vec<SimReading> {
    let mut rng = Rng(0x5EED_2026_1128);
    let mut out = Vec::new();
    for site in &config.registry.sites {
        // the Beijing reference stations replay real data instead
        if site.id.starts_with("bj-") {
            continue;
        }
        for &d in &site.devices {
            let dev = &config.registry.devices[d as usize];
            // cameras are simulated live only (service::simulate)
            if dev.is_camera() || dev.is_hotline() {
                continue;
            }
            // model outputs are computed from the readings, not measured
            for metric in dev.metrics.iter().filter(|m| !config.is_model_output(m)) {
                let step = match metric.as_str() {
                    "rainfall" => 5 * MINUTE,
                    _ if site.kind == crate::config::sites::SiteKind::Environment => 5 * MINUTE,
                    _ => MINUTE,
                };
                let mut t = DAY_START;
                while t < DAY_START + 24 * HOUR {
                    if let Some(v) = value(&mut rng, &site.id, &site.params, metric, hour_of(t)) {
                        out.push(SimReading {
                            ts: t,
                            site: site.id.clone(),
                            device: dev.id.clone(),
                            metric: metric.clone(),
                            value: v,
                        });
                    }
                    t += step;
                }
            }
        }
    }
    out.sort_by(|a, b| {
        a.ts.cmp(&b.ts)
            .then_with(|| a.device.cmp(&b.device))
            .then_with(|| a.metric.cmp(&b.metric))
    });
    out
}

/// `yujing demo`: the sample day through the rules, warnings printed as they happen.
pub fn demo(
    config: Arc<Config>,
    write_day: Option<&Path>,
    en: bool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let day = sample_day(&config);
    if let Some(p) = write_day {
        let mut w = std::io::BufWriter::new(std::fs::File::create(p)?);
        writeln!(w, "ts,site,device,metric,value")?;
        for r in &day {
            writeln!(
                w,
                "{},{},{},{},{}",
                r.ts, r.site, r.device, r.metric, r.value
            )?;
        }
        w.flush()?;
    }
    let tz = config.settings.timezone;
    writeln!(
        out,
        "yujing demo: {} readings from {} sites on {} (simulated), {} rules",
        day.len(),
        config.registry.sites.len(),
        &format_ts(DAY_START, tz)[..10],
        config.rules.len()
    )?;
    writeln!(out)?;
    let mut engine = Engine::new(config.clone());
    let src = engine.source("sim");
    let mut by_level = [0u64; 4];
    let mut print = |engine: &mut Engine, out: &mut dyn Write| -> std::io::Result<()> {
        for t in std::mem::take(&mut engine.transitions) {
            let w = render(engine, &t);
            if matches!(
                w.transition,
                TransitionKind::Raise | TransitionKind::Escalate
            ) {
                by_level[w.level.index()] += 1;
            }
            let time = &w.at[11..16];
            if en {
                writeln!(
                    out,
                    "{time}  [{:<6}] {:<11} {}",
                    w.level.as_str(),
                    w.transition.as_str(),
                    w.message_en.as_deref().unwrap_or(&w.message)
                )?;
            } else {
                writeln!(
                    out,
                    "{time}  【{}】{}  {}",
                    w.level.zh(),
                    TransitionKind::zh(w.transition),
                    w.message
                )?;
            }
        }
        Ok(())
    };
    for r in &day {
        let _ = engine.push(&r.as_input(src));
        if !engine.transitions.is_empty() {
            print(&mut engine, out)?;
        }
    }
    engine.finish();
    print(&mut engine, out)?;
    writeln!(out)?;
    let levels: Vec<String> = Level::ALL
        .iter()
        .map(|l| {
            format!(
                "{} {}",
                if en { l.as_str() } else { l.zh() },
                by_level[l.index()]
            )
        })
        .collect();
    writeln!(
        out,
        "{}: {}",
        if en {
            "raised or escalated"
        } else {
            "发布/升级"
        },
        levels.join(", ")
    )?;
    writeln!(
        out,
        "{}: {}",
        if en {
            "still open at the end of the day"
        } else {
            "日终仍在预警"
        },
        engine.firing().len()
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "Next: `yujing check` validates sites.yaml and rules/, `yujing test` runs rules/tests/,"
    )?;
    writeln!(
        out,
        "`yujing replay --input FILE` runs your own readings (see README)."
    )?;
    Ok(())
}
