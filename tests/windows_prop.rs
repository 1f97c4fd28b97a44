//! Property tests: for random, shuffled and late streams, the engine's windows equal a
//! brute-force reference computed from the same arrival order.

use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use yujing::config::{Config, EngineSettings};
use yujing::engine::{Engine, Input, Subject};

const BASE: i64 = 1_795_795_200_000; // 2026-11-28T00:00:00+08:00
const OOO: i64 = 10_000;

const SITES: &str = "sites:
  - id: s1
    name: 测试站
    kind: environment
    department: sthj
    devices:
      - {id: d0, metrics: [m]}
      - {id: d1, metrics: [m]}
      - {id: d2, metrics: [m]}
";

const RULES: &str = "rules:
  - id: tumbling
    title: t
    metric: m
    window: {type: tumbling, size: 1m}
    aggregate: avg
    above: -1000000000
    level: blue
    message: x
  - id: sliding
    title: t
    metric: m
    window: {type: sliding, size: 1m, step: 20s}
    aggregate: avg
    above: -1000000000
    level: blue
    message: x
  - id: session
    title: t
    metric: m
    window: {type: session, gap: 30s}
    aggregate: avg
    above: -1000000000
    level: blue
    message: x
";

/// (rule, device, window start, window end) -> (count, sum, min, max)
type Windows = BTreeMap<(usize, u32, i64, i64), (u64, i64, i64, i64)>;

#[derive(Clone, Debug)]
struct R {
    ts: i64,
    dev: u32,
    v: i64,
}

fn engine_windows(stream: &[R]) -> (Windows, u64) {
    let settings = EngineSettings {
        out_of_orderness: OOO,
        ..EngineSettings::default()
    };
    let cfg = Config::from_texts(SITES, &[("r.yaml", RULES)], settings).expect("config");
    let mut e = Engine::new(Arc::new(cfg));
    e.collect_exceedances(true);
    let src = e.source("p");
    let devs = ["d0", "d1", "d2"];
    for r in stream {
        let _ = e.push(&Input {
            site: None,
            device: devs[r.dev as usize],
            metric: "m",
            value: r.v as f64,
            ts: r.ts,
            arrival: r.ts,
            source: src,
        });
    }
    e.finish();
    let mut out = Windows::new();
    for x in &e.exceedances {
        let Subject::Device(d) = x.subject else {
            panic!("device keyed")
        };
        let a = x.accs.get(0);
        let prev = out.insert(
            (x.rule, d, x.start, x.end),
            (a.count, a.sum as i64, a.min as i64, a.max as i64),
        );
        assert!(
            prev.is_none(),
            "window emitted twice: {:?}",
            (x.rule, d, x.start, x.end)
        );
    }
    (out, e.stats.rejected(yujing::event::RejectReason::Late))
}

fn add(w: &mut Windows, k: (usize, u32, i64, i64), v: i64) {
    let e = w.entry(k).or_insert((0, 0, i64::MAX, i64::MIN));
    e.0 += 1;
    e.1 += v;
    e.2 = e.2.min(v);
    e.3 = e.3.max(v);
}

/// The reference: plain loops over the arrival order with the watermark rule spelt out.
fn reference(stream: &[R]) -> (Windows, u64) {
    let mut out = Windows::new();
    let mut late = 0;
    let mut newest = i64::MIN;
    let (size, step, gap) = (60_000i64, 20_000i64, 30_000i64);
    // sessions: per device, open sessions (start, last, values)
    let mut open: BTreeMap<u32, Vec<(i64, i64, Vec<i64>)>> = BTreeMap::new();
    let mut last_end: Option<i64> = None;
    let newest_all = stream.iter().map(|r| r.ts).max().unwrap_or(0);
    for r in stream {
        let wm = if newest == i64::MIN {
            i64::MIN
        } else {
            newest - OOO
        };
        let mut fed_late = 0;
        // tumbling: the one window [b, b + size)
        let b = r.ts.div_euclid(size) * size;
        if b + size <= wm {
            fed_late += 1
        } else {
            add(&mut out, (0, r.dev, b, b + size), r.v)
        }
        // sliding: windows ending at multiples of step after ts, not yet closed
        let p = r.ts.div_euclid(step) * step;
        if p + size <= wm {
            fed_late += 1;
        } else {
            let mut end = p + step;
            while end <= p + size {
                if end > wm {
                    add(&mut out, (1, r.dev, end - size, end), r.v);
                }
                end += step;
            }
        }
        // sessions
        let list = open.entry(r.dev).or_default();
        let touching: Vec<usize> = (0..list.len())
            .filter(|&i| r.ts > list[i].0 - gap && r.ts < list[i].1 + gap)
            .collect();
        if touching.is_empty() && r.ts + gap <= wm {
            fed_late += 1;
        } else {
            let mut s = (r.ts, r.ts, vec![r.v]);
            for &i in touching.iter().rev() {
                let o = list.remove(i);
                s.0 = s.0.min(o.0);
                s.1 = s.1.max(o.1);
                s.2.extend(o.2);
            }
            list.push(s);
        }
        if fed_late == 3 {
            late += 1;
        }
        newest = newest.max(r.ts);
        let wm = newest - OOO;
        for (d, list) in open.iter_mut() {
            list.retain(|s| {
                if s.1 + gap <= wm {
                    for v in &s.2 {
                        add(&mut out, (2, *d, s.0, s.1 + gap), *v);
                    }
                    false
                } else {
                    true
                }
            });
        }
        last_end = Some(wm);
    }
    let _ = last_end;
    // end of input: every open session closes; sliding windows ending after the last step past
    // the newest reading are not evaluated
    for (d, list) in open {
        for s in list {
            for v in &s.2 {
                add(&mut out, (2, d, s.0, s.1 + gap), *v);
            }
        }
    }
    let last_sliding_end = (newest_all.div_euclid(step) + 1) * step;
    out.retain(|k, _| k.0 != 1 || k.3 <= last_sliding_end);
    (out, late)
}

fn stream(max_delay: i64) -> impl Strategy<Value = Vec<R>> {
    prop::collection::vec(
        (0i64..3_000, 0i64..max_delay, 0u32..3, -500i64..500),
        1..400,
    )
    .prop_map(|raw| {
        // arrival order: by nominal time; event time lags it by the delay
        let mut rs: Vec<(i64, R)> = raw
            .into_iter()
            .map(|(t, d, dev, v)| {
                (
                    t * 1_000,
                    R {
                        ts: BASE + t * 1_000 - d,
                        dev,
                        v,
                    },
                )
            })
            .collect();
        rs.sort_by_key(|(t, _)| *t);
        rs.into_iter().map(|(_, r)| r).collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Out of order within the bound: nothing is late, every window equals the reference.
    #[test]
    fn shuffled_within_bound_matches_reference(s in stream(OOO)) {
        let (got, late) = engine_windows(&s);
        let (want, want_late) = reference(&s);
        prop_assert_eq!(late, 0);
        prop_assert_eq!(want_late, 0);
        prop_assert_eq!(got, want);
    }

    /// Far out of order: the late ones are counted exactly, the rest still match.
    #[test]
    fn late_streams_match_reference(s in stream(120_000)) {
        let (got, late) = engine_windows(&s);
        let (want, want_late) = reference(&s);
        prop_assert_eq!(late, want_late);
        prop_assert_eq!(got, want);
    }
}
