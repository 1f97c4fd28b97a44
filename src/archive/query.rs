//! SQL over the archive (DataFusion): the tables `readings`, `tickets`, `warnings`,
//! `transitions` (each with a `day` column, the local date of its folder) and `sites`. Read
//! only: no DDL, no DML, no statements, no file paths as tables; nothing outside the archive
//! is reachable.
//!
//! A query is hostile input (any operator token may send one): [`Limits`] bound its text, the
//! depth of its expressions, the memory its operators may hold and the size of its answer, and
//! [`run_isolated`] plans and runs it on a thread of its own with a large stack (DataFusion's
//! planner and optimizer recurse over expression trees), which a cancellation stops.

use super::tables::Table;
use chrono_tz::Tz;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::execution::options::ParquetReadOptions;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::sqlparser::ast::{Expr, Query, Visit, Visitor};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("no archive at {0} (is [archive] set in yujing.toml, and has the service run?)")]
    NoArchive(String),
    #[error("{0}")]
    Sql(String),
    #[error("the query took longer than {0} s")]
    Timeout(u64),
    #[error("the query is {0} bytes long; the limit is {1}")]
    TooLong(usize, usize),
    #[error("the query nests expressions or subqueries more than {0} deep (a long chain of OR is one `IN (...)`)")]
    TooDeep(usize),
    #[error("{0}")]
    TooComplex(String),
    #[error("the query needs more memory than the {0} MiB a query may use: aggregate more, or narrow it by day or site")]
    Memory(usize),
    #[error("the query was cancelled")]
    Cancelled,
    #[error("the query failed: {0}")]
    Internal(String),
}

impl QueryError {
    /// The caller's fault (a bad or too large query), not the service's.
    pub fn is_client(&self) -> bool {
        matches!(
            self,
            QueryError::Sql(_)
                | QueryError::TooLong(..)
                | QueryError::TooDeep(_)
                | QueryError::TooComplex(_)
                | QueryError::Memory(_)
        )
    }
}

impl From<datafusion::error::DataFusionError> for QueryError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        // DataFusion's messages carry a context prefix per layer; the innermost says it
        let root = e.find_root();
        if matches!(
            root,
            datafusion::error::DataFusionError::ResourcesExhausted(_)
        ) {
            return QueryError::Memory(0);
        }
        QueryError::Sql(root.to_string())
    }
}

impl From<datafusion::arrow::error::ArrowError> for QueryError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        QueryError::Sql(e.to_string())
    }
}

/// What one query may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The SQL text, in bytes.
    pub sql_bytes: usize,
    /// Expressions and subqueries nested in one another.
    pub depth: usize,
    /// Tokens of the text (words, numbers, operators, punctuation).
    pub tokens: usize,
    /// `UNION`, `INTERSECT`, `EXCEPT` in the text; tables and subqueries in `FROM` and `JOIN`.
    /// (Planning is not interruptible: these bound its time.)
    pub set_operations: usize,
    pub relations: usize,
    /// Memory DataFusion's operators may reserve (sorts, joins, aggregates); `None`: no pool.
    /// What scalar functions allocate is not in it: the API runs queries in a worker process
    /// with an address-space limit for that (`api::query`).
    pub memory: Option<usize>,
    /// The answer's rows as JSON ([`json_body`]), in bytes; rows past it are cut off as past
    /// the row limit are. Batches are no longer pulled once their Arrow data is twice this.
    pub answer_bytes: usize,
    /// Wall time.
    pub timeout: Duration,
}

/// The stack of the thread a query is planned and run on.
pub const QUERY_STACK: usize = 64 << 20;

impl Limits {
    /// The HTTP API's (`POST /api/v1/query`): anyone with an operator token.
    pub const API: Limits = Limits {
        sql_bytes: 16 << 10,
        depth: 256,
        tokens: 4_000,
        set_operations: 64,
        relations: 64,
        memory: Some(512 << 20),
        answer_bytes: 16 << 20,
        timeout: Duration::from_secs(30),
    };
    /// The command line's (`yujing query`, `yujing fit`): whoever may read the archive's files;
    /// the same bounds on the text, none on memory, answer size or time.
    pub const CLI: Limits = Limits {
        sql_bytes: 16 << 10,
        depth: 256,
        tokens: 4_000,
        set_operations: 64,
        relations: 64,
        memory: None,
        answer_bytes: usize::MAX,
        timeout: Duration::from_secs(u64::MAX / 4),
    };

    fn memory_mib(&self) -> usize {
        self.memory.map_or(0, |m| m >> 20)
    }
}

/// The archive's tables registered in a fresh DataFusion session (without a memory limit).
pub async fn session(dir: &Path) -> Result<SessionContext, QueryError> {
    session_with(dir, &Limits::CLI).await
}

/// The archive's tables registered in a fresh DataFusion session bounded by `limits`.
pub async fn session_with(dir: &Path, limits: &Limits) -> Result<SessionContext, QueryError> {
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
    let mut rt = RuntimeEnvBuilder::new();
    if let Some(m) = limits.memory {
        // bounded: past its memory a query fails rather than spilling gigabytes to disk
        use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
        rt = rt.with_memory_limit(m, 1.0).with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        );
    }
    let ctx = SessionContext::new_with_config_rt(config, rt.build_arc()?);
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

/// Counts the nesting of expressions and subqueries in a statement, stopping past `limit`, and
/// the relations (tables, subqueries, table functions) in its `FROM` and `JOIN` clauses.
struct Depth {
    now: usize,
    limit: usize,
    relations: usize,
}

impl Depth {
    fn enter(&mut self) -> ControlFlow<()> {
        self.now += 1;
        if self.now > self.limit {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

impl Visitor for Depth {
    type Break = ();
    fn pre_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
        self.enter()
    }
    fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
        self.now -= 1;
        ControlFlow::Continue(())
    }
    fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.enter()
    }
    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.now -= 1;
        ControlFlow::Continue(())
    }
    fn pre_visit_table_factor(
        &mut self,
        _: &datafusion::sql::sqlparser::ast::TableFactor,
    ) -> ControlFlow<()> {
        self.relations += 1;
        ControlFlow::Continue(())
    }
}

/// Refuse a statement that is not one query, or is too long, too deep or too large to plan
/// quickly, before DataFusion plans it.
fn check_shape(
    ctx: &SessionContext,
    sql: &str,
    limits: &Limits,
) -> Result<datafusion::sql::parser::Statement, QueryError> {
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    use datafusion::sql::sqlparser::{ast, dialect::GenericDialect, keywords::Keyword};
    if sql.len() > limits.sql_bytes {
        return Err(QueryError::TooLong(sql.len(), limits.sql_bytes));
    }
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize()
        .map_err(|e| QueryError::Sql(e.to_string()))?;
    let (mut n, mut set_ops) = (0usize, 0usize);
    for t in &tokens {
        match t {
            Token::Whitespace(_) => {}
            Token::Word(w) => {
                n += 1;
                if matches!(
                    w.keyword,
                    Keyword::UNION | Keyword::INTERSECT | Keyword::EXCEPT
                ) {
                    set_ops += 1;
                }
            }
            _ => n += 1,
        }
    }
    if n > limits.tokens {
        return Err(QueryError::TooComplex(format!(
            "the query has {n} tokens; the limit is {}",
            limits.tokens
        )));
    }
    if set_ops > limits.set_operations {
        return Err(QueryError::TooComplex(format!(
            "the query has {set_ops} UNION, INTERSECT or EXCEPT; the limit is {}",
            limits.set_operations
        )));
    }
    let state = ctx.state();
    let dialect = state.config().options().sql_parser.dialect;
    let stmt = state.sql_to_statement(sql, &dialect)?;
    // one query: no EXPLAIN, SET, COPY, DDL or DML (refused again when planned)
    let datafusion::sql::parser::Statement::Statement(s) = &stmt else {
        return Err(QueryError::Sql(
            "only a query (SELECT ... or WITH ... SELECT ...) may run here".into(),
        ));
    };
    if !matches!(**s, ast::Statement::Query(_)) {
        return Err(QueryError::Sql(
            "only a query (SELECT ... or WITH ... SELECT ...) may run here".into(),
        ));
    }
    let mut d = Depth {
        now: 0,
        limit: limits.depth,
        relations: 0,
    };
    if s.visit(&mut d).is_break() {
        return Err(QueryError::TooDeep(limits.depth));
    }
    if d.relations > limits.relations {
        return Err(QueryError::TooComplex(format!(
            "the query reads {} tables or subqueries; the limit is {}",
            d.relations, limits.relations
        )));
    }
    Ok(stmt)
}

/// The answer to a query: at most `limit` rows.
pub struct Answer {
    pub schema: datafusion::arrow::datatypes::SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// More rows matched than were returned.
    pub truncated: bool,
}

impl Answer {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// Run one read-only SQL statement, keeping at most `limit` rows (without a bound on the
/// answer's bytes).
pub async fn run(ctx: &SessionContext, sql: &str, limit: usize) -> Result<Answer, QueryError> {
    run_with(ctx, sql, limit, &Limits::CLI).await
}

/// Run one read-only SQL statement within `limits`, keeping at most `limit` rows. Batches are
/// pulled until `limit` rows or twice `answer_bytes` of Arrow data have come.
pub async fn run_with(
    ctx: &SessionContext,
    sql: &str,
    limit: usize,
    limits: &Limits,
) -> Result<Answer, QueryError> {
    use tokio_stream::StreamExt;
    let stmt = check_shape(ctx, sql, limits)?;
    let read_only = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let plan = ctx.state().statement_to_plan(stmt).await?;
    read_only.verify_plan(&plan)?;
    let df = ctx.execute_logical_plan(plan).await?;
    let df = df.limit(0, Some(limit.saturating_add(1)))?;
    let memory = |e: datafusion::error::DataFusionError| match QueryError::from(e) {
        QueryError::Memory(_) => QueryError::Memory(limits.memory_mib()),
        e => e,
    };
    let mut stream = df.execute_stream().await.map_err(memory)?;
    let schema = stream.schema();
    let (mut batches, mut rows, mut bytes) = (Vec::new(), 0usize, 0usize);
    let mut truncated = false;
    while let Some(b) = stream.next().await {
        let b = b.map_err(memory)?;
        rows += b.num_rows();
        bytes = bytes.saturating_add(b.get_array_memory_size());
        batches.push(b);
        if rows > limit {
            truncated = true;
            break;
        }
        if bytes > limits.answer_bytes.saturating_mul(2) {
            // more than the answer can carry: what came is cut to size by the writer
            truncated = true;
            break;
        }
    }
    // at most `limit` rows
    let mut kept = 0usize;
    for b in batches.iter_mut() {
        if kept + b.num_rows() > limit {
            *b = b.slice(0, limit - kept);
        }
        kept += b.num_rows();
    }
    batches.retain(|b| b.num_rows() > 0);
    Ok(Answer {
        schema,
        batches,
        truncated,
    })
}

/// The answer as the API sends it, `{"columns": [...], "rows": [{...}], "truncated": ...}`,
/// timestamps in `tz`, its rows cut so the whole is at most about `max_bytes` (always the
/// columns; a row is never cut in half).
pub fn json_body(answer: &Answer, tz: Tz, max_bytes: usize) -> Result<Vec<u8>, QueryError> {
    use datafusion::arrow::json::LineDelimitedWriter;
    let local = localize(&answer.batches, tz)?;
    let columns: Vec<String> = answer
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut out = br#"{"columns":"#.to_vec();
    out.extend_from_slice(
        serde_json::to_string(&columns)
            .map_err(|e| QueryError::Internal(e.to_string()))?
            .as_bytes(),
    );
    out.extend_from_slice(br#","rows":["#);
    let mut truncated = answer.truncated;
    let mut first = true;
    let mut row = Vec::new();
    'rows: for b in &local {
        for i in 0..b.num_rows() {
            row.clear();
            {
                let mut w = LineDelimitedWriter::new(&mut row);
                w.write(&b.slice(i, 1))?;
                w.finish()?;
            }
            while row.last().is_some_and(|c| c.is_ascii_whitespace()) {
                row.pop();
            }
            if out.len() + row.len() + 32 > max_bytes {
                truncated = true;
                break 'rows;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(&row);
        }
    }
    out.extend_from_slice(format!(r#"],"truncated":{truncated}}}"#).as_bytes());
    Ok(out)
}

/// Plan and run one query on a thread of its own (a large stack, a one-worker runtime) and wait
/// for it: the thread ends when the query is answered, fails, runs out of time or `cancel` is
/// cancelled. The calling thread blocks.
pub fn run_isolated(
    dir: PathBuf,
    sql: String,
    limit: usize,
    limits: Limits,
    cancel: CancellationToken,
) -> Result<Answer, QueryError> {
    let thread = std::thread::Builder::new()
        .name("yujing-query".into())
        .stack_size(QUERY_STACK)
        .spawn(move || {
            // (DataFusion needs a multi-thread runtime; one worker keeps it to one core)
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("yujing-query")
                .thread_stack_size(QUERY_STACK)
                .enable_all()
                .build()
                .map_err(|e| QueryError::Internal(e.to_string()))?;
            let res = rt.block_on(async {
                tokio::select! {
                    r = tokio::time::timeout(limits.timeout, async {
                        let ctx = session_with(&dir, &limits).await?;
                        run_with(&ctx, &sql, limit, &limits).await
                    }) => r.unwrap_or(Err(QueryError::Timeout(limits.timeout.as_secs()))),
                    _ = cancel.cancelled() => Err(QueryError::Cancelled),
                }
            });
            // what the query spawned stops with it
            rt.shutdown_timeout(Duration::from_secs(5));
            res
        })
        .map_err(|e| QueryError::Internal(format!("cannot start the query thread: {e}")))?;
    thread
        .join()
        .map_err(|_| QueryError::Internal("the query thread panicked".into()))?
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

    #[test]
    fn a_query_past_its_memory_fails_with_the_limit_named() {
        let tmp = tempfile::tempdir().expect("tmp");
        let limits = Limits {
            memory: Some(16 << 20),
            ..Limits::API
        };
        for sql in [
            // a hash table of five million groups (the values unordered, so not streamed)
            "SELECT count(DISTINCT (value * 7919) % 5000011) AS n FROM range(0, 5000000) t(value)",
            // one list of five million values
            "SELECT array_agg(value) AS all_values FROM range(0, 5000000) t(value)",
        ] {
            let r = run_isolated(
                tmp.path().to_path_buf(),
                sql.into(),
                10,
                limits,
                CancellationToken::new(),
            );
            assert!(
                matches!(r, Err(QueryError::Memory(16))),
                "{sql}: {:?}",
                r.map(|a| a.rows())
            );
        }
    }

    #[test]
    fn answers_are_cut_by_bytes_as_by_rows() {
        let tmp = tempfile::tempdir().expect("tmp");
        let limits = Limits {
            answer_bytes: 1 << 20,
            ..Limits::API
        };
        let run = |sql: &str| {
            run_isolated(
                tmp.path().to_path_buf(),
                sql.into(),
                1_000,
                limits,
                CancellationToken::new(),
            )
            .expect("answer")
        };
        // rows of 100 KB: about ten fit in 1 MiB of JSON
        let a = run("SELECT repeat('x', 100000) AS big FROM range(0, 100)");
        let body = json_body(&a, Tz::UTC, limits.answer_bytes).expect("json");
        assert!(body.len() <= 1 << 20, "{}", body.len());
        let v: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
        assert_eq!(v["truncated"], true);
        let rows = v["rows"].as_array().map_or(0, Vec::len);
        assert!((5..=11).contains(&rows), "{rows}");
        assert_eq!(v["columns"], serde_json::json!(["big"]));
        // column names repeat in every row of the JSON: counted there, not in Arrow's bytes
        let alias = "c".repeat(10_000);
        let a = run(&format!("SELECT 1 AS {alias} FROM range(0, 1000)"));
        let body = json_body(&a, Tz::UTC, limits.answer_bytes).expect("json");
        assert!(body.len() <= 1 << 20, "{}", body.len());
        // nothing matched: the columns are still known
        let e = run("SELECT 1 AS one FROM range(0, 0)");
        let v: serde_json::Value =
            serde_json::from_slice(&json_body(&e, Tz::UTC, 1 << 20).expect("json")).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"columns": ["one"], "rows": [], "truncated": false})
        );
    }

    #[test]
    fn deep_or_long_sql_is_refused_before_planning() {
        let tmp = tempfile::tempdir().expect("tmp");
        let run = |sql: String| {
            run_isolated(
                tmp.path().to_path_buf(),
                sql,
                10,
                Limits::API,
                CancellationToken::new(),
            )
        };
        let sum = format!("SELECT {}1", "1+".repeat(1_000));
        assert!(matches!(run(sum), Err(QueryError::TooDeep(256))));
        let long = format!("SELECT 1 WHERE {}", vec!["1 = 1"; 4_000].join(" OR "));
        assert!(matches!(run(long), Err(QueryError::TooLong(_, 16384))));
        // the statement's query and the leaf count too: 252 deep
        let ok = run(format!("SELECT {}1 AS n", "1+".repeat(250))).expect("within the limit");
        assert_eq!(ok.rows(), 1);
        // only a query: no EXPLAIN (which would plan what the checks did not see)
        let explain = format!("EXPLAIN SELECT {}1", "1+".repeat(300));
        assert!(matches!(run(explain), Err(QueryError::Sql(_))));
        // unions and joins are bounded too: planning them cannot be interrupted
        let unions = format!("SELECT 1 AS x{}", " UNION ALL SELECT 1".repeat(65));
        assert!(matches!(run(unions), Err(QueryError::TooComplex(_))));
        let joins = format!(
            "SELECT 1 FROM range(1) t0 {}",
            (1..70)
                .map(|i| format!("JOIN range(1) t{i} ON true"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert!(matches!(run(joins), Err(QueryError::TooComplex(_))));
        let tokens = format!("SELECT 1 WHERE 1 IN ({})", vec!["1"; 2_100].join(","));
        assert!(matches!(run(tokens), Err(QueryError::TooComplex(_))));
    }

    #[tokio::test]
    async fn no_archive_is_a_clear_error() {
        let e = session(Path::new("/nonexistent/archive")).await.err();
        assert!(e.is_some_and(|e| e.to_string().contains("no archive at /nonexistent/archive")));
    }
}
