//! Window accumulators: everything a window needs to answer any aggregate, in constant space
//! (quantiles from a bounded DDSketch, allocated only for rules that ask for them).

use crate::config::rules::Agg;
use crate::time::{Ts, HOUR};
use sketches_ddsketch::{Config as SketchConfig, DDSketch};

/// Relative accuracy of quantiles (1 %) and the sketch's bin limit (bounds memory to ~16 KB).
const SKETCH_ALPHA: f64 = 0.01;
const SKETCH_MAX_BINS: u32 = 1024;

#[derive(Clone)]
pub struct Acc {
    pub count: u64,
    pub sum: f64,
    /// Sum of squared deviations from the mean (Welford), for stddev.
    m2: f64,
    pub min: f64,
    pub max: f64,
    pub first_ts: Ts,
    pub first: f64,
    pub last_ts: Ts,
    pub last: f64,
    sketch: Option<Box<DDSketch>>,
    /// Devices that contributed (only tracked for site-keyed rules). Boxed so the common case
    /// costs 8 bytes per accumulator instead of 24.
    #[allow(clippy::box_collection)]
    devices: Option<Box<Vec<u32>>>,
}

impl std::fmt::Debug for Acc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acc")
            .field("count", &self.count)
            .field("sum", &self.sum)
            .field("min", &self.min)
            .field("max", &self.max)
            .field("first", &self.first)
            .field("last", &self.last)
            .finish()
    }
}

impl Acc {
    pub fn new(with_sketch: bool, with_devices: bool) -> Acc {
        Self::with_stddev(with_sketch, with_devices, true)
    }

    /// An accumulator that tracks the spread (for `stddev`) only when asked to.
    pub fn with_stddev(with_sketch: bool, with_devices: bool, with_stddev: bool) -> Acc {
        Acc {
            count: 0,
            sum: 0.0,
            m2: if with_stddev { 0.0 } else { f64::NAN },
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            first_ts: Ts::MAX,
            first: f64::NAN,
            last_ts: Ts::MIN,
            last: f64::NAN,
            sketch: with_sketch.then(|| {
                Box::new(DDSketch::new(SketchConfig::new(
                    SKETCH_ALPHA,
                    SKETCH_MAX_BINS,
                    1e-9,
                )))
            }),
            devices: with_devices.then(|| Box::new(Vec::new())),
        }
    }

    #[inline]
    pub fn push(&mut self, ts: Ts, v: f64, device: u32) {
        let n_old = self.count as f64;
        self.count += 1;
        // m2 is NaN when the rule needs no stddev: two divisions saved per reading
        if n_old > 0.0 && !self.m2.is_nan() {
            let mean_old = self.sum / n_old;
            let delta = v - mean_old;
            let mean_new = mean_old + delta / self.count as f64;
            self.m2 += delta * (v - mean_new);
        }
        self.sum += v;
        if v < self.min {
            self.min = v;
        }
        if v > self.max {
            self.max = v;
        }
        if ts < self.first_ts {
            self.first_ts = ts;
            self.first = v;
        }
        if ts >= self.last_ts {
            self.last_ts = ts;
            self.last = v;
        }
        if let Some(s) = &mut self.sketch {
            s.add(v);
        }
        if let Some(d) = &mut self.devices {
            if !d.contains(&device) {
                d.push(device);
            }
        }
    }

    /// Combine with the accumulator of a later (or disjoint) pane.
    pub fn merge(&mut self, o: &Acc) {
        if o.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = o.clone();
            return;
        }
        let (na, nb) = (self.count as f64, o.count as f64);
        let delta = o.sum / nb - self.sum / na;
        self.m2 += o.m2 + delta * delta * na * nb / (na + nb);
        self.count += o.count;
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        if o.first_ts < self.first_ts {
            self.first_ts = o.first_ts;
            self.first = o.first;
        }
        if o.last_ts >= self.last_ts {
            self.last_ts = o.last_ts;
            self.last = o.last;
        }
        if let (Some(a), Some(b)) = (&mut self.sketch, &o.sketch) {
            // both sketches share one configuration, so merging cannot fail
            let _ = a.merge(b);
        }
        if let (Some(a), Some(b)) = (&mut self.devices, &o.devices) {
            for d in b.iter() {
                if !a.contains(d) {
                    a.push(*d);
                }
            }
        }
    }

    pub fn get(&self, agg: Agg) -> f64 {
        if self.count == 0 {
            return f64::NAN;
        }
        let n = self.count as f64;
        match agg {
            Agg::Count => n,
            Agg::Sum => self.sum,
            Agg::Avg => self.sum / n,
            Agg::Min => self.min,
            Agg::Max => self.max,
            Agg::First => self.first,
            Agg::Last => self.last,
            Agg::Delta => self.last - self.first,
            Agg::Rate => {
                let dt = self.last_ts - self.first_ts;
                if dt <= 0 {
                    0.0
                } else {
                    (self.last - self.first) * HOUR as f64 / dt as f64
                }
            }
            Agg::Stddev => {
                if self.count < 2 {
                    0.0
                } else {
                    (self.m2 / (n - 1.0)).max(0.0).sqrt()
                }
            }
            Agg::Quantile(q) => self
                .sketch
                .as_ref()
                .and_then(|s| s.quantile(q).ok().flatten())
                .unwrap_or(f64::NAN),
        }
    }

    pub fn devices(&self) -> &[u32] {
        self.devices.as_deref().map(|v| v.as_slice()).unwrap_or(&[])
    }
}

/// The accumulators of one key in one pane: one per condition of the rule.
#[derive(Clone, Debug)]
pub enum AccSet {
    One(Acc),
    Many(Vec<Acc>),
}

impl AccSet {
    pub fn new(n: usize, sketch: bool, devices: bool, stddev: bool) -> AccSet {
        if n == 1 {
            AccSet::One(Acc::with_stddev(sketch, devices, stddev))
        } else {
            AccSet::Many(
                (0..n)
                    .map(|_| Acc::with_stddev(sketch, devices, stddev))
                    .collect(),
            )
        }
    }
    #[inline]
    pub fn get_mut(&mut self, i: usize) -> &mut Acc {
        match self {
            AccSet::One(a) => a,
            AccSet::Many(v) => &mut v[i],
        }
    }
    pub fn get(&self, i: usize) -> &Acc {
        match self {
            AccSet::One(a) => a,
            AccSet::Many(v) => &v[i],
        }
    }
    pub fn len(&self) -> usize {
        match self {
            AccSet::One(_) => 1,
            AccSet::Many(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn merge(&mut self, o: &AccSet) {
        for i in 0..self.len().min(o.len()) {
            self.get_mut(i).merge(o.get(i));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_match_definitions() {
        let mut a = Acc::new(true, false);
        for (i, v) in [3.0, 1.0, 4.0, 1.0, 5.0].iter().enumerate() {
            a.push(i as Ts * 60_000, *v, 0);
        }
        assert_eq!(a.get(Agg::Count), 5.0);
        assert_eq!(a.get(Agg::Sum), 14.0);
        assert_eq!(a.get(Agg::Avg), 2.8);
        assert_eq!(a.get(Agg::Min), 1.0);
        assert_eq!(a.get(Agg::Max), 5.0);
        assert_eq!(a.get(Agg::First), 3.0);
        assert_eq!(a.get(Agg::Last), 5.0);
        assert_eq!(a.get(Agg::Delta), 2.0);
        assert!((a.get(Agg::Rate) - 30.0).abs() < 1e-9); // +2 over 4 minutes = 30 per hour
        assert!((a.get(Agg::Stddev) - 1.7888543819998317).abs() < 1e-9);
        let p50 = a.get(Agg::Quantile(0.5));
        assert!((p50 - 3.0).abs() <= 0.03 * 3.0, "{p50}");
    }

    #[test]
    fn merge_equals_sequential() {
        let vals: Vec<f64> = (0..100).map(|i| ((i * 37) % 11) as f64 * 1.5).collect();
        let mut whole = Acc::new(false, false);
        let (mut a, mut b) = (Acc::new(false, false), Acc::new(false, false));
        for (i, v) in vals.iter().enumerate() {
            whole.push(i as Ts, *v, 0);
            if i < 40 {
                a.push(i as Ts, *v, 0)
            } else {
                b.push(i as Ts, *v, 0)
            }
        }
        a.merge(&b);
        for agg in [
            Agg::Count,
            Agg::Sum,
            Agg::Min,
            Agg::Max,
            Agg::First,
            Agg::Last,
        ] {
            assert_eq!(a.get(agg), whole.get(agg));
        }
        assert!((a.get(Agg::Stddev) - whole.get(Agg::Stddev)).abs() < 1e-9);
    }
}
