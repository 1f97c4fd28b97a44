//! The streaming anomaly score: how unusual is this reading, given everything before it?
//! Causal (no look-ahead), O(1) time and bounded memory per series.
//!
//! Three parts:
//! 1. **Pattern novelty.** After a learning period the value range is fixed from what was
//!    seen; each reading becomes a symbol (its bin), and the last few symbols a pattern. A
//!    pattern seen `c` times before scores `1 / (1 + c)`; several resolutions are averaged
//!    (coarse long patterns catch shape changes, fine short ones level changes), then over
//!    the last `average` readings.
//! 2. **Likelihood.** The novelty is compared with its own running mean and variance
//!    (exponentially forgetting after `history` readings): a Gaussian tail probability,
//!    mapped to `[0, 1]` on a log scale as Numenta's anomaly likelihood does. Only two very
//!    unlikely readings in a row count as very unlikely; after a detection, the next
//!    `suppress` readings cannot fire again (one episode, one warning).
//! 3. **New extremes.** A value beyond everything seen so far (by more than `tolerance` of the
//!    range seen) scores 1.
//!
//! The score is the larger of 2 and 3; at or above 0.5 is an anomaly. The constants of the
//! default model were chosen on the NAB corpus (benches/README.md has the scores and what each
//! part contributes).
//!
//! **Seasonal baselines** (`seasonal = "hour_of_day"` or `"hour_of_week"`, off by default):
//! each reading is first compared with a robust baseline of its own local hour (of the day, or
//! of the week): a winsorised moving mean and mean absolute deviation per slot, updated after
//! the comparison (causal, adapting). The score is then computed on the deviation in units of
//! the slot's spread, so 35 dB at 3 am can be unusual while 60 dB at noon is not. The first two
//! readings of every slot only teach the baseline.

use serde::{Deserialize, Serialize};

/// Parameters (the `[params]` of an anomaly model file).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalyParams {
    /// Readings learnt from before scoring starts (range, first patterns, statistics).
    pub learn: usize,
    /// Pattern resolutions: `[bins, length]` pairs.
    pub patterns: Vec<[usize; 2]>,
    /// A new extreme must exceed the range seen by this fraction of it.
    pub tolerance: f64,
    /// Fraction of the learning period whose novelty is not used for the statistics (every
    /// pattern is new at the start).
    pub skip: f64,
    /// Novelty is averaged over this many readings.
    pub average: usize,
    /// The novelty statistics forget with this horizon (readings).
    pub history: usize,
    /// Readings after a likelihood detection that cannot fire again.
    pub suppress: usize,
    /// Tail probabilities at or below this are very unlikely (two in a row needed).
    pub red: f64,
    /// What a lone very unlikely reading counts as.
    pub yellow: f64,
    pub min_mean: f64,
    pub min_var: f64,
    /// Compare each reading with its local hour's baseline first (see the module docs).
    pub seasonal: Seasonal,
}

/// Which baseline a reading is compared with before it is scored.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Seasonal {
    #[default]
    None,
    HourOfDay,
    HourOfWeek,
}

impl Seasonal {
    /// The slot of a local time: `hour` 0..24, `weekday` 0 (Monday) .. 7.
    pub fn slot(self, hour: u32, weekday: u32) -> usize {
        match self {
            Seasonal::None => 0,
            Seasonal::HourOfDay => hour as usize % 24,
            Seasonal::HourOfWeek => (weekday as usize % 7) * 24 + hour as usize % 24,
        }
    }
    /// The slot of an instant in time zone `tz`.
    pub fn slot_of(self, ts: crate::time::Ts, tz: chrono_tz::Tz) -> usize {
        if self == Seasonal::None {
            return 0;
        }
        let hour = crate::time::local_minute_of_day(ts, tz) / 60;
        // 1970-01-01 was a Thursday (3 with Monday 0)
        let weekday = (crate::time::local_day(ts, tz) + 3).rem_euclid(7) as u32;
        self.slot(hour, weekday)
    }

    fn slots(self) -> usize {
        match self {
            Seasonal::None => 0,
            Seasonal::HourOfDay => 24,
            Seasonal::HourOfWeek => 168,
        }
    }
}

/// A robust baseline per slot: (mean, mean absolute deviation, readings seen).
#[derive(Clone, Debug)]
struct Baseline {
    slots: Vec<(f64, f64, u32)>,
}

impl Baseline {
    /// The deviation of `x` from its slot in units of the slot's spread (`None` while the slot
    /// has fewer than two readings); then the slot learns `x`.
    fn deviation(&mut self, slot: usize, x: f64) -> Option<f64> {
        let e = self.slots.get_mut(slot)?;
        let (m, s, n) = *e;
        let out = (n >= 2).then(|| (x - m) / s.max(1e-9 * (1.0 + m.abs())));
        *e = match n {
            0 => (x, 0.0, 1),
            1 => ((m + x) / 2.0, (x - m).abs() / 2.0, 2),
            _ => {
                // winsorised at 3 spreads: one wild reading does not drag the baseline
                let d = (x - m).clamp(-3.0 * s.max(1e-12), 3.0 * s.max(1e-12));
                (
                    m + 0.1 * d,
                    0.9 * s + 0.1 * (x - m).abs().min(3.0 * s.max(1e-12)),
                    n + 1,
                )
            }
        };
        out
    }
}

impl Default for AnomalyParams {
    fn default() -> Self {
        AnomalyParams {
            learn: 750,
            patterns: vec![[4, 4], [16, 2]],
            tolerance: 0.01,
            skip: 0.3,
            average: 10,
            history: 8640,
            suppress: 150,
            red: 1e-5,
            yellow: 1e-3,
            min_mean: 0.03,
            min_var: 0.0003,
            seasonal: Seasonal::None,
        }
    }
}

/// Largest pattern table per resolution: `(bins + 3) ^ length` entries.
pub const MAX_TABLE: usize = 1 << 20;

impl AnomalyParams {
    /// What is wrong with these parameters, if anything.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.patterns.is_empty() {
            out.push("patterns: at least one [bins, length] pair".into());
        }
        for [bins, len] in &self.patterns {
            let size = (bins + 3).checked_pow(*len as u32);
            if *bins == 0 || *len == 0 || size.is_none_or(|s| s > MAX_TABLE) {
                out.push(format!(
                    "patterns: [{bins}, {len}] needs bins >= 1, length >= 1 and (bins + 3)^length <= {MAX_TABLE}"
                ));
            }
        }
        if !(0.0..1.0).contains(&self.skip) {
            out.push("skip: a fraction in [0, 1)".into());
        }
        if self.average == 0 || self.history == 0 {
            out.push("average and history: at least 1".into());
        }
        if !(self.red > 0.0 && self.red < 1.0 && self.yellow > 0.0 && self.yellow < 1.0) {
            out.push("red and yellow: probabilities in (0, 1)".into());
        }
        if !(self.tolerance >= 0.0 && self.min_mean >= 0.0 && self.min_var > 0.0) {
            out.push("tolerance, min_mean >= 0 and min_var > 0".into());
        }
        out
    }
}

struct Resolution {
    bins: usize,
    len: usize,
    /// Symbols per position, with one for "before the stream".
    base: usize,
    /// The last `len` symbols as a number in base `base` (at the start padded with the
    /// "before the stream" symbol, so short patterns are keys of their own).
    key: usize,
    counts: Vec<u32>,
}

/// The score of one series.
pub struct Anomaly {
    p: AnomalyParams,
    i: usize,
    skip: usize,
    learning: Vec<f64>,
    lo: f64,
    range: f64,
    res: Vec<Resolution>,
    recent: std::collections::VecDeque<f64>,
    recent_sum: f64,
    k: u64,
    mean: f64,
    var: f64,
    prev_red: bool,
    last_detection: Option<usize>,
    min: f64,
    max: f64,
    baseline: Option<Baseline>,
}

/// ln(1e-10): the likelihood's log scale.
const LOG_SCALE: f64 = -23.025_850_929_940_457;

impl Anomaly {
    /// A fresh score; `learn` overrides the parameters' learning length (NAB gives every
    /// detector its probation length).
    pub fn new(p: &AnomalyParams, learn: Option<usize>) -> Anomaly {
        let learn = learn.unwrap_or(p.learn);
        let res = p
            .patterns
            .iter()
            .map(|[bins, len]| {
                let base = bins + 3;
                let before = (0..*len).fold(0usize, |k, _| k.saturating_mul(base) + (base - 1));
                Resolution {
                    bins: *bins,
                    len: *len,
                    base,
                    key: before,
                    counts: vec![0; base.saturating_pow(*len as u32).min(MAX_TABLE)],
                }
            })
            .collect();
        Anomaly {
            skip: (p.skip * learn as f64) as usize,
            p: AnomalyParams { learn, ..p.clone() },
            i: 0,
            learning: Vec::with_capacity(learn.min(100_000)),
            lo: 0.0,
            range: 1.0,
            res,
            recent: std::collections::VecDeque::with_capacity(p.average + 1),
            recent_sum: 0.0,
            k: 0,
            mean: 0.0,
            var: 0.0,
            prev_red: false,
            last_detection: None,
            min: f64::NAN,
            max: f64::NAN,
            baseline: (p.seasonal != Seasonal::None).then(|| Baseline {
                slots: vec![(0.0, 0.0, 0); p.seasonal.slots()],
            }),
        }
    }

    /// Score a reading of local time slot `slot` (see [`Seasonal::slot`]): with a seasonal
    /// baseline its deviation from the slot is scored, else the value itself.
    pub fn update_in(&mut self, slot: usize, v: f64) -> f64 {
        if !v.is_finite() {
            return 0.0;
        }
        match &mut self.baseline {
            None => self.update(v),
            Some(b) => match b.deviation(slot, v) {
                Some(d) => self.update(d),
                None => 0.0,
            },
        }
    }

    /// Whether readings must say their local time slot ([`Anomaly::update_in`]).
    pub fn seasonal(&self) -> bool {
        self.baseline.is_some()
    }

    /// Score the next reading (`0` while learning; NaN and infinities are not readings and
    /// score 0 without changing anything).
    pub fn update(&mut self, v: f64) -> f64 {
        if !v.is_finite() {
            return 0.0;
        }
        let i = self.i;
        self.i += 1;
        if i < self.p.learn {
            self.learning.push(v);
            if i + 1 == self.p.learn {
                self.learnt();
            }
            return 0.0;
        }
        if self.p.learn == 0 && i == 0 {
            self.learning.push(v);
            self.learnt();
            return 0.0;
        }
        let a = self.novelty(v);
        let mut lik = if self.k > 10 { self.likelihood(a) } else { 0.0 };
        self.stats(i, a);
        match self.last_detection {
            Some(d) if i - d <= self.p.suppress => lik = 0.0,
            _ if lik >= 0.5 => self.last_detection = Some(i),
            _ => {}
        }
        let extreme = self.extreme(v);
        lik.max(extreme)
    }

    /// The learning period is over: fix the range, then learn from it as from any reading.
    fn learnt(&mut self) {
        let buf = std::mem::take(&mut self.learning);
        let (lo, hi) = buf
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(*v), b.max(*v))
            });
        self.lo = lo;
        self.range = if hi > lo { hi - lo } else { 1.0 };
        self.min = buf[0];
        self.max = buf[0];
        for (idx, v) in buf.iter().enumerate() {
            let a = self.novelty(*v);
            self.stats(idx, a);
            self.min = self.min.min(*v);
            self.max = self.max.max(*v);
        }
    }

    fn novelty(&mut self, v: f64) -> f64 {
        let mut sum = 0.0;
        for r in &mut self.res {
            let b = ((v - self.lo) / self.range * r.bins as f64).floor();
            // symbols: 0 = below the range .. bins + 1 = above it; bins + 2 = before the stream
            let sym = (b.clamp(-1.0, r.bins as f64) + 1.0) as usize;
            let top = r.base.pow((r.len - 1) as u32);
            r.key = (r.key % top) * r.base + sym;
            let c = &mut r.counts[r.key];
            sum += 1.0 / (1.0 + f64::from(*c));
            *c = c.saturating_add(1);
        }
        let raw = sum / self.res.len() as f64;
        self.recent.push_back(raw);
        self.recent_sum += raw;
        if self.recent.len() > self.p.average {
            if let Some(old) = self.recent.pop_front() {
                self.recent_sum -= old;
            }
        }
        self.recent_sum / self.recent.len() as f64
    }

    fn stats(&mut self, idx: usize, a: f64) {
        if idx < self.skip {
            return;
        }
        self.k += 1;
        let alpha = (1.0 / self.k as f64).max(1.0 / self.p.history as f64);
        let d = a - self.mean;
        self.mean += alpha * d;
        self.var = (1.0 - alpha) * (self.var + alpha * d * d);
    }

    fn likelihood(&mut self, a: f64) -> f64 {
        let m = self.mean.max(self.p.min_mean);
        let sd = self.var.max(self.p.min_var).sqrt();
        let x = if a >= m { a } else { 2.0 * m - a };
        let tail = 0.5 * libm::erfc((x - m) / sd / std::f64::consts::SQRT_2);
        let red = tail <= self.p.red;
        let t = if red && self.prev_red {
            self.p.yellow
        } else {
            tail
        };
        self.prev_red = red;
        (1.000_000_000_1 - (1.0 - t)).ln() / LOG_SCALE
    }

    fn extreme(&mut self, v: f64) -> f64 {
        let mut out = 0.0;
        if self.max > self.min {
            let t = (self.max - self.min) * self.p.tolerance;
            if v > self.max + t || v < self.min - t {
                out = 1.0;
            }
        }
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spike_after_a_steady_cycle_is_an_anomaly_and_the_cycle_is_not() {
        let p = AnomalyParams::default();
        let mut m = Anomaly::new(&p, Some(300));
        let wave = |i: usize| (i as f64 / 24.0 * std::f64::consts::TAU).sin() * 10.0 + 50.0;
        let mut max_normal: f64 = 0.0;
        for i in 0..3000 {
            max_normal = max_normal.max(m.update(wave(i)));
        }
        assert!(max_normal < 0.5, "{max_normal}");
        assert!(m.update(90.0) >= 0.5);
        // NaN is not a reading
        assert_eq!(m.update(f64::NAN), 0.0);
    }

    #[test]
    fn short_patterns_at_the_start_are_their_own_keys() {
        let p = AnomalyParams {
            patterns: vec![[2, 3]],
            ..Default::default()
        };
        let mut m = Anomaly::new(&p, Some(1));
        m.update(0.0);
        m.update(0.0);
        m.update(0.0);
        m.update(0.0);
        // keys [- - a], [- a a], [a a a] (twice): three kinds
        let r = &m.res[0];
        assert_eq!(r.counts.iter().filter(|c| **c > 0).count(), 3);
        assert_eq!(r.counts.iter().max(), Some(&2));
    }

    #[test]
    fn a_seasonal_baseline_sees_a_normal_level_at_the_wrong_hour() {
        // noise: 60 dB from 7 to 22 h, 35 dB at night, for 30 days; then 60 dB at 3 am
        let level = |h: u32| if (7..22).contains(&h) { 60.0 } else { 35.0 };
        let run = |seasonal: Seasonal| {
            let p = AnomalyParams {
                seasonal,
                ..Default::default()
            };
            let mut m = Anomaly::new(&p, Some(24 * 10));
            let mut worst: f64 = 0.0;
            for day in 0..30 {
                for h in 0..24u32 {
                    let wobble = ((day * 24 + h) % 7) as f64 * 0.3;
                    let s = m.update_in(Seasonal::HourOfDay.slot(h, 0), level(h) + wobble);
                    if day >= 20 {
                        worst = worst.max(s);
                    }
                }
            }
            (worst, m.update_in(Seasonal::HourOfDay.slot(3, 0), 60.0))
        };
        let (normal, night_noise) = run(Seasonal::HourOfDay);
        assert!(normal < 0.5, "the daily cycle is normal: {normal}");
        assert!(night_noise >= 0.5, "60 dB at 3 am: {night_noise}");
        // without the baseline 60 dB is a level seen every day
        let (_, plain) = run(Seasonal::None);
        assert!(plain < 0.5, "{plain}");
    }

    #[test]
    fn bad_parameters_are_named() {
        let p = AnomalyParams {
            patterns: vec![[100, 5]],
            skip: 1.5,
            ..Default::default()
        };
        let e = p.problems();
        assert_eq!(e.len(), 2, "{e:?}");
    }
}
