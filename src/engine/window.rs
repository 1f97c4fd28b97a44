//! Event-time windows. A window is a bin start plus a watermark (Arroyo): each reading goes to the
//! pane its event time falls in; a window is final when the watermark passes its end, and then it
//! is reduced and handed to the rule. Tumbling windows are sliding windows whose step is their
//! size; session windows are kept per key and close after a gap without readings.

use super::acc::{AccSet, Needs};
use crate::config::rules::WindowSpec;
use crate::time::{Millis, Ts};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// A final window of one key.
#[derive(Debug)]
pub struct Closed {
    pub key: u32,
    pub start: Ts,
    pub end: Ts,
    pub accs: AccSet,
}

/// The reading arrived after every window it belongs to was final.
#[derive(Debug, PartialEq, Eq)]
pub struct Late;

/// How to make a fresh accumulator set for this rule.
#[derive(Clone, Copy, Debug)]
pub struct AccShape {
    pub conds: usize,
    pub needs: Needs,
}

impl AccShape {
    fn make(&self) -> AccSet {
        AccSet::new(self.conds, self.needs)
    }
}

pub enum Windows {
    Panes(Panes),
    Sessions(Sessions),
}

impl Windows {
    /// `keys` maps the rule's dense series index (what `insert` takes) to its key (a device or
    /// site index), which is what closed windows report.
    pub fn new(spec: WindowSpec, shape: AccShape, keys: Vec<u32>) -> Windows {
        match spec.grid() {
            Some((size, step)) => Windows::Panes(Panes {
                size,
                step,
                shape,
                series: (0..keys.len()).map(|_| Bins::default()).collect(),
                keys,
                panes: BTreeMap::new(),
                final_until: Ts::MIN,
                last_pane: Ts::MIN,
                next_align: Ts::MIN,
                bits: Vec::new(),
                spare: Vec::new(),
            }),
            None => {
                let WindowSpec::Session { gap } = spec else {
                    unreachable!("grid() is None only for sessions")
                };
                Windows::Sessions(Sessions {
                    gap,
                    shape,
                    keys,
                    open: FxHashMap::default(),
                    heap: BinaryHeap::new(),
                    final_until: Ts::MIN,
                })
            }
        }
    }

    /// Add a reading. `limit` is the watermark less the allowed lateness: a reading all of whose
    /// windows end at or before it is late. Returns when something may next close.
    #[inline]
    pub fn insert(
        &mut self,
        ts: Ts,
        series: u32,
        cond: usize,
        v: f64,
        device: u32,
        limit: Ts,
    ) -> Result<Ts, Late> {
        match self {
            Windows::Panes(p) => p.insert(ts, series, cond, v, device, limit),
            Windows::Sessions(s) => s.insert(ts, series, cond, v, device, limit),
        }
    }

    /// Close every window that ends at or before `wm`; results come in end order, then key order.
    pub fn close_until(&mut self, wm: Ts, out: &mut Vec<Closed>) {
        match self {
            Windows::Panes(p) => p.close_until(wm, out),
            Windows::Sessions(s) => s.close_until(wm, out),
        }
    }

    /// End of input: close every window holding data up to `newest`, drop the rest.
    pub fn flush(&mut self, newest: Ts, out: &mut Vec<Closed>) {
        match self {
            Windows::Panes(p) => {
                let end = (newest.div_euclid(p.step) + 1) * p.step;
                p.close_until(end, out);
                p.panes.clear();
                p.series.iter_mut().for_each(|b| *b = Bins::default());
            }
            Windows::Sessions(s) => s.close_until(Ts::MAX, out),
        }
    }

    /// Ask the processor for a series' open state (see [`super::Engine::route`]).
    #[inline]
    pub fn prefetch(&self, series: u32) {
        if let Windows::Panes(p) = self {
            if let Some(bins) = p.series.get(series as usize) {
                super::prefetch(bins);
            }
        }
    }

    /// The earliest watermark at which something would close (for scheduling).
    pub fn next_due(&self) -> Ts {
        match self {
            Windows::Panes(p) => p.next_due(),
            Windows::Sessions(s) => s.heap.peek().map(|Reverse((t, _))| *t).unwrap_or(Ts::MAX),
        }
    }

    /// The open state of the series `take` picks, to move it to another engine.
    pub fn export(&self, take: &dyn Fn(u32) -> bool, out: &mut Vec<Open>) {
        match self {
            Windows::Panes(p) => {
                for (s, bins) in p.series.iter().enumerate() {
                    if take(s as u32) {
                        out.extend(bins.iter().map(|(pane, accs)| Open::Pane {
                            series: s as u32,
                            pane,
                            accs: accs.clone(),
                        }));
                    }
                }
            }
            Windows::Sessions(w) => {
                for (&series, list) in &w.open {
                    if take(series) {
                        out.extend(list.iter().map(|x| Open::Session {
                            series,
                            start: x.start,
                            last: x.last,
                            accs: x.accs.clone(),
                        }));
                    }
                }
            }
        }
    }

    /// Drop the open state of the series `take` picks (they moved to another engine).
    pub fn remove(&mut self, take: &dyn Fn(u32) -> bool) {
        match self {
            Windows::Panes(p) => {
                for list in p.panes.values_mut() {
                    list.retain(|&s| !take(s));
                }
                p.panes.retain(|_, list| !list.is_empty());
                for (s, bins) in p.series.iter_mut().enumerate() {
                    if take(s as u32) {
                        *bins = Bins::default();
                    }
                }
            }
            Windows::Sessions(w) => w.open.retain(|&series, _| !take(series)),
        }
    }

    /// How far this engine has made windows final (exported with the open state: the windows
    /// that end later are the ones the state still owes an evaluation).
    pub fn final_until(&self) -> Ts {
        match self {
            Windows::Panes(p) => p.final_until,
            Windows::Sessions(s) => s.final_until,
        }
    }

    /// Take over open state exported by another engine under the same rules, where that engine
    /// had made final everything ending by `their_final`. Windows this engine has made final
    /// already (its watermark is past them) but the other had not are closed at once, into
    /// `out` (end order); the rest stay open here. Returns what could not be placed (a series
    /// this engine does not have: none under the same rules).
    pub fn import(&mut self, open: Vec<Open>, their_final: Ts, out: &mut Vec<Closed>) -> usize {
        let mut dropped = 0;
        let before = out.len();
        // sliding windows due at once, built from the imported panes of each series
        let mut due: FxHashMap<u32, Vec<(Ts, AccSet)>> = FxHashMap::default();
        for o in open {
            match (&mut *self, o) {
                (Windows::Panes(p), Open::Pane { series, pane, accs })
                    if (series as usize) < p.series.len() && pane.rem_euclid(p.step) == 0 =>
                {
                    let key = p.keys[series as usize];
                    if p.step == p.size && pane + p.size <= p.final_until {
                        out.push(Closed {
                            key,
                            start: pane,
                            end: pane + p.size,
                            accs,
                        });
                        continue;
                    }
                    if p.step != p.size && pane + p.step <= p.final_until {
                        due.entry(series).or_default().push((pane, accs.clone()));
                    }
                    if pane + p.size > p.final_until {
                        let bins = &mut p.series[series as usize];
                        match bins.get_mut(pane) {
                            Some(mine) => mine.merge(&accs),
                            None => {
                                bins.add(pane, accs);
                                p.panes.entry(pane).or_default().push(series);
                            }
                        }
                    }
                }
                (
                    Windows::Sessions(w),
                    Open::Session {
                        series,
                        start,
                        last,
                        accs,
                    },
                ) => {
                    if last + w.gap <= w.final_until {
                        out.push(Closed {
                            key: w.keys.get(series as usize).copied().unwrap_or(series),
                            start,
                            end: last + w.gap,
                            accs,
                        });
                    } else {
                        w.open
                            .entry(series)
                            .or_default()
                            .push(Session { start, last, accs });
                        w.heap.push(Reverse((last + w.gap, series)));
                    }
                }
                _ => dropped += 1,
            }
        }
        if let Windows::Panes(p) = self {
            // each sliding window ending after the other engine's final point and by this one's
            for (series, panes) in due {
                let first = panes.iter().map(|(t, _)| *t).min().unwrap_or(p.final_until);
                let mut end = (their_final.max(first).div_euclid(p.step) + 1) * p.step;
                while end <= p.final_until {
                    let start = end - p.size;
                    let merged = merge_panes(panes.iter().map(|(t, a)| (*t, a)), start, end);
                    if let Some(accs) = merged {
                        out.push(Closed {
                            key: p.keys[series as usize],
                            start,
                            end,
                            accs,
                        });
                    }
                    end += p.step;
                }
            }
        }
        out[before..].sort_unstable_by_key(|c| (c.end, c.key));
        dropped
    }

    /// The key (device or site index) of a series.
    pub fn key_of(&self, series: u32) -> Option<u32> {
        let keys = match self {
            Windows::Panes(p) => &p.keys,
            Windows::Sessions(w) => &w.keys,
        };
        keys.get(series as usize).copied()
    }

    /// Number of (key, pane or session) entries held: a gauge of state size.
    pub fn entries(&self) -> usize {
        match self {
            Windows::Panes(p) => p.panes.values().map(|m| m.len()).sum(),
            Windows::Sessions(s) => s.open.values().map(|v| v.len()).sum(),
        }
    }
}

/// Open window state of one series, as it moves between engines (engine checkpoints).
#[derive(Debug, Serialize, Deserialize)]
pub enum Open {
    Pane {
        series: u32,
        pane: Ts,
        accs: AccSet,
    },
    Session {
        series: u32,
        start: Ts,
        last: Ts,
        accs: AccSet,
    },
}

/// One series' open bins: two inline (the current pane and a straggler, the common case), more
/// on the heap for sliding windows.
#[derive(Default)]
struct Bins {
    inline: [Option<(Ts, AccSet)>; 2],
    more: Vec<(Ts, AccSet)>,
}

impl Bins {
    #[inline]
    fn get_mut(&mut self, pane: Ts) -> Option<&mut AccSet> {
        let pos = self
            .inline
            .iter()
            .position(|s| matches!(s, Some((p, _)) if *p == pane));
        match pos {
            Some(i) => self.inline[i].as_mut().map(|(_, a)| a),
            None => self
                .more
                .iter_mut()
                .find(|(p, _)| *p == pane)
                .map(|(_, a)| a),
        }
    }

    fn add(&mut self, pane: Ts, accs: AccSet) {
        match self.inline.iter().position(Option::is_none) {
            Some(i) => self.inline[i] = Some((pane, accs)),
            None => self.more.push((pane, accs)),
        }
    }

    fn take(&mut self, pane: Ts) -> Option<AccSet> {
        for slot in self.inline.iter_mut() {
            if matches!(slot, Some((p, _)) if *p == pane) {
                return slot.take().map(|(_, a)| a);
            }
        }
        let i = self.more.iter().position(|(p, _)| *p == pane)?;
        Some(self.more.swap_remove(i).1)
    }

    fn iter(&self) -> impl Iterator<Item = (Ts, &AccSet)> {
        self.inline
            .iter()
            .flatten()
            .chain(self.more.iter())
            .map(|(p, a)| (*p, a))
    }
}

/// Tumbling and sliding windows: per series, its open panes in a dense array (no hashing per
/// reading); per pane, the series that have data in it (for closing).
pub struct Panes {
    size: Millis,
    step: Millis,
    shape: AccShape,
    series: Vec<Bins>,
    keys: Vec<u32>,
    /// pane start -> series with a bin in that pane
    panes: BTreeMap<Ts, Vec<u32>>,
    /// Every window ending at or before this is final.
    final_until: Ts,
    /// The pane of the last reading.
    last_pane: Ts,
    /// The lowest `limit` that could move `final_until` in `insert` (one step past the last
    /// aligned limit it took).
    next_align: Ts,
    /// Scratch for [`sort_series`].
    bits: Vec<u64>,
    /// Series lists of closed panes, kept for the next panes: a busy rule's list grows to all
    /// its series every pane, and reallocating it as it grows cost more than closing it.
    spare: Vec<Vec<u32>>,
}

/// Sort series numbers (below `n_series`) and drop repeats. A pane of a busy rule holds most of
/// its series: those are sorted by marking each in a bitmap and reading the bitmap in order
/// (linear, where a comparison sort of 10,000 numbers costs more than closing their windows);
/// a few are sorted by comparison.
fn sort_series(list: &mut Vec<u32>, n_series: usize, bits: &mut Vec<u64>) {
    if list.len() < 64 || list.len() * 16 < n_series {
        list.sort_unstable();
        list.dedup();
        return;
    }
    bits.clear();
    bits.resize(n_series.div_ceil(64), 0);
    for &s in list.iter() {
        if let Some(w) = bits.get_mut(s as usize / 64) {
            *w |= 1 << (s % 64);
        }
    }
    list.clear();
    for (i, &word) in bits.iter().enumerate() {
        let mut w = word;
        while w != 0 {
            list.push(64 * i as u32 + w.trailing_zeros());
            w &= w - 1;
        }
    }
}

impl Panes {
    #[inline]
    fn insert(
        &mut self,
        ts: Ts,
        series: u32,
        cond: usize,
        v: f64,
        device: u32,
        limit: Ts,
    ) -> Result<Ts, Late> {
        // most readings fall in the pane of the one before: skip the division then
        // (as an unsigned distance: before the pane, or no pane yet, wraps to a huge value)
        let pane = if (ts.wrapping_sub(self.last_pane) as u64) < self.step as u64 {
            self.last_pane
        } else {
            let p = ts.div_euclid(self.step) * self.step;
            self.last_pane = p;
            p
        };
        // (a division only when `limit` crosses a step: below `next_align` the aligned limit is
        // the one already taken, and `final_until` only grows)
        if limit > self.final_until && limit >= self.next_align {
            // windows ending by the watermark are final even when they held nothing (every
            // window with data was closed as the watermark passed it)
            let aligned = limit.div_euclid(self.step) * self.step;
            self.next_align = aligned.saturating_add(self.step);
            self.final_until = self.final_until.max(aligned);
        }
        if pane + self.size <= self.final_until {
            return Err(Late);
        }
        let bins = &mut self.series[series as usize];
        match bins.get_mut(pane) {
            Some(accs) => accs.get_mut(cond).push(ts, v, device),
            None => {
                let mut accs = self.shape.make();
                accs.get_mut(cond).push(ts, v, device);
                bins.add(pane, accs);
                let spare = &mut self.spare;
                self.panes
                    .entry(pane)
                    .or_insert_with(|| spare.pop().unwrap_or_default())
                    .push(series);
            }
        }
        Ok((pane + self.step).max(self.final_until + self.step))
    }

    /// Keep a closed pane's series list for a later pane (a few: panes open one after another).
    fn recycle(&mut self, mut list: Vec<u32>) {
        if self.spare.len() < 4 {
            list.clear();
            self.spare.push(list);
        }
    }

    fn next_due(&self) -> Ts {
        match self.panes.keys().next() {
            // the first window end that still has data in it
            Some(&first) => (first + self.step).max(self.final_until + self.step),
            None => Ts::MAX,
        }
    }

    fn close_until(&mut self, wm: Ts, out: &mut Vec<Closed>) {
        while let Some(&first) = self.panes.keys().next() {
            let end = (first + self.step).max(self.final_until + self.step);
            if end > wm {
                break;
            }
            let start = end - self.size;
            let before = out.len();
            if self.step == self.size {
                let mut with_data = self.panes.remove(&start).unwrap_or_default();
                // series numbers follow key order: sorting them sorts the output
                sort_series(&mut with_data, self.series.len(), &mut self.bits);
                for &s in &with_data {
                    if let Some(accs) = self.series[s as usize].take(start) {
                        out.push(Closed {
                            key: self.keys[s as usize],
                            start,
                            end,
                            accs,
                        });
                    }
                }
                self.recycle(with_data);
            } else {
                let mut with_data: Vec<u32> = self
                    .panes
                    .range(start..end)
                    .flat_map(|(_, v)| v.iter().copied())
                    .collect();
                sort_series(&mut with_data, self.series.len(), &mut self.bits);
                for s in with_data {
                    let merged = merge_panes(self.series[s as usize].iter(), start, end);
                    if let Some(accs) = merged {
                        out.push(Closed {
                            key: self.keys[s as usize],
                            start,
                            end,
                            accs,
                        });
                    }
                }
                // panes no later window needs
                let keep_from = end + self.step - self.size;
                while self
                    .panes
                    .first_key_value()
                    .is_some_and(|(&p, _)| p < keep_from)
                {
                    if let Some((p, old)) = self.panes.pop_first() {
                        for &s in &old {
                            self.series[s as usize].take(p);
                        }
                        self.recycle(old);
                    }
                }
            }
            debug_assert!(out[before..].windows(2).all(|p| p[0].key < p[1].key));
            self.final_until = end;
        }
        // nothing open: remember how far time has been made final
        let aligned = wm.div_euclid(self.step).saturating_mul(self.step);
        if aligned > self.final_until
            && self
                .panes
                .keys()
                .next()
                .is_none_or(|&f| f + self.step > aligned)
        {
            self.final_until = aligned.max(self.final_until);
        }
    }
}

struct Session {
    start: Ts,
    last: Ts,
    accs: AccSet,
}

pub struct Sessions {
    gap: Millis,
    shape: AccShape,
    keys: Vec<u32>,
    open: FxHashMap<u32, Vec<Session>>,
    /// (close time, key); stale entries are skipped when popped.
    heap: BinaryHeap<Reverse<(Ts, u32)>>,
    final_until: Ts,
}

impl Sessions {
    fn insert(
        &mut self,
        ts: Ts,
        key: u32,
        cond: usize,
        v: f64,
        device: u32,
        limit: Ts,
    ) -> Result<Ts, Late> {
        let gap = self.gap;
        let list = self.open.entry(key).or_default();
        // sessions this reading touches: [start - gap, last + gap)
        let touching: Vec<usize> = (0..list.len())
            .filter(|&i| ts > list[i].start - gap && ts < list[i].last + gap)
            .collect();
        if touching.is_empty() && ts + gap <= self.final_until.max(limit) {
            if list.is_empty() {
                self.open.remove(&key);
            }
            return Err(Late);
        }
        let idx = match touching.first() {
            Some(&i) => i,
            None => {
                list.push(Session {
                    start: ts,
                    last: ts,
                    accs: self.shape.make(),
                });
                list.len() - 1
            }
        };
        // a reading can bridge two sessions: merge them into the first
        for &j in touching.iter().skip(1).rev() {
            let s = list.remove(j);
            let t = &mut list[idx];
            t.start = t.start.min(s.start);
            t.last = t.last.max(s.last);
            t.accs.merge(&s.accs);
        }
        let s = &mut list[idx];
        s.start = s.start.min(ts);
        s.last = s.last.max(ts);
        s.accs.get_mut(cond).push(ts, v, device);
        self.heap.push(Reverse((s.last + gap, key)));
        Ok(s.last + gap)
    }

    fn close_until(&mut self, wm: Ts, out: &mut Vec<Closed>) {
        let before = out.len();
        while let Some(&Reverse((t, key))) = self.heap.peek() {
            if t > wm {
                break;
            }
            self.heap.pop();
            let Some(list) = self.open.get_mut(&key) else {
                continue;
            };
            let mut i = 0;
            while i < list.len() {
                if list[i].last + self.gap <= wm {
                    let s = list.remove(i);
                    out.push(Closed {
                        key: self.keys.get(key as usize).copied().unwrap_or(key),
                        start: s.start,
                        end: s.last + self.gap,
                        accs: s.accs,
                    });
                } else {
                    i += 1;
                }
            }
            if list.is_empty() {
                self.open.remove(&key);
            }
        }
        out[before..].sort_unstable_by_key(|c| (c.end, c.key));
        self.final_until = self.final_until.max(wm);
    }
}

/// The panes starting in `[start, end)` merged into one window's accumulators; none if no pane.
#[inline]
fn merge_panes<'a>(
    panes: impl Iterator<Item = (Ts, &'a AccSet)>,
    start: Ts,
    end: Ts,
) -> Option<AccSet> {
    let mut merged: Option<AccSet> = None;
    for (p, a) in panes {
        if p >= start && p < end {
            match &mut merged {
                Some(m) => m.merge(a),
                None => merged = Some(a.clone()),
            }
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Both ways of sorting give what a comparison sort and dedup give, dense or sparse.
        #[test]
        fn series_sort_like_a_comparison_sort(
            n_series in 1usize..5_000,
            picks in prop::collection::vec(any::<prop::sample::Index>(), 0..3_000),
        ) {
            let list: Vec<u32> = picks.iter().map(|i| i.index(n_series) as u32).collect();
            let mut want = list.clone();
            want.sort_unstable();
            want.dedup();
            let mut got = list;
            sort_series(&mut got, n_series, &mut Vec::new());
            prop_assert_eq!(got, want);
        }
    }
}
