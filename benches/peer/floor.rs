//! The peer workload (../shared/peers/README.md) as a one-off program: a floor for any engine.
//!
//! It knows everything an engine must find out or check: the column order, that sensor ids are
//! small integers (state is an array indexed by them, no lookup), that values have two decimals
//! and timestamps are epoch milliseconds, that nothing is later than 5 s (two windows open per
//! sensor at most, so a window closes when its slot is reused), and that no line is malformed
//! (it checks nothing and rejects nothing). It keeps no watermark, no rule, no warning state and
//! writes only the harness's CSV. What it costs is about what a straightforward program pays to
//! read the file and aggregate it on one core (a cleverer one, parsing with SIMD, would pay less);
//! benches/README.md compares it with yujing and the peers.
//!
//!     rustc -C opt-level=3 -C codegen-units=1 benches/peer/floor.rs -o /tmp/floor
//!     /tmp/floor INPUT_CSV OUTPUT_CSV
//!
//! It is std only and not part of the build.

use std::fs::File;
use std::io::{BufWriter, Read, Write};

const WINDOW_MS: i64 = 60_000;
const SENSORS: usize = 10_000;
/// Thresholds by sensor_id % 4 (pm10, noise_db, water_level, visitors), as ../shared/peers/common.py.
const THRESHOLDS: [f64; 4] = [50.0001, 68.0001, 2.5001, 130.0001];

#[derive(Clone, Copy)]
struct Slot {
    window: i64,
    count: u32,
    /// Sum and maximum in hundredths (the workload's values have two decimals).
    sum: i64,
    max: i64,
}

const EMPTY: Slot = Slot {
    window: i64::MIN,
    count: 0,
    sum: 0,
    max: i64::MIN,
};

fn emit(out: &mut impl Write, sensor: usize, s: &Slot) -> std::io::Result<()> {
    if s.count == 0 {
        return Ok(());
    }
    let avg = s.sum as f64 / 100.0 / s.count as f64;
    if avg > THRESHOLDS[sensor % 4] {
        writeln!(
            out,
            "{},{},{},{},{}",
            sensor,
            s.window * WINDOW_MS,
            s.count,
            avg,
            s.max as f64 / 100.0
        )?;
    }
    Ok(())
}

/// Digits up to `stop`, as an integer; the position after `stop`.
#[inline(always)]
fn number(b: &[u8], mut i: usize, stop: u8) -> (i64, usize) {
    let mut n = 0i64;
    while b[i] != stop {
        n = n * 10 + (b[i] - b'0') as i64;
        i += 1;
    }
    (n, i + 1)
}

/// A value with two decimals (`-12.34` or `7`), in hundredths; the position after the line.
#[inline(always)]
fn hundredths(b: &[u8], mut i: usize) -> (i64, usize) {
    let neg = b[i] == b'-';
    i += neg as usize;
    let (mut n, mut frac, mut dot) = (0i64, 0u32, false);
    while b[i] != b'\n' {
        if b[i] == b'.' {
            dot = true;
        } else {
            n = n * 10 + (b[i] - b'0') as i64;
            frac += dot as u32;
        }
        i += 1;
    }
    for _ in frac..2 {
        n *= 10;
    }
    (if neg { -n } else { n }, i + 1)
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: floor INPUT_CSV OUTPUT_CSV");
        std::process::exit(2);
    }
    let mut input = File::open(&args[1])?;
    let mut out = BufWriter::new(File::create(&args[2])?);
    // two windows per sensor: slot (window % 2)
    let mut slots = vec![[EMPTY; 2]; SENSORS];
    let mut buf = vec![0u8; 1 << 20];
    let mut have = 0;
    let mut rows = 0u64;
    loop {
        let n = input.read(&mut buf[have..])?;
        if n == 0 && have == 0 {
            break;
        }
        have += n;
        if n == 0 && buf[have - 1] != b'\n' {
            buf[have] = b'\n';
            have += 1;
        }
        // whole lines only; the rest waits for the next read
        let Some(end) = buf[..have].iter().rposition(|&c| c == b'\n') else {
            break;
        };
        let b = &buf[..end + 1];
        let mut i = 0;
        while i < b.len() {
            let (ts, j) = number(b, i, b',');
            let j = j + b[j..].iter().position(|&c| c == b',').unwrap_or(0) + 1; // site
            let (sensor, j) = number(b, j, b',');
            let j = j + b[j..].iter().position(|&c| c == b',').unwrap_or(0) + 1; // metric
            let (v, j) = hundredths(b, j);
            i = j;
            rows += 1;
            let w = ts.div_euclid(WINDOW_MS);
            let s = &mut slots[sensor as usize][(w & 1) as usize];
            if s.window != w {
                emit(&mut out, sensor as usize, s)?;
                *s = Slot { window: w, ..EMPTY };
            }
            s.count += 1;
            s.sum += v;
            s.max = s.max.max(v);
        }
        buf.copy_within(end + 1..have, 0);
        have -= end + 1;
        if n == 0 {
            break;
        }
    }
    for (sensor, pair) in slots.iter().enumerate() {
        for s in pair {
            emit(&mut out, sensor, s)?;
        }
    }
    out.flush()?;
    eprintln!("{rows} rows");
    Ok(())
}
