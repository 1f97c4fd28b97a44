//! One drive of a configuration's rules over the sample county, shared by the property tests
//! of `tests/robustness.rs` and the `rules` fuzz target (`fuzz/fuzz_targets/rules.rs`, which
//! includes this file by path).

use std::sync::Arc;
use yujing::config::Config;
use yujing::engine::Engine;
use yujing::event::ReadingRef;

/// Run `cfg`'s rules over six hours of readings from every device of the county across a local
/// midnight (rising then falling, a half-hour gap, late and far-future readings), the
/// watermark two days past the end; render and serialize every transition. Returns how many
/// transitions there were.
pub fn drive(cfg: Config, seed: u64) -> usize {
    const START: i64 = 1_795_874_400_000; // 2026-11-28T22:00:00+08:00
    const STEP: i64 = 5 * 60_000;
    const STEPS: i64 = 72;
    let devices: Vec<(String, Vec<String>)> = cfg
        .registry
        .devices
        .iter()
        .map(|d| (d.id.clone(), d.metrics.clone()))
        .collect();
    let mut engine = Engine::new(Arc::new(cfg));
    let src = engine.source("drive");
    for k in (0..STEPS).filter(|k| !(30..36).contains(k)) {
        let ts = START + k * STEP;
        for (i, (device, metrics)) in devices.iter().enumerate() {
            for (j, metric) in metrics.iter().enumerate() {
                let wave = (seed >> ((i + j) % 48)) & 0xff;
                let up = if k < STEPS / 2 { k } else { STEPS - k };
                let value = wave as f64 * 0.5 + up as f64 * 10.0;
                let mut push = |ts: i64, value: f64| {
                    let _ = engine.push(&ReadingRef {
                        site: None,
                        device,
                        metric,
                        value,
                        ts,
                        arrival: ts,
                        source: src,
                    });
                };
                push(ts, value);
                if k % 17 == 3 {
                    push(ts - 3 * STEP, value * 2.0);
                }
                if k % 23 == 5 {
                    push(ts + 400 * 86_400_000, value);
                }
            }
        }
        engine.advance_to(ts);
    }
    engine.advance_to(START + STEPS * STEP + 2 * 86_400_000);
    let transitions = std::mem::take(&mut engine.transitions);
    for t in &transitions {
        let w = yujing::warnings::render(&engine, t);
        assert!(w.value.is_none_or(f64::is_finite), "{:?}", w.value);
        assert!(w.threshold.is_none_or(f64::is_finite), "{:?}", w.threshold);
        let doc = serde_json::to_string(&w).expect("a warning serializes");
        assert!(doc.contains(&w.id));
    }
    transitions.len()
}
