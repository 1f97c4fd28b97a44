//! History: readings, 12345 tickets, warnings and transitions as Parquet files, one folder per
//! local day (`<dir>/<table>/day=YYYY-MM-DD/*.parquet`, Hive style), day folders older than the
//! retention deleted; the site list beside them (`<dir>/sites/sites.parquet`). SQL over them
//! with [`query`] (`yujing query`, `POST /api/v1/query`).
//!
//! - Readings: [`Recorder`] appends every processed reading to a staging file, flushed before
//!   the input is acknowledged (a `kill -9` loses none), and every `flush_every` starts a new
//!   one; [`seal`] turns a finished staging file into one Parquet part per day
//!   (`part-<staging number>.parquet`, so sealing the same file twice after a crash rewrites the
//!   same parts) and deletes it. Staging files a stopped run left are sealed at the next start.
//! - Tickets, warnings, transitions: [`export`] rewrites whole days of them from the store
//!   (`part-0.parquet`) whenever a row of that day changed: a warning is acknowledged, handled
//!   and closed long after the day it was raised.

pub mod export;
pub mod keeper;
pub mod query;
pub mod tables;

use crate::time::Ts;
use chrono::{NaiveDate, TimeZone};
use chrono_tz::Tz;
use std::path::{Path, PathBuf};
use tables::{Rows, Table};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("archive staging file: {0}")]
    Csv(#[from] csv::Error),
    #[error("arrow: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("parquet: {0}")]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
}

impl ArchiveError {
    pub fn io(path: &Path, source: std::io::Error) -> ArchiveError {
        ArchiveError::Io {
            path: path.to_path_buf(),
            err: source,
        }
    }
}

/// The local date of `ts` (event time, ms) in the configured time zone: its day folder.
pub fn day_of(ts: Ts, tz: Tz) -> NaiveDate {
    match tz.timestamp_millis_opt(ts) {
        chrono::LocalResult::Single(t) => t.date_naive(),
        _ => NaiveDate::default(),
    }
}

/// Start and end (exclusive) of a local day, in ms.
pub fn day_bounds(day: NaiveDate, tz: Tz) -> (Ts, Ts) {
    let start = |d: NaiveDate| -> Ts {
        let t = d.and_hms_opt(0, 0, 0).unwrap_or_default();
        tz.from_local_datetime(&t)
            .earliest()
            .map(|t| t.timestamp_millis())
            .unwrap_or_else(|| t.and_utc().timestamp_millis())
    };
    let next = day.succ_opt().unwrap_or(day);
    (start(day), start(next))
}

/// The time zone the archive's days are local to (as the service that wrote it had it).
pub fn timezone(dir: &Path) -> Option<Tz> {
    std::fs::read_to_string(dir.join("timezone"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// The folder of one day of a table.
pub fn day_dir(dir: &Path, table: Table, day: NaiveDate) -> PathBuf {
    dir.join(table.name()).join(format!("day={day}"))
}

fn staging_dir(dir: &Path) -> PathBuf {
    dir.join("staging")
}

/// Staging files in `dir`, oldest first, with their numbers.
fn staged(dir: &Path) -> Result<Vec<(u64, PathBuf)>, ArchiveError> {
    let sd = staging_dir(dir);
    let mut out = Vec::new();
    let list = match std::fs::read_dir(&sd) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(ArchiveError::io(&sd, e)),
    };
    for e in list.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_prefix("readings-")
            .and_then(|r| r.strip_suffix(".csv"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push((n, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Appends processed readings to the current staging file.
pub struct Recorder {
    dir: PathBuf,
    seq: u64,
    out: csv::Writer<std::fs::File>,
    rows: u64,
    scratch: String,
    /// Readings that could not be recorded, and why the last one could not.
    pub failed: u64,
    pub last_error: Option<String>,
}

impl Recorder {
    /// Open the archive at `dir`, sealing what an earlier run left in staging.
    pub fn open(dir: &Path, tz: Tz) -> Result<Recorder, ArchiveError> {
        let mut seq = 0;
        for (n, path) in staged(dir)? {
            seal(dir, &path, tz)?;
            seq = n;
        }
        // parts of sealed files keep their numbers: never reuse one
        seq = seq.max(last_part(dir)?);
        let sd = staging_dir(dir);
        std::fs::create_dir_all(&sd).map_err(|e| ArchiveError::io(&sd, e))?;
        // the zone its days are local to, for whoever reads it without yujing.toml
        let zone = dir.join("timezone");
        std::fs::write(&zone, tz.name()).map_err(|e| ArchiveError::io(&zone, e))?;
        let (out, seq) = Recorder::create(dir, seq + 1)?;
        Ok(Recorder {
            dir: dir.to_path_buf(),
            seq,
            out,
            rows: 0,
            scratch: String::new(),
            failed: 0,
            last_error: None,
        })
    }

    fn create(dir: &Path, seq: u64) -> Result<(csv::Writer<std::fs::File>, u64), ArchiveError> {
        let path = staging_dir(dir).join(format!("readings-{seq:010}.csv"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| ArchiveError::io(&path, e))?;
        let out = csv::WriterBuilder::new()
            .has_headers(false)
            .buffer_capacity(64 * 1024)
            .from_writer(file);
        Ok((out, seq))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Rows in the current staging file.
    pub fn pending(&self) -> u64 {
        self.rows
    }

    /// Record one processed reading. A failure (disk full) is counted in [`Recorder::failed`]
    /// and remembered, never in the way of processing.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        site: &str,
        device: &str,
        metric: &str,
        value: f64,
        ts: Ts,
        arrival: Ts,
        source: &str,
    ) {
        use std::fmt::Write;
        // Display of f64 is the shortest text that reads back as the same number
        self.scratch.clear();
        let _ = write!(self.scratch, "{value}\t{ts}\t{arrival}");
        let mut nums = self.scratch.split('\t');
        let (v, t, a) = (
            nums.next().unwrap_or_default(),
            nums.next().unwrap_or_default(),
            nums.next().unwrap_or_default(),
        );
        match self
            .out
            .write_record([site, device, metric, v, t, a, source])
        {
            Ok(()) => self.rows += 1,
            Err(e) => {
                self.failed += 1;
                self.last_error = Some(e.to_string());
            }
        }
    }

    /// Hand what was recorded to the operating system (it survives the process dying).
    pub fn sync(&mut self) -> Result<(), ArchiveError> {
        self.out.flush().map_err(|e| ArchiveError::io(&self.dir, e))
    }

    /// Start a new staging file. Returns the finished one (to [`seal`]), or `None` if nothing
    /// was recorded since the last rotation.
    pub fn rotate(&mut self) -> Result<Option<PathBuf>, ArchiveError> {
        if self.rows == 0 {
            return Ok(None);
        }
        self.sync()?;
        let done = staging_dir(&self.dir).join(format!("readings-{:010}.csv", self.seq));
        let (out, seq) = Recorder::create(&self.dir, self.seq + 1)?;
        self.out = out;
        self.seq = seq;
        self.rows = 0;
        Ok(Some(done))
    }
}

/// The highest part number already in the readings folders.
fn last_part(dir: &Path) -> Result<u64, ArchiveError> {
    let root = dir.join(Table::Readings.name());
    let mut max = 0;
    let Ok(days) = std::fs::read_dir(&root) else {
        return Ok(0);
    };
    for d in days.flatten() {
        let Ok(files) = std::fs::read_dir(d.path()) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name();
            if let Some(n) = name
                .to_string_lossy()
                .strip_prefix("part-")
                .and_then(|r| r.strip_suffix(".parquet"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                max = max.max(n);
            }
        }
    }
    Ok(max)
}

/// One reading read back from staging.
struct Staged {
    site: String,
    device: String,
    metric: String,
    value: f64,
    ts: Ts,
    arrival: Ts,
    source: String,
}

/// Turn the staging file `path` into Parquet parts, one per local day, and delete it. A line
/// cut short by a crash is skipped (and counted in the log). Returns the readings archived.
pub fn seal(dir: &Path, path: &Path, tz: Tz) -> Result<usize, ArchiveError> {
    let seq = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("readings-"))
        .and_then(|n| n.strip_suffix(".csv"))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    let mut rd = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_path(path)?;
    let mut rows: Vec<Staged> = Vec::new();
    let mut broken = 0usize;
    for rec in rd.records() {
        let Ok(rec) = rec else {
            broken += 1;
            continue;
        };
        let parsed = (|| {
            Some(Staged {
                site: rec.get(0)?.to_string(),
                device: rec.get(1)?.to_string(),
                metric: rec.get(2)?.to_string(),
                value: rec.get(3)?.parse().ok()?,
                ts: rec.get(4)?.parse().ok()?,
                arrival: rec.get(5)?.parse().ok()?,
                source: rec.get(6)?.to_string(),
            })
        })();
        match parsed {
            Some(s) if rec.len() == 7 => rows.push(s),
            _ => broken += 1,
        }
    }
    if broken > 0 {
        tracing::warn!(file = %path.display(), lines = broken, "archive staging lines cut short (a crash while writing) were skipped");
    }
    let n = rows.len();
    let mut by_day: std::collections::BTreeMap<NaiveDate, Vec<Staged>> = Default::default();
    for r in rows {
        by_day.entry(day_of(r.ts, tz)).or_default().push(r);
    }
    for (day, mut list) in by_day {
        list.sort_by(|a, b| {
            (&a.site, &a.device, &a.metric, a.ts).cmp(&(&b.site, &b.device, &b.metric, b.ts))
        });
        let mut b = Rows::new(Table::Readings);
        for r in &list {
            b.cols[0].text(Some(&r.site));
            b.cols[1].text(Some(&r.device));
            b.cols[2].text(Some(&r.metric));
            b.cols[3].float(r.value);
            b.cols[4].time(Some(r.ts));
            b.cols[5].time(Some(r.arrival));
            b.cols[6].text(Some(&r.source));
        }
        let batch = b.finish()?;
        let file = day_dir(dir, Table::Readings, day).join(format!("part-{seq:010}.parquet"));
        tables::write_parquet(&file, &batch)?;
    }
    std::fs::remove_file(path).map_err(|e| ArchiveError::io(path, e))?;
    Ok(n)
}

/// Delete day folders of every table older than `retention_days` before `today` (0: keep
/// everything). Returns the folders deleted.
pub fn expire(dir: &Path, retention_days: u32, today: NaiveDate) -> Result<usize, ArchiveError> {
    if retention_days == 0 {
        return Ok(0);
    }
    let oldest = today - chrono::Days::new(u64::from(retention_days));
    let mut n = 0;
    for t in Table::ALL.iter().filter(|t| t.by_day()) {
        let root = dir.join(t.name());
        let Ok(days) = std::fs::read_dir(&root) else {
            continue;
        };
        for d in days.flatten() {
            let name = d.file_name();
            let Some(day) = name
                .to_string_lossy()
                .strip_prefix("day=")
                .and_then(|s| s.parse::<NaiveDate>().ok())
            else {
                continue;
            };
            if day < oldest {
                std::fs::remove_dir_all(d.path()).map_err(|e| ArchiveError::io(&d.path(), e))?;
                n += 1;
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_become_parquet_by_local_day_and_a_restart_seals_what_was_left() {
        let tmp = tempfile::tempdir().expect("tmp");
        let tz: Tz = "Asia/Shanghai".parse().expect("tz");
        let mut r = Recorder::open(tmp.path(), tz).expect("open");
        // 2026-11-27 23:30 and 2026-11-28 00:30 in Beijing
        let late = 1_795_793_400_000;
        r.record("s1", "d1", "pm10", 80.5, late, late, "mqtt");
        r.record("s1", "d1", "pm10", 1e-300, late + 3_600_000, late, "mqtt");
        let done = r.rotate().expect("rotate").expect("a file");
        assert_eq!(seal(tmp.path(), &done, tz).expect("seal"), 2);
        assert!(!done.exists());
        assert!(day_dir(
            tmp.path(),
            Table::Readings,
            "2026-11-27".parse().expect("d")
        )
        .join("part-0000000001.parquet")
        .exists());
        assert!(day_dir(
            tmp.path(),
            Table::Readings,
            "2026-11-28".parse().expect("d")
        )
        .join("part-0000000001.parquet")
        .exists());
        // a run that dies leaves its staging file, half a line at its end
        r.record("s2", "d2", "noise", 61.0, late, late, "hj212");
        r.sync().expect("sync");
        drop(r);
        let left = staged(tmp.path()).expect("staged");
        assert_eq!(left.len(), 1);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&left[0].1)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"s2,d2,noi"))
            .expect("append");
        let r = Recorder::open(tmp.path(), tz).expect("reopen");
        assert!(
            staged(tmp.path()).expect("staged").len() == 1,
            "only the new one"
        );
        assert!(r.seq > left[0].0);
        assert!(day_dir(
            tmp.path(),
            Table::Readings,
            "2026-11-27".parse().expect("d")
        )
        .join(format!("part-{:010}.parquet", left[0].0))
        .exists());
    }

    #[test]
    fn retention_deletes_old_day_folders_only() {
        let tmp = tempfile::tempdir().expect("tmp");
        for d in ["2025-01-01", "2026-11-01"] {
            std::fs::create_dir_all(tmp.path().join("readings").join(format!("day={d}")))
                .expect("mk");
            std::fs::create_dir_all(tmp.path().join("warnings").join(format!("day={d}")))
                .expect("mk");
        }
        let today: NaiveDate = "2026-11-28".parse().expect("d");
        assert_eq!(expire(tmp.path(), 0, today).expect("keep"), 0);
        assert_eq!(expire(tmp.path(), 30, today).expect("expire"), 2);
        assert!(tmp.path().join("readings/day=2026-11-01").exists());
        assert!(!tmp.path().join("warnings/day=2025-01-01").exists());
    }
}
