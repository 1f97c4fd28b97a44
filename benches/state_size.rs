//! Engine state per active series, measured: build the engine and fill N series (count/avg/max
//! tumbling windows), reading the process's resident memory before and after. This counts the
//! per-device tables and the window state.
//!
//!   cargo bench --bench state_size            # 1 M series
//!   cargo bench --bench state_size -- 100000  # another count

use std::fmt::Write as _;
use std::sync::Arc;
use yujing::config::{Config, EngineSettings};
use yujing::engine::{Engine, Input};

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let sites = (n / 1000).max(1);
    let mut y = String::from("sites:\n");
    for s in 0..sites {
        let _ = write!(
            y,
            "  - {{id: s{s}, name: s{s}, kind: environment, department: d, devices: ["
        );
        for d in 0..1000 {
            let _ = write!(
                y,
                "{}{{id: d{}, metrics: [pm10]}}",
                if d > 0 { ", " } else { "" },
                s * 1000 + d
            );
        }
        y.push_str("]}\n");
    }
    let rules = "rules:\n  - {id: r, title: t, metric: pm10, window: {type: tumbling, size: 1h}, aggregate: avg, above: {yellow: 80, red: 95}, message: x}\n";
    let cfg = Arc::new(
        Config::from_texts(&y, &[("r.yaml", rules)], EngineSettings::default()).expect("config"),
    );
    let ids: Vec<String> = (0..sites * 1000).map(|d| format!("d{d}")).collect();
    // the engine allocates its per-series tables up front: measure from before it exists
    let before = rss_bytes();
    let mut e = Engine::new(cfg);
    let src = e.source("bench");
    let base = 1_795_795_200_000i64;
    for (i, id) in ids.iter().enumerate() {
        let _ = e.push(&Input {
            site: None,
            device: id,
            metric: "pm10",
            value: (i % 90) as f64,
            ts: base + i as i64 % 1000,
            arrival: base,
            source: src,
        });
    }
    let after = rss_bytes();
    let series = ids.len();
    println!(
        "{series} active series, {} window entries: {:.0} bytes per series ({} MB resident for engine state)",
        e.window_entries(),
        (after.saturating_sub(before)) as f64 / series as f64,
        (after.saturating_sub(before)) / 1_000_000
    );
}
