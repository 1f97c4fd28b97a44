//! `yujing fit`: anomaly-model parameters from history.
//!
//! - The horizons follow the series' cadence (the median interval between readings): learn
//!   from a week of readings, forget over 30 days, let one detection stand for 12 hours.
//! - With an incident list (or technician flags), the tolerance for new extremes and the
//!   threshold are chosen on a small grid for the best F1 of caught incidents and right
//!   warnings (ties: the higher threshold, the fewer warnings).

use super::incidents::{judge, Alarm, Incident, Verdict};
use crate::model::anomaly::{Anomaly, AnomalyParams};
use crate::time::{Millis, Ts, DAY, HOUR};
use std::collections::BTreeMap;

/// One site's readings of the model's metric, in time order.
#[derive(Clone, Debug)]
pub struct Series {
    pub site: String,
    pub ts: Vec<Ts>,
    pub values: Vec<f64>,
}

/// What `fit` found.
#[derive(Clone, Debug)]
pub struct Fitted {
    pub params: AnomalyParams,
    pub threshold: f64,
    /// Median interval between readings.
    pub cadence: Millis,
    pub readings: usize,
    /// With incidents: the backtest of the fitted model on the same history.
    pub verdict: Option<Verdict>,
}

/// Median interval between consecutive readings over all series (at least 1 ms).
pub fn cadence(series: &[Series]) -> Millis {
    let mut d: Vec<i64> = series
        .iter()
        .flat_map(|s| s.ts.windows(2).map(|w| w[1] - w[0]))
        .filter(|d| *d > 0)
        .collect();
    if d.is_empty() {
        return 60_000;
    }
    let mid = d.len() / 2;
    *d.select_nth_unstable(mid).1
}

fn readings_in(span: Millis, cadence: Millis, lo: usize, hi: usize) -> usize {
    ((span / cadence.max(1)) as usize).clamp(lo, hi)
}

/// Alarms of a model over the series: a reading at or above the threshold after one below it.
pub fn alarms(
    series: &[Series],
    params: &AnomalyParams,
    threshold: f64,
    rule: &str,
    tz: chrono_tz::Tz,
) -> Vec<Alarm> {
    let mut out = Vec::new();
    for s in series {
        let mut m = Anomaly::new(params, None);
        let mut above = false;
        for (t, v) in s.ts.iter().zip(&s.values) {
            let hit = m.update_in(params.seasonal.slot_of(*t, tz), *v) >= threshold;
            if hit && !above {
                out.push(Alarm {
                    rule: rule.to_string(),
                    site: s.site.clone(),
                    at: *t,
                });
            }
            above = hit;
        }
    }
    out
}

fn f1(v: &Verdict) -> f64 {
    match (v.precision, v.recall) {
        (Some(p), Some(r)) if p + r > 0.0 => 2.0 * p * r / (p + r),
        _ => 0.0,
    }
}

/// Fit the parameters of `base` to the series (and incidents, if any).
pub fn fit(
    base: &AnomalyParams,
    base_threshold: f64,
    series: &[Series],
    incidents: &[Incident],
    early: Millis,
    tz: chrono_tz::Tz,
) -> Fitted {
    let cadence = cadence(series);
    let mut params = AnomalyParams {
        learn: readings_in(7 * DAY, cadence, 100, 5_000),
        history: readings_in(30 * DAY, cadence, 1_000, 100_000),
        suppress: readings_in(12 * HOUR, cadence, 10, 2_000),
        ..base.clone()
    };
    let readings = series.iter().map(|s| s.values.len()).sum();
    if incidents.is_empty() {
        return Fitted {
            params,
            threshold: base_threshold,
            cadence,
            readings,
            verdict: None,
        };
    }
    let span: BTreeMap<String, (Ts, Ts)> = series
        .iter()
        .filter_map(|s| Some((s.site.clone(), (*s.ts.first()?, *s.ts.last()?))))
        .collect();
    let mut best: Option<(f64, f64, f64, Verdict)> = None;
    for tolerance in [0.01, 0.05, 0.1, 0.25] {
        let p = AnomalyParams {
            tolerance,
            ..params.clone()
        };
        for threshold in [0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0] {
            let a = alarms(series, &p, threshold, "fit", tz);
            let v = judge(&a, incidents, &span, early)
                .into_iter()
                .next()
                .unwrap_or(Verdict {
                    rule: "fit".into(),
                    warnings: 0,
                    right: 0,
                    incidents: incidents.len(),
                    caught: 0,
                    precision: None,
                    recall: Some(0.0),
                    lead_p10_min: None,
                    lead_p50_min: None,
                    lead_p90_min: None,
                    false_per_site_week: None,
                });
            let score = f1(&v);
            let better = match &best {
                None => true,
                Some((s, _, _, bv)) => {
                    score > *s + 1e-12 || ((score - s).abs() <= 1e-12 && v.warnings < bv.warnings)
                }
            };
            if better {
                best = Some((score, tolerance, threshold, v));
            }
        }
    }
    let (_, tolerance, threshold, verdict) = best.unwrap_or((
        0.0,
        0.01,
        base_threshold,
        Verdict {
            rule: "fit".into(),
            warnings: 0,
            right: 0,
            incidents: 0,
            caught: 0,
            precision: None,
            recall: None,
            lead_p10_min: None,
            lead_p50_min: None,
            lead_p90_min: None,
            false_per_site_week: None,
        },
    ));
    params.tolerance = tolerance;
    Fitted {
        params,
        threshold,
        cadence,
        readings,
        verdict: Some(verdict),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn horizons_follow_the_cadence_and_incidents_pick_the_threshold() {
        // 15-minute readings for 60 days, a level shift at day 40 lasting a day
        let q = 15 * 60_000;
        let n = 60 * 96;
        let ts: Vec<Ts> = (0..n as i64).map(|i| i * q).collect();
        let values: Vec<f64> = (0..n)
            .map(|i| {
                let base = 10.0 + (i as f64 / 96.0 * std::f64::consts::TAU).sin();
                if (40 * 96..41 * 96).contains(&i) {
                    base + 8.0
                } else {
                    base
                }
            })
            .collect();
        let s = vec![Series {
            site: "r1".into(),
            ts,
            values,
        }];
        let inc = vec![Incident {
            site: "r1".into(),
            start: 40 * 96 * q,
            end: 41 * 96 * q,
        }];
        let f = fit(
            &AnomalyParams::default(),
            0.5,
            &s,
            &inc,
            HOUR,
            chrono_tz::Tz::UTC,
        );
        assert_eq!(f.cadence, q);
        assert_eq!(f.params.learn, 7 * 96);
        assert_eq!(f.params.suppress, 48);
        let v = f.verdict.expect("verdict");
        assert_eq!(v.caught, 1, "{v:?}");
        assert_eq!(v.precision, Some(1.0), "{v:?}");
    }
}
