//! Far jumps in event time. A reading more than `max_future` ahead of the stream's newest event
//! time is either a broken clock (an outlier) or the stream resuming after an outage. Neither may
//! be decided alone: the reading is held, and the readings after it decide. Three that agree with
//! it confirm the jump; three in the stream's old range refute it. This module keeps the held
//! readings and returns decisions; the engine applies them.

use super::Input;
use crate::time::{Millis, Ts};

/// Readings that must agree before the stream may jump far ahead (or that refute the jump).
pub const CONFIRMATIONS: usize = 3;

/// A reading held back, owned (it outlives the decoder's buffer).
#[derive(Clone, Debug, PartialEq)]
pub struct Held {
    pub site: Option<String>,
    pub device: String,
    pub metric: String,
    pub value: f64,
    pub ts: Ts,
    pub arrival: Ts,
    pub source: usize,
}

impl Held {
    fn of(r: &Input) -> Held {
        Held {
            site: r.site.map(str::to_string),
            device: r.device.to_string(),
            metric: r.metric.to_string(),
            value: r.value,
            ts: r.ts,
            arrival: r.arrival,
            source: r.source,
        }
    }

    pub fn as_input(&self) -> Input<'_> {
        Input {
            site: self.site.as_deref(),
            device: &self.device,
            metric: &self.metric,
            value: self.value,
            ts: self.ts,
            arrival: self.arrival,
            source: self.source,
        }
    }
}

/// What became of held readings.
#[derive(Debug, Default, PartialEq)]
pub struct Decided {
    /// The jump was real: process these, in order.
    pub confirmed: Vec<Held>,
    /// It was an outlier: reject these as bad timestamps.
    pub refuted: Vec<Held>,
}

#[derive(Debug, Default)]
pub struct JumpGuard {
    held: Vec<Held>,
    against: usize,
}

impl JumpGuard {
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// A reading far ahead of the stream arrived.
    pub fn ahead(&mut self, r: &Input, max_future: Millis) -> Decided {
        let mut d = Decided::default();
        if self
            .held
            .first()
            .is_some_and(|h| (r.ts - h.ts).abs() > max_future)
        {
            // a second, different jump: the first was an outlier
            d.refuted = self.take();
        }
        self.held.push(Held::of(r));
        if self.held.len() >= CONFIRMATIONS {
            d.confirmed = self.take();
        }
        d
    }

    /// A reading in the stream's own range arrived: it argues against the held jump.
    pub fn in_range(&mut self) -> Decided {
        self.against += 1;
        let mut d = Decided::default();
        if self.against >= CONFIRMATIONS {
            d.refuted = self.take();
        }
        d
    }

    /// End of input: readings that agree with each other stand, a lone one does not.
    pub fn finish(&mut self) -> Decided {
        let held = self.take();
        if held.len() >= 2 {
            Decided {
                confirmed: held,
                refuted: Vec::new(),
            }
        } else {
            Decided {
                confirmed: Vec::new(),
                refuted: held,
            }
        }
    }

    fn take(&mut self) -> Vec<Held> {
        self.against = 0;
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ts: Ts) -> Input<'static> {
        Input {
            site: None,
            device: "d",
            metric: "m",
            value: 1.0,
            ts,
            arrival: ts,
            source: 0,
        }
    }

    #[test]
    fn three_agreeing_readings_confirm_three_others_refute() {
        let mut g = JumpGuard::default();
        assert_eq!(g.ahead(&at(1_000), 10), Decided::default());
        assert_eq!(g.ahead(&at(1_005), 10), Decided::default());
        let d = g.ahead(&at(1_002), 10);
        assert_eq!(d.confirmed.len(), 3);
        assert!(g.is_empty());
        g.ahead(&at(5_000), 10);
        assert!(g.in_range().refuted.is_empty());
        assert!(g.in_range().refuted.is_empty());
        assert_eq!(g.in_range().refuted.len(), 1);
        // a different jump replaces an unconfirmed one
        g.ahead(&at(7_000), 10);
        assert_eq!(g.ahead(&at(9_000), 10).refuted.len(), 1);
        assert_eq!(g.finish().refuted.len(), 1);
    }
}
