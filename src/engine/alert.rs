//! The warning state machine of one rule and key (Prometheus `alerting.go`, with levels):
//! inactive -> pending (condition holds, `for` not yet met) -> firing at a level, which can
//! escalate, de-escalate (after `clear.after`) and clear; a new episode within `min_gap` of a clear
//! reopens the previous warning instead of raising a new one.

use crate::event::Level;
use crate::event::TransitionKind;
use crate::time::{Millis, Ts};

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Firing {
    /// Event time at which this episode's condition first held (drives the stable id).
    pub episode_start: Ts,
    pub level: Level,
    pub raised_at: Ts,
    /// Transitions emitted in this episode so far.
    pub seq: u32,
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct AlertState {
    pending_since: Option<Ts>,
    below_since: Option<Ts>,
    pub firing: Option<Firing>,
    last_end: Option<Ts>,
    /// (clear time, the cleared episode) for `min_gap`.
    last_clear: Option<(Ts, Firing)>,
    /// Per-day exceedance counting: (local day, count).
    pub day: Option<(i64, u32)>,
}

/// Timing settings of the rule.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub hold_for: Millis,
    pub clear_after: Millis,
    pub min_gap: Millis,
    /// The largest distance between consecutive evaluations that still counts as continuous.
    pub continuity: Millis,
}

/// What changed.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub kind: TransitionKind,
    pub level: Level,
    pub previous: Option<Level>,
    pub episode_start: Ts,
    pub raised_at: Ts,
    pub seq: u32,
    pub reopened: bool,
}

impl AlertState {
    pub fn is_idle(&self) -> bool {
        self.pending_since.is_none()
            && self.firing.is_none()
            && self.last_clear.is_none()
            && self.day.is_none()
    }

    pub fn current_level(&self) -> Option<Level> {
        self.firing.as_ref().map(|f| f.level)
    }

    /// Feed one evaluation: the window [start, end) and the level its value reached (already
    /// computed with hysteresis against the current level), or `None`.
    pub fn step(
        &mut self,
        t: &Timing,
        start: Ts,
        end: Ts,
        observed: Option<Level>,
    ) -> Option<Step> {
        let continuous = self.last_end.is_some_and(|le| end - le <= t.continuity);
        self.last_end = Some(end);
        if !continuous {
            self.pending_since = None;
            self.below_since = None;
        }
        match (&mut self.firing, observed) {
            (None, None) => {
                self.pending_since = None;
                if let Some((cleared_at, _)) = &self.last_clear {
                    if end - *cleared_at >= t.min_gap {
                        self.last_clear = None;
                    }
                }
                None
            }
            (None, Some(level)) => {
                let since = *self.pending_since.get_or_insert(start);
                if end - since < t.hold_for {
                    return None;
                }
                self.pending_since = None;
                self.below_since = None;
                // a new episode soon after the last clear reopens that warning
                if let Some((cleared_at, prev)) = self.last_clear.take() {
                    if t.min_gap > 0 && end - cleared_at < t.min_gap {
                        let f = Firing {
                            level,
                            seq: prev.seq + 1,
                            raised_at: end,
                            ..prev
                        };
                        let s = Step {
                            kind: TransitionKind::Raise,
                            level,
                            previous: None,
                            episode_start: f.episode_start,
                            raised_at: end,
                            seq: f.seq,
                            reopened: true,
                        };
                        self.firing = Some(f);
                        return Some(s);
                    }
                }
                let f = Firing {
                    episode_start: since,
                    level,
                    raised_at: end,
                    seq: 0,
                };
                let s = Step {
                    kind: TransitionKind::Raise,
                    level,
                    previous: None,
                    episode_start: since,
                    raised_at: end,
                    seq: 0,
                    reopened: false,
                };
                self.firing = Some(f);
                Some(s)
            }
            (Some(f), obs) => {
                let cur = f.level;
                if obs.is_some_and(|o| o > cur) {
                    self.below_since = None;
                    f.level = obs.unwrap_or(cur);
                    f.seq += 1;
                    return Some(Step {
                        kind: TransitionKind::Escalate,
                        level: f.level,
                        previous: Some(cur),
                        episode_start: f.episode_start,
                        raised_at: f.raised_at,
                        seq: f.seq,
                        reopened: false,
                    });
                }
                if obs == Some(cur) {
                    self.below_since = None;
                    return None;
                }
                let since = *self.below_since.get_or_insert(start);
                if end - since < t.clear_after {
                    return None;
                }
                self.below_since = None;
                f.seq += 1;
                match obs {
                    Some(lower) => {
                        f.level = lower;
                        Some(Step {
                            kind: TransitionKind::DeEscalate,
                            level: lower,
                            previous: Some(cur),
                            episode_start: f.episode_start,
                            raised_at: f.raised_at,
                            seq: f.seq,
                            reopened: false,
                        })
                    }
                    None => {
                        let f = self.firing.take()?;
                        let s = Step {
                            kind: TransitionKind::Clear,
                            level: cur,
                            previous: Some(cur),
                            episode_start: f.episode_start,
                            raised_at: f.raised_at,
                            seq: f.seq,
                            reopened: false,
                        };
                        if t.min_gap > 0 {
                            self.last_clear = Some((end, f));
                        }
                        Some(s)
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Level::*;

    const M: Ts = 60_000;

    fn run(t: Timing, obs: &[Option<Level>]) -> Vec<(usize, TransitionKind, Level)> {
        let mut s = AlertState::default();
        let mut out = Vec::new();
        for (i, o) in obs.iter().enumerate() {
            let i64i = i as Ts;
            if let Some(st) = s.step(&t, i64i * 10 * M, (i64i + 1) * 10 * M, *o) {
                out.push((i, st.kind, st.level));
            }
        }
        out
    }

    fn timing(hold: Ts, clear: Ts, gap: Ts) -> Timing {
        Timing {
            hold_for: hold,
            clear_after: clear,
            min_gap: gap,
            continuity: 10 * M,
        }
    }

    #[test]
    fn every_transition() {
        use TransitionKind::*;
        let got = run(
            timing(0, 0, 0),
            &[None, Some(Blue), Some(Orange), Some(Yellow), None],
        );
        assert_eq!(
            got,
            vec![
                (1, Raise, Blue),
                (2, Escalate, Orange),
                (3, DeEscalate, Yellow),
                (4, Clear, Yellow)
            ]
        );
    }

    #[test]
    fn for_delays_raise_and_resets_on_gap() {
        use TransitionKind::*;
        // 30 minutes = three 10-minute windows
        assert_eq!(
            run(timing(30 * M, 0, 0), &[Some(Red), Some(Red), Some(Red)]),
            vec![(2, Raise, Red)]
        );
        assert_eq!(
            run(
                timing(30 * M, 0, 0),
                &[Some(Red), None, Some(Red), Some(Red)]
            ),
            vec![]
        );
    }

    #[test]
    fn clear_after_holds_the_warning() {
        use TransitionKind::*;
        let got = run(
            timing(0, 20 * M, 0),
            &[Some(Red), None, Some(Red), None, None],
        );
        assert_eq!(got, vec![(0, Raise, Red), (4, Clear, Red)]);
    }

    #[test]
    fn min_gap_reopens_the_same_episode() {
        let t = timing(0, 0, 60 * M);
        let mut s = AlertState::default();
        let a = s.step(&t, 0, 10 * M, Some(Blue)).unwrap();
        s.step(&t, 10 * M, 20 * M, None).unwrap();
        let b = s.step(&t, 20 * M, 30 * M, Some(Blue)).unwrap();
        assert!(b.reopened);
        assert_eq!(a.episode_start, b.episode_start);
        assert_eq!(b.seq, 2);
    }
}
