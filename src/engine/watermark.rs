//! Watermarks: how far event time is known to be complete. Each source's watermark trails the
//! newest event time it delivered by the bounded out-of-orderness; the engine's watermark is the
//! minimum over sources that are not idle (silent for `idle_timeout` of processing time), so one
//! quiet connection cannot stall every window. It never goes backwards.

use crate::time::{Millis, Ts};

/// How long a source expected to deliver (a partition just assigned) may hold event time
/// before it has delivered anything.
const WAIT_AT_MOST: Millis = 10_000;

#[derive(Debug)]
struct Source {
    name: String,
    max_ts: Ts,
    last_arrival: Ts,
    /// Never holds event time back (12345 tickets: rare, and placed at or after the watermark).
    passive: bool,
    /// Known to exist before it delivers (a Kafka partition just assigned): until it delivers or
    /// goes idle, event time waits for it.
    waiting: bool,
}

#[derive(Debug)]
pub struct Watermarks {
    out_of_orderness: Millis,
    idle_timeout: Millis,
    sources: Vec<Source>,
    current: Ts,
    newest_arrival: Ts,
    /// The newest event time on any source.
    newest: Ts,
    /// Event time other instances have not reached yet on partitions they own (cluster): this
    /// instance's watermark waits for it, so when one of them dies its partitions' state, taken
    /// over here, is not behind this watermark.
    bound: Ts,
}

impl Watermarks {
    pub fn new(out_of_orderness: Millis, idle_timeout: Millis) -> Watermarks {
        Watermarks {
            out_of_orderness,
            idle_timeout,
            sources: Vec::new(),
            current: Ts::MIN,
            newest_arrival: Ts::MIN,
            newest: Ts::MIN,
            bound: Ts::MAX,
        }
    }

    /// Hold the watermark at or below `bound` (`Ts::MAX`: no bound).
    pub fn set_bound(&mut self, bound: Ts) {
        self.bound = bound;
    }

    /// A source's own watermark (newest event time less the out-of-orderness); `None` when it
    /// has delivered nothing or is idle.
    pub fn of_source(&self, i: usize) -> Option<Ts> {
        let s = self.sources.get(i)?;
        let idle = self.newest_arrival.saturating_sub(s.last_arrival) > self.idle_timeout;
        (s.max_ts != Ts::MIN && !s.passive && !idle)
            .then(|| s.max_ts.saturating_sub(self.out_of_orderness))
    }

    /// The index of a source by name, registering it on first use.
    pub fn source(&mut self, name: &str) -> usize {
        if let Some(i) = self.sources.iter().position(|s| s.name == name) {
            return i;
        }
        self.sources.push(Source {
            name: name.to_string(),
            max_ts: Ts::MIN,
            last_arrival: Ts::MIN,
            passive: false,
            waiting: false,
        });
        self.sources.len() - 1
    }

    /// A source whose events never hold event time back nor move it forward: they fall into
    /// windows still open, and the other sources decide when those close.
    pub fn passive_source(&mut self, name: &str) -> usize {
        let i = self.source(name);
        self.sources[i].passive = true;
        i
    }

    /// A source that exists before it delivers anything: a Kafka partition this instance was
    /// just given, whose backlog may be older than what the other partitions delivered. Event
    /// time waits for it until it delivers or has been silent for the idle timeout.
    pub fn expect_source(&mut self, name: &str, now_arrival: Ts) -> usize {
        let i = self.source(name);
        let s = &mut self.sources[i];
        s.passive = false;
        s.waiting = true;
        s.max_ts = Ts::MIN;
        s.last_arrival = now_arrival;
        if now_arrival > self.newest_arrival {
            self.newest_arrival = now_arrival;
        }
        i
    }

    /// A source that went away (a partition given to another instance): it no longer holds
    /// event time back.
    pub fn retire_source(&mut self, i: usize) {
        if let Some(s) = self.sources.get_mut(i) {
            s.passive = true;
            s.waiting = false;
        }
    }

    pub fn current(&self) -> Ts {
        self.current
    }

    /// The newest event time seen on any source.
    pub fn newest(&self) -> Ts {
        self.newest
    }

    /// Record an event; returns the (possibly advanced) watermark.
    #[inline]
    pub fn observe(&mut self, src: usize, ts: Ts, arrival: Ts) -> Ts {
        let s = &mut self.sources[src];
        if s.passive {
            return self.current;
        }
        if arrival > s.last_arrival {
            s.last_arrival = arrival;
        }
        if arrival > self.newest_arrival {
            self.newest_arrival = arrival;
        }
        if ts > s.max_ts {
            s.max_ts = ts;
            if ts > self.newest {
                self.newest = ts;
            }
            if self.sources.len() == 1 {
                // one source: nothing to wait for but itself
                let wm = ts.saturating_sub(self.out_of_orderness).min(self.bound);
                self.current = self.current.max(wm);
            } else {
                self.recompute();
            }
        }
        self.current
    }

    /// Processing time passed without events (a heartbeat): idle sources stop holding back.
    ///
    /// Live, when every source has been silent for `idle_timeout`, event time is taken to
    /// follow the clock (less the idle timeout and the out-of-orderness): a feed that went
    /// quiet altogether (the only camera of a test bench, a broker that died) must still let
    /// absence rules see the silence. Live readings carry times close to the clock (see
    /// `max_clock_ahead`), so a reading still to come is not made late by this.
    pub fn tick(&mut self, now_arrival: Ts) -> Ts {
        if now_arrival > self.newest_arrival {
            self.newest_arrival = now_arrival;
        }
        self.recompute();
        // only sources still in play count: while a partition changes hands nothing is heard
        let heard = self
            .sources
            .iter()
            .any(|s| !s.passive && s.max_ts != Ts::MIN);
        let all_idle = self.sources.iter().all(|s| {
            s.passive
                || s.last_arrival == Ts::MIN
                || now_arrival.saturating_sub(s.last_arrival) > self.idle_timeout
        });
        if heard && all_idle {
            let clock = now_arrival
                .saturating_sub(self.idle_timeout)
                .saturating_sub(self.out_of_orderness);
            let clock = clock.min(self.bound);
            if clock > self.current {
                self.current = clock;
            }
        }
        self.current
    }

    /// Force the watermark forward (end of input, rule tests).
    pub fn advance_to(&mut self, ts: Ts) -> Ts {
        if ts > self.current {
            self.current = ts;
        }
        self.current
    }

    fn recompute(&mut self) {
        let mut min_active = Ts::MAX;
        let mut max_all = Ts::MIN;
        for s in &self.sources {
            if s.passive {
                continue;
            }
            let idle = self.newest_arrival.saturating_sub(s.last_arrival) > self.idle_timeout;
            if s.max_ts == Ts::MIN {
                // a partition with a backlog delivers within moments of being assigned; one
                // that has nothing (or no sites at all) must not hold time for long
                let given_up = self.newest_arrival.saturating_sub(s.last_arrival)
                    > self.idle_timeout.min(WAIT_AT_MOST);
                if s.waiting && !given_up {
                    // nothing from it yet: time stands where it is
                    min_active = min_active.min(self.current);
                }
                continue;
            }
            let wm = s.max_ts.saturating_sub(self.out_of_orderness);
            max_all = max_all.max(wm);
            if !idle {
                min_active = min_active.min(wm);
            }
        }
        let wm = if min_active == Ts::MAX {
            max_all
        } else {
            min_active
        }
        .min(self.bound);
        if wm > self.current {
            self.current = wm;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trails_newest_by_out_of_orderness() {
        let mut w = Watermarks::new(5_000, 60_000);
        let s = w.source("file");
        assert_eq!(w.observe(s, 100_000, 100_000), 95_000);
        assert_eq!(w.observe(s, 90_000, 100_001), 95_000); // out of order: no step back
        assert_eq!(w.observe(s, 110_000, 110_000), 105_000);
    }

    #[test]
    fn idle_source_stops_holding_back() {
        let mut w = Watermarks::new(0, 60_000);
        let a = w.source("a");
        let b = w.source("b");
        w.observe(a, 1_000, 1_000);
        w.observe(b, 2_000, 1_000);
        assert_eq!(w.current(), 1_000);
        // b keeps going for two minutes of processing time, a is silent
        assert_eq!(w.observe(b, 50_000, 50_000), 1_000);
        assert_eq!(w.observe(b, 130_000, 130_000), 130_000);
    }

    #[test]
    fn follows_the_clock_when_every_source_is_silent() {
        let mut w = Watermarks::new(1_000, 60_000);
        assert_eq!(w.tick(500_000), Ts::MIN, "nothing heard yet: no event time");
        let a = w.source("a");
        w.observe(a, 100_000, 100_000);
        assert_eq!(w.current(), 99_000);
        // still within the idle timeout: event time waits for the source
        assert_eq!(w.tick(150_000), 99_000);
        // silent past it: the clock less the idle timeout and out-of-orderness
        assert_eq!(w.tick(300_000), 239_000);
        // and never back
        w.observe(a, 200_000, 301_000);
        assert_eq!(w.current(), 239_000);
    }
}
