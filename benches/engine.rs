//! Criterion benches of the engine's hot paths: window update with rule lookup (10 k and 1 M
//! series, 10 and 1,000 rules), window close + rule evaluation, and CSV decoding.
//!
//!   cargo bench --bench engine
//!
//! The 1,000-rule set scopes 100 rules per metric to groups of 10 sites, as a county's
//! site-specific rules do: the rule index means a reading still touches one rule.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;
use yujing::config::{Config, EngineSettings};
use yujing::decode::csv::{scan_lines, CsvDecoder};
use yujing::engine::{Engine, Input};

const BASE: i64 = 1_795_795_200_000;
const METRICS: usize = 10;

/// `sites` sites of `devs` devices, each device measuring m0..m9.
fn sites_yaml(sites: usize, devs: usize) -> String {
    let mut s = String::from("sites:\n");
    for i in 0..sites {
        let _ = write!(
            s,
            "  - {{id: s{i}, name: s{i}, kind: environment, department: d, devices: ["
        );
        for d in 0..devs {
            let _ = write!(
                s,
                "{}{{id: d{}, metrics: [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9]}}",
                if d > 0 { ", " } else { "" },
                i * devs + d
            );
        }
        s.push_str("]}\n");
    }
    s
}

fn rules_yaml(n_rules: usize, sites: usize) -> String {
    let mut s = String::from("rules:\n");
    let per_metric = n_rules / METRICS;
    let group = sites / per_metric;
    for m in 0..METRICS {
        for g in 0..per_metric {
            let _ = write!(s, "  - {{id: r{m}_{g}, title: t, metric: m{m}, window: {{type: tumbling, size: 1m}}, aggregate: avg, above: {{yellow: 80, red: 95}}, message: x");
            if per_metric > 1 {
                let ids: Vec<String> = (g * group..(g + 1) * group)
                    .map(|i| format!("s{i}"))
                    .collect();
                let _ = write!(s, ", scope: {{sites: [{}]}}", ids.join(", "));
            }
            s.push_str("}\n");
        }
    }
    s
}

fn config(sites: usize, devs: usize, rules: usize) -> Arc<Config> {
    let c = Config::from_texts(
        &sites_yaml(sites, devs),
        &[("r.yaml", &rules_yaml(rules, sites))],
        EngineSettings::default(),
    );
    Arc::new(c.unwrap_or_else(|e| {
        panic!(
            "{}",
            e.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    }))
}

/// Readings cycling over every series, one a millisecond of event time: each series sees a
/// reading per `series` ms, so windows close steadily.
struct Feed {
    devices: Vec<String>,
    metrics: Vec<String>,
}

impl Feed {
    fn new(n_devices: usize) -> Feed {
        Feed {
            devices: (0..n_devices).map(|d| format!("d{d}")).collect(),
            metrics: (0..METRICS).map(|m| format!("m{m}")).collect(),
        }
    }
    fn run(&self, e: &mut Engine, src: usize, start: i64, n: usize) -> i64 {
        let series = self.devices.len() * METRICS;
        for i in 0..n {
            let k = (start as usize + i) % series;
            let ts = BASE + start + i as i64;
            let v = ((k * 7 + i) % 100) as f64;
            let _ = e.push(&Input {
                site: None,
                device: &self.devices[k / METRICS],
                metric: &self.metrics[k % METRICS],
                value: v,
                ts,
                arrival: ts,
                source: src,
            });
            e.transitions.clear();
        }
        start + n as i64
    }
}

fn window_update(c: &mut Criterion) {
    let mut g = c.benchmark_group("window_update");
    g.sample_size(10);
    // (label, sites, devices per site, rules)
    for (series_label, sites, devs) in [("10k_series", 100, 10), ("1M_series", 1000, 100)] {
        for rules in [10, 1000] {
            let cfg = config(sites, devs, rules);
            let feed = Feed::new(sites * devs);
            let mut e = Engine::new(cfg);
            let src = e.source("bench");
            // warm: every series has state
            let mut t = feed.run(&mut e, src, 0, sites * devs * METRICS);
            const BATCH: usize = 200_000;
            g.throughput(Throughput::Elements(BATCH as u64));
            g.bench_with_input(
                BenchmarkId::new(series_label, format!("{rules}_rules")),
                &rules,
                |b, _| {
                    b.iter(|| {
                        t = feed.run(&mut e, src, t, BATCH);
                    })
                },
            );
        }
    }
    g.finish();
}

fn rule_evaluation(c: &mut Criterion) {
    let mut g = c.benchmark_group("rule_evaluation");
    g.sample_size(10);
    for rules in [10, 1000] {
        let cfg = config(100, 10, rules);
        let feed = Feed::new(1000);
        // 10 k series with an open window each, then the watermark closes them all
        g.throughput(Throughput::Elements(10_000));
        g.bench_function(
            BenchmarkId::new("close_10k_windows", format!("{rules}_rules")),
            |b| {
                b.iter_batched(
                    || {
                        let mut e = Engine::new(cfg.clone());
                        let src = e.source("bench");
                        feed.run(&mut e, src, 0, 10_000);
                        e
                    },
                    |mut e| {
                        e.advance_to(BASE + 120_000);
                        black_box(e.transitions.len())
                    },
                    criterion::BatchSize::LargeInput,
                )
            },
        );
    }
    g.finish();
}

fn decode(c: &mut Criterion) {
    let lines: Vec<String> = (0..100_000)
        .map(|i| {
            format!(
                "{},{},{},pm10,{}.{:02}",
                1_700_000_000_000i64 + i,
                i % 1000,
                i % 10_000,
                30 + i % 50,
                i % 100
            )
        })
        .collect();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("csv_line", |b| {
        b.iter(|| {
            let mut d = CsvDecoder::new(chrono_tz::UTC);
            let mut sum = 0.0;
            for l in &lines {
                let _ = d.decode(l.as_bytes(), &mut |r| sum += r.value);
            }
            black_box(sum)
        })
    });
    // the same lines as one block of a file: lines and fields found in one pass (replay's way)
    let block = lines.join("\n") + "\n";
    g.bench_function("csv_block", |b| {
        b.iter(|| {
            let mut d = CsvDecoder::new(chrono_tz::UTC);
            let mut sum = 0.0;
            let _ = scan_lines(block.as_bytes(), 1 << 16, |s| -> Result<(), ()> {
                let _ = d.decode_split(&s, &mut |r| sum += r.value);
                Ok(())
            });
            black_box(sum)
        })
    });
    g.finish();
}

criterion_group!(benches, window_update, rule_evaluation, decode);
criterion_main!(benches);
