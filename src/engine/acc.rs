//! Window accumulators: everything a window needs to answer its rule's aggregates, in constant
//! space (quantiles from a bounded DDSketch, allocated only for rules that ask for them).

use crate::config::rules::Agg;
use crate::time::{Ts, HOUR};
use serde::{Deserialize, Serialize};
use sketches_ddsketch::{Config as SketchConfig, DDSketch};

/// Relative accuracy of quantiles (1 %) and the sketch's bin limit (bounds memory to ~16 KB).
const SKETCH_ALPHA: f64 = 0.01;
const SKETCH_MAX_BINS: u32 = 1024;

/// What an accumulator must track beyond count, sum, min and max.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// first / last by event time (first, last, delta, rate)
    pub order: bool,
    /// spread (stddev)
    pub spread: bool,
    /// a quantile sketch (pNN)
    pub sketch: bool,
    /// contributing devices (site-keyed rules)
    pub devices: bool,
}

impl Needs {
    pub const ALL: Needs = Needs {
        order: true,
        spread: true,
        sketch: true,
        devices: true,
    };
    fn ext(&self) -> bool {
        self.order || self.spread || self.sketch || self.devices
    }
}

/// The common accumulator is 40 bytes (count, sum, min, max and an empty extension), so a
/// window of count/avg/max costs little per series; rules that need more get an extension.
#[derive(Clone, Serialize, Deserialize)]
pub struct Acc {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    ext: Option<Box<Ext>>,
}

#[derive(Clone, Serialize, Deserialize)]
struct Ext {
    first_ts: Ts,
    first: f64,
    last_ts: Ts,
    last: f64,
    /// Sum of squared deviations from the mean (Welford), for stddev; NaN when not tracked.
    m2: f64,
    sketch: Option<DDSketch>,
    devices: Vec<u32>,
    track_devices: bool,
}

impl std::fmt::Debug for Acc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acc")
            .field("count", &self.count)
            .field("sum", &self.sum)
            .field("min", &self.min)
            .field("max", &self.max)
            .field("last", &self.last())
            .finish()
    }
}

impl Acc {
    pub fn new(needs: Needs) -> Acc {
        let ext = needs.ext().then(|| {
            Box::new(Ext {
                first_ts: Ts::MAX,
                first: f64::NAN,
                last_ts: Ts::MIN,
                last: f64::NAN,
                m2: if needs.spread { 0.0 } else { f64::NAN },
                sketch: needs
                    .sketch
                    .then(|| DDSketch::new(SketchConfig::new(SKETCH_ALPHA, SKETCH_MAX_BINS, 1e-9))),
                devices: Vec::new(),
                track_devices: needs.devices,
            })
        });
        Acc {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            ext,
        }
    }

    /// Add a reading (always inlined: it is most of a window update).
    #[inline(always)]
    pub fn push(&mut self, ts: Ts, v: f64, device: u32) {
        if let Some(e) = &mut self.ext {
            if !e.m2.is_nan() && self.count > 0 {
                let n_old = self.count as f64;
                let mean_old = self.sum / n_old;
                let delta = v - mean_old;
                let mean_new = mean_old + delta / (n_old + 1.0);
                e.m2 += delta * (v - mean_new);
            }
            if ts < e.first_ts {
                e.first_ts = ts;
                e.first = v;
            }
            if ts >= e.last_ts {
                e.last_ts = ts;
                e.last = v;
            }
            if let Some(s) = &mut e.sketch {
                s.add(v);
            }
            if e.track_devices && !e.devices.contains(&device) {
                e.devices.push(device);
            }
        }
        self.count += 1;
        self.sum += v;
        if v < self.min {
            self.min = v;
        }
        if v > self.max {
            self.max = v;
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
        if let (Some(a), Some(b)) = (&mut self.ext, &o.ext) {
            let (na, nb) = (self.count as f64, o.count as f64);
            let delta = o.sum / nb - self.sum / na;
            a.m2 += b.m2 + delta * delta * na * nb / (na + nb);
            if b.first_ts < a.first_ts {
                a.first_ts = b.first_ts;
                a.first = b.first;
            }
            if b.last_ts >= a.last_ts {
                a.last_ts = b.last_ts;
                a.last = b.last;
            }
            if let (Some(x), Some(y)) = (&mut a.sketch, &b.sketch) {
                // both sketches share one configuration, so merging cannot fail
                let _ = x.merge(y);
            }
            for d in &b.devices {
                if !a.devices.contains(d) {
                    a.devices.push(*d);
                }
            }
        }
        self.count += o.count;
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    /// The newest value by event time (NaN when the rule does not track order).
    pub fn last(&self) -> f64 {
        self.ext.as_ref().map(|e| e.last).unwrap_or(f64::NAN)
    }

    pub fn get(&self, agg: Agg) -> f64 {
        if self.count == 0 {
            return f64::NAN;
        }
        let n = self.count as f64;
        let ext = self.ext.as_deref();
        match agg {
            Agg::Count => n,
            Agg::Sum => self.sum,
            Agg::Avg => self.sum / n,
            Agg::Min => self.min,
            Agg::Max => self.max,
            Agg::First => ext.map(|e| e.first).unwrap_or(f64::NAN),
            Agg::Last => ext.map(|e| e.last).unwrap_or(f64::NAN),
            Agg::Delta => ext.map(|e| e.last - e.first).unwrap_or(f64::NAN),
            Agg::Rate => ext
                .map(|e| {
                    let dt = e.last_ts - e.first_ts;
                    if dt <= 0 {
                        0.0
                    } else {
                        (e.last - e.first) * HOUR as f64 / dt as f64
                    }
                })
                .unwrap_or(f64::NAN),
            Agg::Stddev => match ext {
                Some(e) if e.m2.is_nan() => f64::NAN,
                Some(_) if self.count < 2 => 0.0,
                Some(e) => (e.m2 / (n - 1.0)).max(0.0).sqrt(),
                None => f64::NAN,
            },
            Agg::Quantile(q) => ext
                .and_then(|e| e.sketch.as_ref())
                .and_then(|s| s.quantile(q).ok().flatten())
                .unwrap_or(f64::NAN),
        }
    }

    pub fn devices(&self) -> &[u32] {
        self.ext
            .as_ref()
            .map(|e| e.devices.as_slice())
            .unwrap_or(&[])
    }
}

/// The accumulators of one key in one pane: one per condition of the rule.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum AccSet {
    One(Acc),
    Many(Vec<Acc>),
}

impl AccSet {
    pub fn new(n: usize, needs: Needs) -> AccSet {
        if n == 1 {
            AccSet::One(Acc::new(needs))
        } else {
            AccSet::Many((0..n).map(|_| Acc::new(needs)).collect())
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
        let mut a = Acc::new(Needs::ALL);
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
        let mut whole = Acc::new(Needs::ALL);
        let (mut a, mut b) = (Acc::new(Needs::ALL), Acc::new(Needs::ALL));
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
