//! `yujing query` over a large archive: a per-site daily aggregate over N archived readings
//! (default 100 M: 1,000 sites, a PM10 and a noise reading every 2 minutes each, 70 days), the
//! way the archive writes them (one Parquet file per day). The archive is generated once into
//! the target folder and reused. Never pass/fail: numbers to quote (benches/README.md).
//!
//! ```text
//! cargo bench --bench query -- [--readings 100000000]
//! ```

#[path = "support/process.rs"]
#[allow(dead_code)]
mod process;

use process::arg;
use std::time::Instant;
use yujing::archive::tables::{write_parquet, Rows, Table};
use yujing::archive::{day_dir, query};

const SITES: usize = 1_000;
const DAY_MS: i64 = 86_400_000;

fn generate(dir: &std::path::Path, readings: usize) {
    let per_day = SITES * 2 * 720; // two metrics, every 2 minutes
    let days = readings.div_ceil(per_day);
    let t0: i64 = 1_764_000_000_000 - 1_764_000_000_000 % DAY_MS - 8 * 3_600_000;
    let started = Instant::now();
    let mut written = 0;
    let mut rng = fastrand::Rng::with_seed(20261128);
    for d in 0..days {
        let mut b = Rows::new(Table::Readings);
        let n = per_day.min(readings - written);
        let day0 = t0 + d as i64 * DAY_MS;
        let mut k = 0;
        'rows: for site in 0..SITES {
            let (s, dev) = (format!("s{site:04}"), format!("s{site:04}-m"));
            for m in ["pm10", "noise"] {
                for i in 0..720 {
                    if k == n {
                        break 'rows;
                    }
                    // real sensors: values with noise (0.1 resolution), clocks a little off
                    let ts = day0 + i * 120_000 + rng.i64(-3_000..3_000);
                    let v = ((40.0 + 60.0 * rng.f64() + (i as f64 / 90.0).sin() * 20.0) * 10.0)
                        .round()
                        / 10.0;
                    let c = &mut b.cols;
                    c[0].text(Some(&s));
                    c[1].text(Some(&dev));
                    c[2].text(Some(m));
                    c[3].float(v);
                    c[4].time(Some(ts));
                    c[5].time(Some(ts + 500));
                    c[6].text(Some("mqtt"));
                    k += 1;
                }
            }
        }
        let day = chrono::DateTime::from_timestamp_millis(day0 + 8 * 3_600_000)
            .map(|t| t.date_naive())
            .unwrap_or_default();
        let file = day_dir(dir, Table::Readings, day).join("part-0000000001.parquet");
        write_parquet(&file, &b.finish().expect("batch")).expect("write");
        written += k;
    }
    eprintln!(
        "generated {written} readings in {days} day files in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn du(dir: &std::path::Path) -> u64 {
    let mut n = 0;
    if let Ok(list) = std::fs::read_dir(dir) {
        for e in list.flatten() {
            let p = e.path();
            n += if p.is_dir() {
                du(&p)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            };
        }
    }
    n
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let readings = arg("--readings", 100_000_000) as usize;
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let dir = std::path::Path::new(&target).join(format!("bench-archive-noisy-{readings}"));
    if !dir.join("readings").is_dir() {
        let tmp = dir.with_extension("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        generate(&tmp, readings);
        std::fs::rename(&tmp, &dir).expect("rename");
    }
    eprintln!("archive {}: {:.2} GB", dir.display(), du(&dir) as f64 / 1e9);
    let sql = "SELECT site, day, count(*) AS n, avg(value) AS avg, max(value) AS max \
               FROM readings WHERE metric = 'pm10' GROUP BY site, day";
    for run in 1..=3 {
        let t = Instant::now();
        let ctx = query::session(&dir).await.expect("session");
        let a = query::run(&ctx, sql, 10_000_000).await.expect("query");
        let s = t.elapsed().as_secs_f64();
        println!(
            "run {run}: per-site daily PM10 aggregate over {readings} archived readings: {} rows in {s:.2} s ({:.0} M readings/s)",
            a.rows(),
            readings as f64 / s / 1e6
        );
    }
}
