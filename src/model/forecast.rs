//! The trend forecast: how long until a series reaches a level, at its current trend ("the
//! reservoir reaches its warning level in 2 h 10 min").
//!
//! Holt's linear smoothing on event time: level and trend are smoothed with a weight that
//! follows the time between readings (`half_life`), so irregular readings are handled; the
//! time to the target is the gap divided by the trend, in hours, capped at `horizon`. Causal,
//! O(1) per reading.

use crate::time::{Millis, Ts};

#[derive(Clone, Debug, PartialEq)]
pub struct ForecastParams {
    /// How fast level and trend follow the readings: a reading this old weighs half.
    pub half_life: Millis,
    /// Forecasts beyond this (and a steady or receding series) are reported as the horizon.
    pub horizon: Millis,
    /// The trend starts from the line through the first `half_life` of readings, at least this
    /// many (the horizon until then).
    pub min_points: usize,
    /// Time until the series falls to the target (a reservoir drawn down) instead of rising.
    pub falling: bool,
}

impl Default for ForecastParams {
    fn default() -> Self {
        ForecastParams {
            half_life: 30 * 60_000,
            horizon: 48 * 3_600_000,
            min_points: 6,
            falling: false,
        }
    }
}

/// The forecast of one series.
#[derive(Clone, Debug)]
pub struct Forecast {
    p: ForecastParams,
    level: f64,
    /// Per millisecond.
    trend: f64,
    last: Option<Ts>,
    n: usize,
    /// The first readings (a `half_life` of them, at least `min_points`): level and trend
    /// start from their least-squares line, not from the noise between two readings.
    warm: Vec<(Ts, f64)>,
}

/// Most readings kept to start the trend from.
const WARM_MAX: usize = 10_000;

impl Forecast {
    pub fn new(p: &ForecastParams) -> Forecast {
        Forecast {
            p: p.clone(),
            level: 0.0,
            trend: 0.0,
            last: None,
            n: 0,
            warm: Vec::new(),
        }
    }

    /// Take a reading; the hours until the smoothed series reaches `target` at its trend (0 if
    /// it is there already, the horizon if it is not heading there or too far off).
    pub fn update(&mut self, ts: Ts, v: f64, target: f64) -> f64 {
        if self.n == 0 {
            // warming up: collect, then start from the line through what was collected
            if self.warm.last().is_some_and(|(t, _)| ts <= *t) {
                return self.hours_to(target);
            }
            self.warm.push((ts, v));
            let span = ts - self.warm[0].0;
            let ready = (span >= self.p.half_life && self.warm.len() >= self.p.min_points)
                || self.warm.len() >= WARM_MAX;
            if ready {
                self.start_from_line();
            }
            return self.hours_to(target);
        }
        match self.last {
            Some(last) if ts > last => {
                let dt = (ts - last) as f64;
                let alpha =
                    1.0 - (-dt * std::f64::consts::LN_2 / self.p.half_life.max(1) as f64).exp();
                let predicted = self.level + self.trend * dt;
                let level = alpha * v + (1.0 - alpha) * predicted;
                self.trend = alpha * (level - self.level) / dt + (1.0 - alpha) * self.trend;
                self.level = level;
                self.last = Some(ts);
                self.n += 1;
            }
            // a reading from before the newest one: the trend is not rewritten backwards
            _ => {}
        }
        self.hours_to(target)
    }

    /// Level and trend from the least-squares line through the warm-up readings.
    fn start_from_line(&mut self) {
        let warm = std::mem::take(&mut self.warm);
        let n = warm.len() as f64;
        let t0 = warm[0].0;
        let (st, sv) = warm
            .iter()
            .fold((0.0, 0.0), |(a, b), (t, v)| (a + (t - t0) as f64, b + v));
        let (mt, mv) = (st / n, sv / n);
        let (mut cov, mut var) = (0.0, 0.0);
        for (t, v) in &warm {
            let dt = (t - t0) as f64 - mt;
            cov += dt * (v - mv);
            var += dt * dt;
        }
        self.trend = if var > 0.0 { cov / var } else { 0.0 };
        let (tl, _) = warm[warm.len() - 1];
        self.level = mv + self.trend * ((tl - t0) as f64 - mt);
        self.last = Some(tl);
        self.n = warm.len();
    }

    /// The current forecast for `target`.
    pub fn hours_to(&self, target: f64) -> f64 {
        let horizon = self.p.horizon as f64 / 3_600_000.0;
        let (gap, toward) = if self.p.falling {
            (self.level - target, -self.trend)
        } else {
            (target - self.level, self.trend)
        };
        if !gap.is_finite() {
            return horizon;
        }
        if self.n == 0 {
            return horizon;
        }
        if gap <= 0.0 {
            return 0.0;
        }
        if self.n == 0 || toward <= 0.0 {
            return horizon;
        }
        (gap / toward / 3_600_000.0).min(horizon)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn a_steady_rise_reaches_the_target_when_the_line_says() {
        let mut f = Forecast::new(&ForecastParams::default());
        // 0.3 m per hour from 40 m, every 5 minutes, for 3 hours; target 42.5 m
        let mut eta = 0.0;
        for i in 0..=36 {
            let v = 40.0 + 0.3 * (i as f64 * 5.0 / 60.0);
            eta = f.update(i * 5 * MIN, v, 42.5);
        }
        // at 40.9 m, 1.6 m to go at 0.3 m/h: 5 h 20 min
        assert!((eta - 1.6 / 0.3).abs() < 0.01, "{eta}");
        // irregular readings give the same answer
        let mut g = Forecast::new(&ForecastParams::default());
        let times = [0, 3, 4, 11, 30, 31, 47, 60, 95, 120, 150, 180];
        for t in times {
            eta = g.update(t * MIN, 40.0 + 0.3 * t as f64 / 60.0, 42.5);
        }
        assert!((eta - 1.6 / 0.3).abs() < 0.01, "{eta}");
    }

    #[test]
    fn steady_receding_early_and_arrived() {
        let p = ForecastParams::default();
        let mut f = Forecast::new(&p);
        assert_eq!(f.update(0, 40.0, 42.5), 48.0, "one reading is no trend");
        for i in 1..20 {
            f.update(i * 10 * MIN, 40.0 - 0.01 * i as f64, 42.5);
        }
        assert_eq!(f.hours_to(42.5), 48.0, "falling away");
        assert_eq!(f.hours_to(39.0), 0.0, "already there");
        let mut d = Forecast::new(&ForecastParams { falling: true, ..p });
        for i in 0..20 {
            d.update(i * 10 * MIN, 40.0 - 0.1 * i as f64, 30.0);
        }
        let eta = d.hours_to(30.0);
        assert!(eta > 10.0 && eta < 20.0, "{eta}");
    }
}
