//! The site risk score: one number in `[0, 1]` per site from what is known about it, with the
//! weights in the model file:
//!
//! - **warnings**: the warnings firing at the site now, each by its level (blue 1/4 .. red 1),
//!   summed and capped at 1;
//! - **tickets**: 12345 tickets counted at the site over the last `window`, against
//!   `tickets_full` (that many or more is 1);
//! - **offline**: the share of the site's devices silent past their absence rules;
//! - **credit**: the worst credit rating of the enterprises responsible for the site (A 0,
//!   B 1/3, C 2/3, D 1) where one is known; without one the term is left out and the other
//!   weights share its part.
//!
//! The score is the weighted mean of the terms. The engine computes it every `every` of event
//! time for each site in scope and feeds it as a reading of the site's first device.

use crate::time::Millis;

#[derive(Clone, Debug, PartialEq)]
pub struct RiskParams {
    pub every: Millis,
    pub window: Millis,
    pub tickets_full: f64,
    pub warnings: f64,
    pub tickets: f64,
    pub offline: f64,
    pub credit: f64,
}

impl Default for RiskParams {
    fn default() -> Self {
        RiskParams {
            every: 10 * 60_000,
            window: 7 * 86_400_000,
            tickets_full: 10.0,
            warnings: 0.4,
            tickets: 0.3,
            offline: 0.2,
            credit: 0.1,
        }
    }
}

/// What is known about a site at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Signals {
    /// Sum over firing warnings of level rank / 4 (blue 0.25 .. red 1).
    pub warnings: f64,
    pub tickets: usize,
    /// Share of devices offline.
    pub offline: f64,
    /// Worst known rating as 0 (A) .. 1 (D).
    pub credit: Option<f64>,
}

/// A credit rating letter as a risk term.
pub fn credit_term(rating: char) -> Option<f64> {
    match rating {
        'A' => Some(0.0),
        'B' => Some(1.0 / 3.0),
        'C' => Some(2.0 / 3.0),
        'D' => Some(1.0),
        _ => None,
    }
}

pub fn score(p: &RiskParams, s: &Signals) -> f64 {
    let mut terms = vec![
        (p.warnings, s.warnings.min(1.0)),
        (
            p.tickets,
            (s.tickets as f64 / p.tickets_full.max(1.0)).min(1.0),
        ),
        (p.offline, s.offline.clamp(0.0, 1.0)),
    ];
    if let Some(c) = s.credit {
        terms.push((p.credit, c));
    }
    let total: f64 = terms.iter().map(|t| t.0).sum();
    if total <= 0.0 {
        return 0.0;
    }
    terms.iter().map(|(w, v)| w * v).sum::<f64>() / total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_mean_of_known_terms() {
        let p = RiskParams::default();
        assert_eq!(score(&p, &Signals::default()), 0.0);
        // an orange warning (0.75), 5 of 10 tickets, half the devices offline, no rating
        let s = Signals {
            warnings: 0.75,
            tickets: 5,
            offline: 0.5,
            credit: None,
        };
        let want = (0.4 * 0.75 + 0.3 * 0.5 + 0.2 * 0.5) / 0.9;
        assert!((score(&p, &s) - want).abs() < 1e-12);
        // a D-rated enterprise adds its term
        let d = Signals {
            credit: credit_term('D'),
            ..s
        };
        assert!((score(&p, &d) - (want * 0.9 + 0.1) / 1.0).abs() < 1e-12);
        // everything at once saturates at 1
        let all = Signals {
            warnings: 3.0,
            tickets: 50,
            offline: 1.0,
            credit: Some(1.0),
        };
        assert_eq!(score(&p, &all), 1.0);
    }
}
