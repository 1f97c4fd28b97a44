//! SQL over the archive (DataFusion): the tables `readings`, `tickets`, `warnings`,
//! `transitions` (each with a `day` column, the local date of its folder) and `sites`. Read
//! only: no DDL, no DML, no statements, no file paths as tables; nothing outside the archive
//! is reachable.

use super::tables::Table;
use chrono_tz::Tz;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::execution::options::ParquetReadOptions;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("no archive at {0} (is [archive] set in yujing.toml, and has the service run?)")]
    NoArchive(String),
    #[error("{0}")]
    Sql(String),
    #[error("the query took longer than {0} s")]
    Timeout(u64),
}

impl From<datafusion::error::DataFusionError> for QueryError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        // DataFusion's messages carry a context prefix per layer; the innermost says it
        QueryError::Sql(e.find_root().to_string())
    }
}

impl From<datafusion::arrow::error::ArrowError> for QueryError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        QueryError::Sql(e.to_string())
    }
}

/// The archive's tables registered in a fresh DataFusion session.
pub async fn session(dir: &Path) -> Result<SessionContext, QueryError> {
    if !dir.is_dir() {
        return Err(QueryError::NoArchive(dir.display().to_string()));
    }
    let config = SessionConfig::new()
        .with_target_partitions(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        )
        .with_information_schema(false);
    let ctx = SessionContext::new_with_config(config);
    for t in Table::ALL {
        let schema = t.schema();
        let root = dir.join(t.name());
        let present = if t.by_day() {
            root.is_dir()
        } else {
            root.join("sites.parquet").is_file()
        };
        if !present {
            // a table with nothing archived yet is empty, not an error
            let mut fields: Vec<Field> = schema.fields().iter().map(|f| (**f).clone()).collect();
            if t.by_day() {
                fields.push(Field::new("day", DataType::Utf8, false));
            }
            let empty = MemTable::try_new(Arc::new(Schema::new(fields)), vec![vec![]])?;
            ctx.register_table(t.name(), Arc::new(empty))?;
            continue;
        }
        let path = if t.by_day() {
            format!("{}/", root.display())
        } else {
            root.join("sites.parquet").display().to_string()
        };
        let mut opts = ParquetReadOptions::default().schema(&schema);
        if t.by_day() {
            opts = opts.table_partition_cols(vec![("day".to_string(), DataType::Utf8)]);
        }
        ctx.register_parquet(t.name(), &path, opts).await?;
    }
    Ok(ctx)
}

/// The answer to a query: at most `limit` rows.
pub struct Answer {
    pub batches: Vec<RecordBatch>,
    /// More rows matched than were returned.
    pub truncated: bool,
}

impl Answer {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// Run one read-only SQL statement, keeping at most `limit` rows.
pub async fn run(ctx: &SessionContext, sql: &str, limit: usize) -> Result<Answer, QueryError> {
    let read_only = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let df = ctx.sql_with_options(sql, read_only).await?;
    let df = df.limit(0, Some(limit.saturating_add(1)))?;
    let mut batches = df.collect().await?;
    let mut kept = 0usize;
    let mut truncated = false;
    for b in batches.iter_mut() {
        if kept + b.num_rows() > limit {
            *b = b.slice(0, limit - kept);
            truncated = true;
        }
        kept += b.num_rows();
    }
    batches.retain(|b| b.num_rows() > 0 || !truncated);
    Ok(Answer { batches, truncated })
}

/// The batches with every timestamp column shown in the time zone `tz`.
pub fn localize(batches: &[RecordBatch], tz: Tz) -> Result<Vec<RecordBatch>, QueryError> {
    let tz_name: Arc<str> = Arc::from(tz.name());
    batches
        .iter()
        .map(|b| {
            let schema = b.schema();
            let mut fields = Vec::with_capacity(schema.fields().len());
            let mut cols = Vec::with_capacity(b.num_columns());
            for (f, c) in schema.fields().iter().zip(b.columns()) {
                if let DataType::Timestamp(unit, Some(_)) = f.data_type() {
                    let to = DataType::Timestamp(*unit, Some(tz_name.clone()));
                    cols.push(datafusion::arrow::compute::cast(c, &to)?);
                    fields.push(Field::new(f.name(), to, f.is_nullable()));
                } else {
                    cols.push(c.clone());
                    fields.push((**f).clone());
                }
            }
            Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
        })
        .collect()
}

/// Text table of the batches (as a terminal shows it).
pub fn to_table(batches: &[RecordBatch]) -> Result<String, QueryError> {
    Ok(datafusion::arrow::util::pretty::pretty_format_batches(batches)?.to_string())
}

/// CSV with a header line.
pub fn to_csv(batches: &[RecordBatch]) -> Result<Vec<u8>, QueryError> {
    let mut out = Vec::new();
    {
        let mut w = datafusion::arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut out);
        for b in batches {
            w.write(b)?;
        }
    }
    Ok(out)
}

/// A JSON array of objects, one per row.
pub fn to_json(batches: &[RecordBatch]) -> Result<Vec<u8>, QueryError> {
    let mut w = datafusion::arrow::json::ArrayWriter::new(Vec::new());
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    w.write_batches(&refs)?;
    w.finish()?;
    let out = w.into_inner();
    // no rows: the writer writes nothing at all
    Ok(if out.is_empty() { b"[]".to_vec() } else { out })
}

/// `(site, t, value)` rows (t as epoch ms), ordered by site, as one series per site.
pub fn series(batches: &[RecordBatch]) -> Vec<(String, Vec<i64>, Vec<f64>)> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Float64Type, Int64Type};
    let mut out: Vec<(String, Vec<i64>, Vec<f64>)> = Vec::new();
    for b in batches {
        if b.num_columns() < 3 {
            continue;
        }
        let site = datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8);
        let (Ok(site), Some(t), Some(v)) = (
            site,
            b.column(1).as_primitive_opt::<Int64Type>(),
            b.column(2).as_primitive_opt::<Float64Type>(),
        ) else {
            continue;
        };
        let site = site.as_string::<i32>();
        for i in 0..b.num_rows() {
            if site.is_null(i) || t.is_null(i) || v.is_null(i) {
                continue;
            }
            let s = site.value(i);
            if out.last().is_none_or(|l| l.0 != s) {
                out.push((s.to_string(), Vec::new(), Vec::new()));
            }
            if let Some(l) = out.last_mut() {
                l.1.push(t.value(i));
                l.2.push(v.value(i));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{seal, Recorder};

    async fn archive_with_readings() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().expect("tmp");
        let tz: Tz = "Asia/Shanghai".parse().expect("tz");
        let mut r = Recorder::open(tmp.path(), tz).expect("open");
        // 2026-11-27 23:30 Beijing, then every 30 min for 4 h, two sites
        let t0 = 1_795_793_400_000;
        for i in 0..8 {
            let ts = t0 + i * 1_800_000;
            r.record("s1", "s1-pm", "pm10", 100.0 + i as f64, ts, ts, "mqtt");
            r.record("s2", "s2-pm", "pm10", 50.0, ts, ts, "hj212");
        }
        let f = r.rotate().expect("rotate").expect("file");
        seal(tmp.path(), &f, tz).expect("seal");
        tmp
    }

    #[tokio::test]
    async fn daily_aggregates_by_site_over_day_folders() {
        let tmp = archive_with_readings().await;
        let ctx = session(tmp.path()).await.expect("session");
        let a = run(
            &ctx,
            "SELECT site, day, count(*) AS n, avg(value) AS avg FROM readings \
             GROUP BY site, day ORDER BY site, day",
            100,
        )
        .await
        .expect("query");
        let text = to_table(&a.batches).expect("table");
        assert!(text.contains("| s1   | 2026-11-27 | 1 | 100.0 |"), "{text}");
        assert!(text.contains("| s1   | 2026-11-28 | 7 | 104.0 |"), "{text}");
        assert!(text.contains("| s2   | 2026-11-28 | 7 | 50.0  |"), "{text}");
        assert!(!a.truncated);
        // nothing archived yet: empty tables, not errors
        let w = run(&ctx, "SELECT count(*) AS n FROM warnings", 10)
            .await
            .expect("warnings");
        assert!(to_table(&w.batches).expect("t").contains("| 0 |"));
        let j = run(
            &ctx,
            "SELECT site, value FROM readings WHERE site = 's2' LIMIT 3",
            2,
        )
        .await
        .expect("limit");
        assert_eq!(j.rows(), 2);
        assert!(j.truncated);
        let json = String::from_utf8(to_json(&j.batches).expect("json")).expect("utf8");
        assert!(json.starts_with(r#"[{"site":"s2","value":50.0}"#), "{json}");
    }

    #[tokio::test]
    async fn nothing_outside_the_archive_is_reachable() {
        let tmp = archive_with_readings().await;
        let ctx = session(tmp.path()).await.expect("session");
        for sql in [
            "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
            "SELECT * FROM '/etc/passwd'",
            "INSERT INTO readings VALUES ('a','b','c',1.0,now(),now(),'x','2026-01-01')",
            "DROP TABLE readings",
            "SET datafusion.execution.batch_size = 1",
            "COPY readings TO '/tmp/x.csv'",
        ] {
            let e = run(&ctx, sql, 10).await.err();
            assert!(e.is_some(), "{sql} must be refused");
        }
        let e = run(&ctx, "SELEC 1", 10).await.err().expect("syntax error");
        assert!(e.to_string().contains("SELEC"), "{e}");
    }

    #[tokio::test]
    async fn timestamps_are_shown_in_the_local_time_zone() {
        let tmp = archive_with_readings().await;
        let ctx = session(tmp.path()).await.expect("session");
        let a = run(&ctx, "SELECT min(ts) AS first FROM readings", 1)
            .await
            .expect("query");
        let tz: Tz = "Asia/Shanghai".parse().expect("tz");
        let text = to_table(&localize(&a.batches, tz).expect("local")).expect("t");
        assert!(text.contains("2026-11-27T23:30:00+08:00"), "{text}");
    }

    #[tokio::test]
    async fn no_archive_is_a_clear_error() {
        let e = session(Path::new("/nonexistent/archive")).await.err();
        assert!(e.is_some_and(|e| e.to_string().contains("no archive at /nonexistent/archive")));
    }
}
