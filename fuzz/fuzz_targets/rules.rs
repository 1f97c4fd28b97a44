//! Arbitrary text as a rule file, against the sample county's registry: loading must give rules
//! or positioned errors, never a panic. Rules that load then run: every device of the county
//! reports every metric it provides for six hours across a local midnight (rising, falling,
//! a gap, a late reading, a reading from the future), the watermark runs two days past the
//! end, and every transition is rendered into a warning (templates, evidence). Nothing of that
//! may panic, and what comes out must be sane.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::{Arc, LazyLock};
use yujing::config::{rules, Config};
use yujing::engine::Engine;
use yujing::event::ReadingRef;

static SAMPLE: LazyLock<Config> = LazyLock::new(|| {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    Config::load(&root).unwrap_or_else(|d| panic!("the sample configuration: {d:?}"))
});

/// 2026-11-28T22:00:00+08:00
const START: i64 = 1_795_874_400_000;
const STEP: i64 = 5 * 60_000;
const STEPS: i64 = 72;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let loaded = rules::load(&[("f.yaml".into(), text.into())], &SAMPLE.registry);
    let rules = match loaded {
        Ok(r) => r,
        Err(diags) => {
            assert!(!diags.is_empty());
            for d in &diags {
                assert!(d.pos.line >= 1 && d.pos.col >= 1, "{d}");
                assert!(!d.msg.is_empty());
            }
            return;
        }
    };
    let mut cfg = SAMPLE.clone();
    cfg.rules = rules;
    let mut engine = Engine::new(Arc::new(cfg));
    let src = engine.source("fuzz");
    let seed = data.iter().fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(*b));
    let devices: Vec<(String, Vec<String>)> = SAMPLE
        .registry
        .devices
        .iter()
        .map(|d| (d.id.clone(), d.metrics.clone()))
        .collect();
    for k in 0..STEPS {
        // a gap of half an hour in the middle
        if (30..36).contains(&k) {
            continue;
        }
        let ts = START + k * STEP;
        for (i, (device, metrics)) in devices.iter().enumerate() {
            for (j, metric) in metrics.iter().enumerate() {
                let wave = (seed >> ((i + j) % 48)) & 0xff;
                let up = if k < STEPS / 2 { k } else { STEPS - k };
                let value = wave as f64 * 0.5 + up as f64 * 10.0;
                let push = |engine: &mut Engine, ts: i64, value: f64| {
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
                push(&mut engine, ts, value);
                if k % 17 == 3 {
                    push(&mut engine, ts - 3 * STEP, value * 2.0); // late
                }
                if k % 23 == 5 {
                    push(&mut engine, ts + 400 * 86_400_000, value); // absurdly far ahead
                }
            }
        }
        engine.advance_to(ts);
    }
    engine.advance_to(START + STEPS * STEP + 2 * 86_400_000);
    let transitions = std::mem::take(&mut engine.transitions);
    for t in &transitions {
        let w = yujing::warnings::render(&engine, t);
        assert!(!w.rule.is_empty());
        assert!(!w.id.is_empty());
        assert!(w.value.is_none_or(f64::is_finite), "{:?}", w.value);
        assert!(w.threshold.is_none_or(f64::is_finite), "{:?}", w.threshold);
        let doc = serde_json::to_string(&w).expect("a warning serializes");
        assert!(doc.contains(&w.id));
    }
});
