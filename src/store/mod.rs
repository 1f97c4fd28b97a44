//! The store: warnings with their full timeline, the transitions that made them, the delivery
//! outbox, tickets, and the engine's checkpoints. SQLite (embedded) on one machine; PostgreSQL
//! when several instances share it (`[store] url`). The SQL is written once, in the dialect both
//! understand (`$N` parameters, `ON CONFLICT`, `string_agg`); where they differ, [`Backend`] says. A transition and every delivery it owes are written in one
//! transaction before anything is sent, so a crash between the two loses nothing; the outbox key
//! (warning id, transition, purpose, department, channel) makes storing twice harmless.
//!
//! Schema migrations are versioned (`migrations/NNNN_name.sql`, applied in order, recorded with a
//! checksum in `_sqlx_migrations`).

use crate::config::routes::Deadlines;
use crate::event::Level;
use crate::event::TransitionKind;
use crate::time::Ts;
use serde::Serialize;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, Row, SqlSafeStr};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;
use thiserror::Error;

pub mod checkpoint;
pub mod history;
pub mod tickets;

const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("migrations/0001_init.sql")),
    (2, "tickets", include_str!("migrations/0002_tickets.sql")),
    (
        3,
        "checkpoints",
        include_str!("migrations/0003_checkpoints.sql"),
    ),
    (
        4,
        "ticket_positions",
        include_str!("migrations/0004_ticket_positions.sql"),
    ),
];

const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("migrations/postgres/0001_init.sql")),
    (
        2,
        "tickets",
        include_str!("migrations/postgres/0002_tickets.sql"),
    ),
    (
        3,
        "checkpoints",
        include_str!("migrations/0003_checkpoints.sql"),
    ),
    (
        4,
        "ticket_positions",
        include_str!("migrations/0004_ticket_positions.sql"),
    ),
];

/// Which database the store is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// One file beside the service; one instance.
    Sqlite,
    /// Shared by every instance of a deployment.
    Postgres,
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create the store directory {0}: {1}")]
    Dir(String, std::io::Error),
    #[error("stored JSON is damaged: {0}")]
    Json(#[from] serde_json::Error),
    #[error("store url {0}: only postgres:// (or sqlite://) is supported")]
    Url(String),
}

/// A transition ready to store: the rendered warning document and what routing decided.
#[derive(Clone, Debug)]
pub struct NewTransition {
    pub id: String,
    pub seq: u32,
    pub kind: TransitionKind,
    pub reopened: bool,
    pub level: Level,
    pub previous: Option<Level>,
    pub rule: String,
    pub site: String,
    pub site_kind: String,
    pub subject: String,
    pub title: String,
    pub message: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    /// Event time of the transition and of the raise.
    pub at: Ts,
    pub raised_at: Ts,
    pub episode_start: Ts,
    /// The warning document (JSON) as delivered.
    pub doc: String,
    pub departments: Vec<String>,
    pub deadlines: Deadlines,
    pub supervisor: Option<String>,
    /// (department, channel) pairs owed a delivery.
    pub deliveries: Vec<(String, String)>,
}

/// A warning as listed.
#[derive(Clone, Debug, Serialize)]
pub struct WarningRow {
    pub id: String,
    pub rule: String,
    pub site: String,
    pub site_kind: String,
    pub subject: String,
    pub level: String,
    pub status: String,
    pub active: bool,
    pub seq: i64,
    pub title: String,
    pub message: String,
    pub departments: Vec<String>,
    pub raised_at: Ts,
    pub stored_at: Ts,
    pub updated_at: Ts,
    pub ack_due: Option<Ts>,
    pub handle_due: Option<Ts>,
    pub acked_at: Option<Ts>,
    pub handled_at: Option<Ts>,
    pub closed_at: Option<Ts>,
    pub cleared_at: Option<Ts>,
    pub overdue_step: i64,
    pub supervisor: Option<String>,
    #[serde(skip)]
    pub doc: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct TimelineEntry {
    pub at: Ts,
    pub kind: String,
    pub actor: String,
    pub detail: serde_json::Value,
}

/// One delivery owed.
#[derive(Clone, Debug, Serialize)]
pub struct OutboxItem {
    pub id: i64,
    pub key: String,
    pub warning_id: String,
    pub seq: i64,
    pub purpose: String,
    pub department: String,
    pub channel: String,
    #[serde(skip)]
    pub doc: String,
    pub state: String,
    pub attempts: i64,
    pub next_at: Ts,
    pub created_at: Ts,
    pub delivered_at: Option<Ts>,
    pub last_error: Option<String>,
}

/// What became of one delivery attempt.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The outbox entry.
    pub item: i64,
    pub warning_id: String,
    pub at: Ts,
    /// `None`: delivered. Else the error, and when to retry (`None`: give up, dead letter).
    pub failed: Option<(String, Option<Ts>)>,
    /// The timeline entry's detail.
    pub detail: serde_json::Value,
}

/// Filters for listing warnings (all optional).
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub status: Option<String>,
    pub level: Option<String>,
    pub department: Option<String>,
    pub site: Option<String>,
    pub rule: Option<String>,
    /// Raised at or after / before (event time, ms).
    pub from: Option<Ts>,
    pub to: Option<Ts>,
    pub limit: i64,
    pub offset: i64,
}

/// What a department or operator does to a warning.
#[derive(Clone, Debug)]
pub enum Action {
    Ack {
        note: Option<String>,
    },
    Feedback {
        measures: String,
        result: String,
    },
    Close {
        note: Option<String>,
        /// Whether the actor may close a warning nobody has reported on (operators, admins).
        without_feedback: bool,
    },
}

/// Why an action was refused.
#[derive(Debug, Error, PartialEq)]
pub enum ActError {
    #[error("no such warning")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
}

/// A warning whose deadline passed, with what is owed next.
#[derive(Clone, Debug)]
pub struct Overdue {
    pub id: String,
    pub seq: i64,
    /// `ack` (reminder or supervisor) or `handle` (supervisor).
    pub what: &'static str,
    /// The ladder step this notice takes the warning to (1 reminder, 2 supervisor).
    pub step: i64,
    pub due: Ts,
    pub departments: Vec<String>,
    pub supervisor: Option<String>,
    pub doc: String,
}

pub fn now_ms() -> Ts {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Ts)
        .unwrap_or(0)
}

/// Reads go through a small pool. With SQLite every write goes through one connection, so
/// writers queue in order instead of sleeping on its busy lock; PostgreSQL takes several.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    writer: AnyPool,
    backend: Backend,
}

const WARNING_COLUMNS: &str = "id, rule, site, site_kind, subject, level, status, active, seq, title, message, \
     (SELECT string_agg(department, ',') FROM warning_departments d WHERE d.warning_id = warnings.id) AS departments, \
     raised_at, stored_at, updated_at, ack_due, handle_due, acked_at, handled_at, closed_at, cleared_at, \
     overdue_step, supervisor, doc";

fn warning_row(r: &sqlx::any::AnyRow) -> Result<WarningRow, sqlx::Error> {
    let deps: Option<String> = r.try_get("departments")?;
    let mut departments: Vec<String> = deps
        .map(|d| d.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    departments.sort();
    Ok(WarningRow {
        id: r.try_get("id")?,
        rule: r.try_get("rule")?,
        site: r.try_get("site")?,
        site_kind: r.try_get("site_kind")?,
        subject: r.try_get("subject")?,
        level: r.try_get("level")?,
        status: r.try_get("status")?,
        active: r.try_get::<i64, _>("active")? != 0,
        seq: r.try_get("seq")?,
        title: r.try_get("title")?,
        message: r.try_get("message")?,
        departments,
        raised_at: r.try_get("raised_at")?,
        stored_at: r.try_get("stored_at")?,
        updated_at: r.try_get("updated_at")?,
        ack_due: r.try_get("ack_due")?,
        handle_due: r.try_get("handle_due")?,
        acked_at: r.try_get("acked_at")?,
        handled_at: r.try_get("handled_at")?,
        closed_at: r.try_get("closed_at")?,
        cleared_at: r.try_get("cleared_at")?,
        overdue_step: r.try_get("overdue_step")?,
        supervisor: r.try_get("supervisor")?,
        doc: r.try_get("doc")?,
    })
}

fn outbox_row(r: &sqlx::any::AnyRow) -> Result<OutboxItem, sqlx::Error> {
    Ok(OutboxItem {
        id: r.try_get("id")?,
        key: r.try_get("key")?,
        warning_id: r.try_get("warning_id")?,
        seq: r.try_get("seq")?,
        purpose: r.try_get("purpose")?,
        department: r.try_get("department")?,
        channel: r.try_get("channel")?,
        doc: r.try_get("doc")?,
        state: r.try_get("state")?,
        attempts: r.try_get("attempts")?,
        next_at: r.try_get("next_at")?,
        created_at: r.try_get("created_at")?,
        delivered_at: r.try_get("delivered_at")?,
        last_error: r.try_get("last_error")?,
    })
}

fn timeline_kind(t: &NewTransition) -> &'static str {
    match t.kind {
        TransitionKind::Raise if t.reopened => "reopened",
        TransitionKind::Raise => "raised",
        TransitionKind::Escalate => "escalated",
        TransitionKind::DeEscalate => "de-escalated",
        TransitionKind::Clear => "cleared",
    }
}

/// A timeline entry waiting to be written with others.
struct TimelineRow<'a> {
    warning_id: String,
    at: Ts,
    kind: &'a str,
    actor: &'a str,
    detail: String,
}

/// An outbox entry waiting to be written with others.
struct DeliveryRow<'a> {
    warning_id: &'a str,
    seq: i64,
    purpose: &'a str,
    department: &'a str,
    channel: &'a str,
    doc: &'a str,
}

/// Rows per multi-row statement (well under either database's limit of bound values).
const CHUNK: usize = 200;

/// `($1, $2), ($3, $4)`: the placeholders of `rows` rows of `cols` values.
fn values(rows: usize, cols: usize) -> String {
    let mut s = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        s.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..cols {
            if c > 0 {
                s.push_str(", ");
            }
            let _ = write!(s, "${}", r * cols + c + 1);
        }
        s.push(')');
    }
    s
}

async fn add_timelines(
    tx: &mut sqlx::AnyConnection,
    rows: &[TimelineRow<'_>],
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO timeline (warning_id, at, kind, actor, detail) VALUES {}",
            values(chunk.len(), 5)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in chunk {
            q = q
                .bind(&r.warning_id)
                .bind(r.at)
                .bind(r.kind)
                .bind(r.actor)
                .bind(&r.detail);
        }
        q.execute(&mut *tx).await?;
    }
    Ok(())
}

async fn add_deliveries(
    tx: &mut sqlx::AnyConnection,
    rows: &[DeliveryRow<'_>],
    now: Ts,
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO outbox (key, warning_id, seq, purpose, department, channel, doc, state, next_at, created_at) \
             VALUES {} ON CONFLICT DO NOTHING",
            values(chunk.len(), 10)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in chunk {
            q = q
                .bind(format!(
                    "{}:{}:{}:{}:{}",
                    r.warning_id, r.seq, r.purpose, r.department, r.channel
                ))
                .bind(r.warning_id)
                .bind(r.seq)
                .bind(r.purpose)
                .bind(r.department)
                .bind(r.channel)
                .bind(r.doc)
                .bind("pending")
                .bind(now)
                .bind(now);
        }
        q.execute(&mut *tx).await?;
    }
    Ok(())
}

async fn add_timeline(
    tx: &mut sqlx::AnyConnection,
    id: &str,
    at: Ts,
    kind: &str,
    actor: &str,
    detail: serde_json::Value,
) -> Result<(), sqlx::Error> {
    let row = TimelineRow {
        warning_id: id.to_string(),
        at,
        kind,
        actor,
        detail: detail.to_string(),
    };
    add_timelines(tx, std::slice::from_ref(&row)).await
}

/// A store url fit for a log line: no password.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(not a url)".into(),
    }
}

async fn migrate(pool: &AnyPool, list: &[(i64, &str, &'static str)]) -> Result<(), StoreError> {
    let migrations = list
        .iter()
        .map(|(v, name, sql)| {
            Migration::new(
                *v,
                (*name).to_string().into(),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        })
        .collect();
    Migrator::with_migrations(migrations).run(pool).await?;
    Ok(())
}

impl Store {
    /// Open (creating it and its directory if needed) and migrate to the current schema. With
    /// `fsync`, every commit is flushed to disk (SQLite `synchronous=FULL`) and survives a power
    /// loss; without, WAL with `synchronous=NORMAL`: a commit survives a crash or `kill -9` of
    /// the process, and costs far less.
    pub async fn open(path: &Path, fsync: bool) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) => dir.to_path_buf(),
            None => Path::new(".").to_path_buf(),
        };
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::Dir(dir.display().to_string(), e))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| StoreError::Dir(dir.display().to_string(), e))?;
        let file = dir.join(path.file_name().unwrap_or_default());
        let encoded = url::Url::from_file_path(&file)
            .map_err(|()| StoreError::Url(file.display().to_string()))?;
        let url = format!("sqlite://{}?mode=rwc", encoded.path());
        let pragmas: &'static str = if fsync {
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;"
        } else {
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;"
        };
        let options = |n: u32| {
            AnyPoolOptions::new()
                .max_connections(n)
                .after_connect(move |c, _| {
                    Box::pin(async move {
                        c.execute(sqlx::raw_sql(pragmas)).await?;
                        Ok(())
                    })
                })
        };
        let writer = options(1).connect(&url).await?;
        migrate(&writer, SQLITE_MIGRATIONS).await?;
        let pool = options(4).connect(&url).await?;
        Ok(Store {
            pool,
            writer,
            backend: Backend::Sqlite,
        })
    }

    /// Connect to a shared PostgreSQL store (`postgres://user@host:port/database`) and migrate
    /// it; instances starting together take turns (the migrator holds an advisory lock).
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::Url(redact(url)));
        }
        sqlx::any::install_default_drivers();
        let options = |n: u32| {
            AnyPoolOptions::new()
                .max_connections(n)
                .acquire_timeout(Duration::from_secs(30))
        };
        let writer = options(4).connect(url).await?;
        migrate(&writer, POSTGRES_MIGRATIONS).await?;
        let pool = options(4).connect(url).await?;
        Ok(Store {
            pool,
            writer,
            backend: Backend::Postgres,
        })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The read pool, for queries of other modules (reports).
    pub fn reader(&self) -> &AnyPool {
        &self.pool
    }

    /// The schema version the store is at.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations")
            .fetch_one(&self.pool)
            .await?;
        Ok(v.unwrap_or(0))
    }

    /// Store transitions with their timeline entries and owed deliveries, all in one
    /// transaction. Returns, per transition, whether it was new (a transition seen before,
    /// after a restart re-read the same input, changes nothing).
    pub async fn record(&self, batch: &[NewTransition], now: Ts) -> Result<Vec<bool>, StoreError> {
        let mut tx = self.writer.begin().await?;
        // which transitions are new (a transition stored before changes nothing)
        let mut inserted: std::collections::HashSet<(String, i64)> = Default::default();
        for chunk in batch.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO transitions (warning_id, seq, kind, level, at, stored_at, doc) VALUES {} \
                 ON CONFLICT DO NOTHING RETURNING warning_id, seq",
                values(chunk.len(), 7)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for t in chunk {
                q = q
                    .bind(&t.id)
                    .bind(t.seq as i64)
                    .bind(t.kind.as_str())
                    .bind(t.level.as_str())
                    .bind(t.at)
                    .bind(now)
                    .bind(&t.doc);
            }
            let rows = q.fetch_all(&mut *tx).await?;
            for r in &rows {
                inserted.insert((r.try_get("warning_id")?, r.try_get("seq")?));
            }
        }
        let fresh: Vec<bool> = batch
            .iter()
            .map(|t| inserted.contains(&(t.id.clone(), t.seq as i64)))
            .collect();
        let mut departments: Vec<(&str, &str)> = Vec::new();
        let mut timeline = Vec::new();
        let mut deliveries = Vec::new();
        for (t, _) in batch.iter().zip(&fresh).filter(|(_, f)| **f) {
            let ack_due = t.deadlines.ack.map(|d| now + d);
            let handle_due = t.deadlines.handle.map(|d| now + d);
            match t.kind {
                TransitionKind::Raise => {
                    sqlx::query(
                        "INSERT INTO warnings (id, rule, site, site_kind, subject, level, level_rank, status, active, seq, title, message, doc, \
                           raised_at, stored_at, updated_at, ack_due, handle_due, ack_within, supervisor, episode_start) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', 1, $8, $9, $10, $11, $12, $13, $13, $14, $15, $16, $17, $18) \
                         ON CONFLICT (id) DO UPDATE SET level = $6, level_rank = $7, active = 1, seq = $8, message = $10, doc = $11, \
                           updated_at = $13, cleared_at = NULL, \
                           status = CASE WHEN warnings.status IN ('cleared', 'closed') THEN 'open' ELSE warnings.status END, \
                           ack_due = CASE WHEN warnings.status IN ('cleared', 'closed') THEN $14 ELSE warnings.ack_due END, \
                           handle_due = CASE WHEN warnings.status IN ('cleared', 'closed') THEN $15 ELSE warnings.handle_due END, \
                           overdue_step = CASE WHEN warnings.status IN ('cleared', 'closed') THEN 0 ELSE warnings.overdue_step END, \
                           handle_overdue = CASE WHEN warnings.status IN ('cleared', 'closed') THEN 0 ELSE warnings.handle_overdue END, \
                           acked_at = CASE WHEN warnings.status IN ('cleared', 'closed') THEN NULL ELSE warnings.acked_at END, \
                           handled_at = CASE WHEN warnings.status IN ('cleared', 'closed') THEN NULL ELSE warnings.handled_at END, \
                           closed_at = NULL",
                    )
                    .bind(&t.id)
                    .bind(&t.rule)
                    .bind(&t.site)
                    .bind(&t.site_kind)
                    .bind(&t.subject)
                    .bind(t.level.as_str())
                    .bind(t.level.index() as i64)
                    .bind(t.seq as i64)
                    .bind(&t.title)
                    .bind(&t.message)
                    .bind(&t.doc)
                    .bind(t.raised_at)
                    .bind(now)
                    .bind(ack_due)
                    .bind(handle_due)
                    .bind(t.deadlines.ack)
                    .bind(&t.supervisor)
                    .bind(t.episode_start)
                    .execute(&mut *tx)
                    .await?;
                }
                TransitionKind::Escalate | TransitionKind::DeEscalate => {
                    // a sharper level may bring the deadlines forward, never back
                    sqlx::query(
                        "UPDATE warnings SET level = $2, level_rank = $3, seq = $4, message = $5, doc = $6, updated_at = $7, \
                           ack_due = CASE WHEN acked_at IS NULL AND $8 IS NOT NULL THEN CASE WHEN ack_due < $8 THEN ack_due ELSE $8 END ELSE ack_due END, \
                           handle_due = CASE WHEN handled_at IS NULL AND $9 IS NOT NULL THEN CASE WHEN handle_due < $9 THEN handle_due ELSE $9 END ELSE handle_due END, \
                           ack_within = coalesce($10, ack_within) \
                         WHERE id = $1",
                    )
                    .bind(&t.id)
                    .bind(t.level.as_str())
                    .bind(t.level.index() as i64)
                    .bind(t.seq as i64)
                    .bind(&t.message)
                    .bind(&t.doc)
                    .bind(now)
                    .bind(if t.kind == TransitionKind::Escalate { ack_due } else { None })
                    .bind(if t.kind == TransitionKind::Escalate { handle_due } else { None })
                    .bind(if t.kind == TransitionKind::Escalate { t.deadlines.ack } else { None })
                    .execute(&mut *tx)
                    .await?;
                }
                TransitionKind::Clear => {
                    sqlx::query(
                        "UPDATE warnings SET active = 0, seq = $2, doc = $3, updated_at = $4, cleared_at = $4, \
                           status = CASE WHEN status = 'open' THEN 'cleared' ELSE status END \
                         WHERE id = $1",
                    )
                    .bind(&t.id)
                    .bind(t.seq as i64)
                    .bind(&t.doc)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            departments.extend(t.departments.iter().map(|d| (t.id.as_str(), d.as_str())));
            let detail = serde_json::json!({
                "seq": t.seq,
                "level": t.level.as_str(),
                "previous_level": t.previous.map(Level::as_str),
                "value": t.value,
                "threshold": t.threshold,
                "event_time": t.at,
                "message": t.message,
            });
            timeline.push(TimelineRow {
                warning_id: t.id.clone(),
                at: now,
                kind: timeline_kind(t),
                actor: "engine",
                detail: detail.to_string(),
            });
            deliveries.extend(t.deliveries.iter().map(|(dep, chan)| DeliveryRow {
                warning_id: &t.id,
                seq: t.seq as i64,
                purpose: "transition",
                department: dep,
                channel: chan,
                doc: &t.doc,
            }));
        }
        for chunk in departments.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO warning_departments (warning_id, department) VALUES {} ON CONFLICT DO NOTHING",
                values(chunk.len(), 2)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (w, d) in chunk {
                q = q.bind(*w).bind(*d);
            }
            q.execute(&mut *tx).await?;
        }
        add_timelines(&mut tx, &timeline).await?;
        add_deliveries(&mut tx, &deliveries, now).await?;
        tx.commit().await?;
        Ok(fresh)
    }

    pub async fn list(&self, f: &Filter) -> Result<(Vec<WarningRow>, i64), StoreError> {
        const WHERE: &str = "WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR level = $2) \
             AND ($3 IS NULL OR id IN (SELECT warning_id FROM warning_departments WHERE department = $3)) \
             AND ($4 IS NULL OR site = $4) AND ($5 IS NULL OR rule = $5) \
             AND ($6 IS NULL OR raised_at >= $6) AND ($7 IS NULL OR raised_at < $7)";
        let sql = format!(
            "SELECT {WARNING_COLUMNS} FROM warnings {WHERE} ORDER BY stored_at DESC, id LIMIT $8 OFFSET $9"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&f.status)
            .bind(&f.level)
            .bind(&f.department)
            .bind(&f.site)
            .bind(&f.rule)
            .bind(f.from)
            .bind(f.to)
            .bind(f.limit)
            .bind(f.offset)
            .fetch_all(&self.pool)
            .await?;
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM warnings {WHERE}"
        )))
        .bind(&f.status)
        .bind(&f.level)
        .bind(&f.department)
        .bind(&f.site)
        .bind(&f.rule)
        .bind(f.from)
        .bind(f.to)
        .fetch_one(&self.pool)
        .await?;
        let list = rows.iter().map(warning_row).collect::<Result<_, _>>()?;
        Ok((list, total))
    }

    pub async fn get(&self, id: &str) -> Result<Option<WarningRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {WARNING_COLUMNS} FROM warnings WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(warning_row).transpose()?)
    }

    pub async fn timeline(&self, id: &str) -> Result<Vec<TimelineEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, kind, actor, detail FROM timeline WHERE warning_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let detail: String = r.try_get("detail")?;
                Ok(TimelineEntry {
                    at: r.try_get("at")?,
                    kind: r.try_get("kind")?,
                    actor: r.try_get("actor")?,
                    detail: serde_json::from_str(&detail)?,
                })
            })
            .collect()
    }

    /// Acknowledge, report on, or close a warning, with a timeline entry naming the actor.
    pub async fn act(
        &self,
        id: &str,
        action: &Action,
        actor: &str,
        now: Ts,
    ) -> Result<Result<WarningRow, ActError>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM warnings WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(status) = status else {
            return Ok(Err(ActError::NotFound));
        };
        if status == "closed" {
            return Ok(Err(ActError::Conflict("the warning is closed".into())));
        }
        let (kind, detail) = match action {
            Action::Ack { note } => {
                if status != "open" && status != "cleared" {
                    return Ok(Err(ActError::Conflict(format!(
                        "the warning is already {status}"
                    ))));
                }
                sqlx::query("UPDATE warnings SET status = 'acknowledged', acked_at = $2, updated_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                ("acknowledged", serde_json::json!({ "note": note }))
            }
            Action::Feedback { measures, result } => {
                sqlx::query(
                    "UPDATE warnings SET status = 'handled', acked_at = coalesce(acked_at, $2), handled_at = $2, updated_at = $2 WHERE id = $1",
                )
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                (
                    "feedback",
                    serde_json::json!({ "measures": measures, "result": result }),
                )
            }
            Action::Close {
                note,
                without_feedback,
            } => {
                if !without_feedback && status != "handled" && status != "cleared" {
                    return Ok(Err(ActError::Conflict(
                        "post feedback (measures taken, result) before closing".into(),
                    )));
                }
                sqlx::query("UPDATE warnings SET status = 'closed', closed_at = $2, updated_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                ("closed", serde_json::json!({ "note": note }))
            }
        };
        add_timeline(&mut tx, id, now, kind, actor, detail).await?;
        tx.commit().await?;
        match self.get(id).await? {
            Some(w) => Ok(Ok(w)),
            None => Ok(Err(ActError::NotFound)),
        }
    }

    /// Claim up to `limit` deliveries that are due; a claim holds them for `lease` ms (should a
    /// worker die mid-delivery, they fall due again when it runs out, or at the next start).
    pub async fn claim(
        &self,
        now: Ts,
        lease: i64,
        limit: i64,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let rows = sqlx::query(
            "UPDATE outbox SET leased_until = $2 WHERE id IN ( \
               SELECT id FROM outbox WHERE state = 'pending' AND next_at <= $1 \
               AND (leased_until IS NULL OR leased_until <= $1) ORDER BY next_at, id LIMIT $3) \
             AND state = 'pending' AND (leased_until IS NULL OR leased_until <= $1) \
             RETURNING *",
        )
        .bind(now)
        .bind(now + lease)
        .bind(limit)
        .fetch_all(&self.writer)
        .await?;
        let mut items: Vec<OutboxItem> = rows.iter().map(outbox_row).collect::<Result<_, _>>()?;
        items.sort_by_key(|i| (i.next_at, i.id));
        Ok(items)
    }

    /// At start, no delivery is under way: leases of a process that died are void. (Only for a
    /// store of one instance: in a shared one, another instance's leases are its own and run out
    /// by themselves.)
    pub async fn release_leases(&self) -> Result<u64, StoreError> {
        let r = sqlx::query("UPDATE outbox SET leased_until = NULL WHERE leased_until IS NOT NULL")
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected())
    }

    /// The earliest time a pending delivery falls due.
    pub async fn next_due(&self) -> Result<Option<Ts>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT min(CASE WHEN leased_until > next_at THEN leased_until ELSE next_at END) \
                 FROM outbox WHERE state = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Record delivery outcomes (state, attempts, a timeline entry each) in one transaction.
    pub async fn record_outcomes(&self, outcomes: &[Outcome]) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await?;
        let delivered: Vec<&Outcome> = outcomes.iter().filter(|o| o.failed.is_none()).collect();
        for chunk in delivered.chunks(CHUNK) {
            let ids: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, last_error = NULL, leased_until = NULL, \
                 delivered_at = $1 WHERE id IN ({})",
                ids.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(chunk.iter().map(|o| o.at).max().unwrap_or(0));
            for o in chunk {
                q = q.bind(o.item);
            }
            q.execute(&mut *tx).await?;
        }
        let mut timeline = Vec::with_capacity(outcomes.len());
        for o in outcomes {
            let kind = match &o.failed {
                None => "delivered",
                Some((error, retry_at)) => {
                    sqlx::query(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = $2, leased_until = NULL, \
                           state = CASE WHEN $3 IS NULL THEN 'dead' ELSE 'pending' END, next_at = coalesce($3, next_at) WHERE id = $1",
                    )
                    .bind(o.item)
                    .bind(error)
                    .bind(retry_at)
                    .execute(&mut *tx)
                    .await?;
                    if retry_at.is_some() {
                        "delivery_failed"
                    } else {
                        "delivery_dead"
                    }
                }
            };
            timeline.push(TimelineRow {
                warning_id: o.warning_id.clone(),
                at: o.at,
                kind,
                actor: "dispatch",
                detail: o.detail.to_string(),
            });
        }
        add_timelines(&mut tx, &timeline).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deliveries in one state (`pending`, `delivered`, `dead`), newest first.
    pub async fn deliveries(
        &self,
        state: Option<&str>,
        warning: Option<&str>,
        limit: i64,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM outbox WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR warning_id = $2) ORDER BY id DESC LIMIT $3",
        )
        .bind(state)
        .bind(warning)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(outbox_row).collect::<Result<_, _>>()?)
    }

    /// Put a dead delivery back in the queue (an admin fixed the endpoint).
    pub async fn retry_delivery(&self, id: i64, now: Ts) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE outbox SET state = 'pending', attempts = 0, next_at = $1 WHERE id = $2 AND state = 'dead'")
            .bind(now)
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Deliveries waiting and given up, for `/metrics` (counted through the state index: the
    /// delivered ones, which pile up, are never scanned).
    pub async fn outbox_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut out = Vec::with_capacity(2);
        for state in ["pending", "dead"] {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE state = $1")
                .bind(state)
                .fetch_one(&self.pool)
                .await?;
            out.push((state.to_string(), n));
        }
        Ok(out)
    }

    /// Warnings whose acknowledgement or handling deadline has passed without the next notice
    /// having gone out: at the ack deadline a reminder to the departments, one ack window later a
    /// copy to the supervising unit; at the handling deadline a copy to the supervising unit.
    pub async fn overdue(&self, now: Ts) -> Result<Vec<Overdue>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {WARNING_COLUMNS}, ack_within, handle_overdue FROM warnings \
             WHERE status NOT IN ('closed', 'cleared') AND ( \
               (acked_at IS NULL AND ack_due IS NOT NULL AND ((overdue_step = 0 AND ack_due <= $1) \
                  OR (overdue_step = 1 AND ack_due + coalesce(ack_within, 0) <= $1))) \
               OR (handled_at IS NULL AND handle_due IS NOT NULL AND handle_overdue = 0 AND handle_due <= $1))"
        )))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let w = warning_row(r)?;
            let ack_within: Option<i64> = r.try_get("ack_within")?;
            let handle_overdue: i64 = r.try_get("handle_overdue")?;
            if w.acked_at.is_none() {
                if let Some(due) = w.ack_due {
                    let next = if w.overdue_step == 0 {
                        Some((1, due))
                    } else if w.overdue_step == 1 && due + ack_within.unwrap_or(0) <= now {
                        Some((2, due + ack_within.unwrap_or(0)))
                    } else {
                        None
                    };
                    if let Some((step, due)) = next.filter(|(_, d)| *d <= now) {
                        out.push(Overdue {
                            id: w.id.clone(),
                            seq: w.seq,
                            what: "ack",
                            step,
                            due,
                            departments: w.departments.clone(),
                            supervisor: w.supervisor.clone(),
                            doc: w.doc.clone(),
                        });
                    }
                }
            }
            if w.handled_at.is_none() && handle_overdue == 0 {
                if let Some(due) = w.handle_due.filter(|d| *d <= now) {
                    out.push(Overdue {
                        id: w.id.clone(),
                        seq: w.seq,
                        what: "handle",
                        step: 2,
                        due,
                        departments: w.departments.clone(),
                        supervisor: w.supervisor.clone(),
                        doc: w.doc,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Record that an overdue notice went out: the ladder step, a timeline entry, and the
    /// deliveries it owes, in one transaction. Returns false (and records nothing) when the step
    /// was taken already: by another instance sharing the store, or by this one a moment ago.
    pub async fn notice(
        &self,
        o: &Overdue,
        kind: &str,
        deliveries: &[(String, String)],
        doc: &str,
        now: Ts,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let purpose = if o.step == 1 {
            "reminder"
        } else {
            "supervisor"
        };
        let taken = if o.what == "ack" {
            sqlx::query("UPDATE warnings SET overdue_step = $2 WHERE id = $1 AND overdue_step < $2")
                .bind(&o.id)
                .bind(o.step)
                .execute(&mut *tx)
                .await?
        } else {
            sqlx::query(
                "UPDATE warnings SET handle_overdue = 1 WHERE id = $1 AND handle_overdue = 0",
            )
            .bind(&o.id)
            .execute(&mut *tx)
            .await?
        };
        if taken.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        let to: Vec<&str> = deliveries.iter().map(|(d, _)| d.as_str()).collect();
        add_timeline(
            &mut tx,
            &o.id,
            now,
            kind,
            "deadline",
            serde_json::json!({ "overdue": o.what, "due": o.due, "to": to }),
        )
        .await?;
        let purpose = format!("{purpose}-{}", o.what);
        let rows: Vec<DeliveryRow<'_>> = deliveries
            .iter()
            .map(|(dep, chan)| DeliveryRow {
                warning_id: &o.id,
                seq: o.seq,
                purpose: &purpose,
                department: dep,
                channel: chan,
                doc,
            })
            .collect();
        add_deliveries(&mut tx, &rows, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Warnings whose condition still held when the service stopped (to resume their state):
    /// (row, episode start).
    pub async fn active(&self) -> Result<Vec<(WarningRow, Ts)>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {WARNING_COLUMNS}, episode_start FROM warnings WHERE active = 1"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((warning_row(r)?, r.try_get("episode_start")?)))
            .collect()
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transition(kind: TransitionKind, seq: u32, level: Level) -> NewTransition {
        NewTransition {
            id: "w-1".into(),
            seq,
            kind,
            reopened: false,
            level,
            previous: None,
            rule: "noise_max".into(),
            site: "cs-01".into(),
            site_kind: "construction".into(),
            subject: "cs-01-noise".into(),
            title: "噪声".into(),
            message: "城东工地噪声".into(),
            value: Some(90.0),
            threshold: Some(85.0),
            at: 1_000,
            raised_at: 1_000,
            episode_start: 0,
            doc: r#"{"id": "w-1"}"#.into(),
            departments: vec!["zjj".into()],
            deadlines: Deadlines {
                ack: Some(1_000),
                handle: Some(10_000),
            },
            supervisor: Some("dcs".into()),
            deliveries: vec![("zjj".into(), "zjj-hook".into())],
        }
    }

    fn outcome(item: &OutboxItem, at: Ts, failed: Option<(&str, Option<Ts>)>) -> Outcome {
        Outcome {
            item: item.id,
            warning_id: item.warning_id.clone(),
            at,
            failed: failed.map(|(e, r)| (e.to_string(), r)),
            detail: serde_json::json!({}),
        }
    }

    /// The same test against both stores: SQLite in a temporary directory, and a fresh
    /// PostgreSQL database (named after the test) on the local server.
    async fn stores(test: &str) -> Vec<(Option<tempfile::TempDir>, Store)> {
        let dir = tempfile::tempdir().expect("tempdir");
        let sqlite = Store::open(&dir.path().join("y.db"), true)
            .await
            .expect("open");
        vec![(Some(dir), sqlite), (None, pg_store(test).await)]
    }

    /// A fresh PostgreSQL store: `YUJING_TEST_PG` (default the local server's `test` database)
    /// makes the database `yj_t_<test>`, dropped first if a run before left it.
    pub(crate) async fn pg_store(test: &str) -> Store {
        use sqlx::Connection;
        let admin = std::env::var("YUJING_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        sqlx::any::install_default_drivers();
        let mut c = sqlx::AnyConnection::connect(&admin)
            .await
            .expect("PostgreSQL at 127.0.0.1:5432 (or YUJING_TEST_PG) for the store tests");
        let name = format!("yj_t_{test}");
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            c.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(sql)))
                .await
                .expect("create the test database");
        }
        let mut url = url::Url::parse(&admin).expect("YUJING_TEST_PG is a url");
        url.set_path(&name);
        Store::connect(url.as_str()).await.expect("connect")
    }

    #[tokio::test]
    async fn a_transition_stored_twice_is_stored_once() {
        for (_d, s) in stores("a_transition_stored_twice_is_stored_once").await {
            assert_eq!(s.schema_version().await.expect("version"), 4);
            let t = transition(TransitionKind::Raise, 0, Level::Red);
            assert_eq!(
                s.record(std::slice::from_ref(&t), 100)
                    .await
                    .expect("record"),
                vec![true]
            );
            assert_eq!(s.record(&[t], 200).await.expect("record"), vec![false]);
            assert_eq!(
                s.deliveries(None, Some("w-1"), 10)
                    .await
                    .expect("outbox")
                    .len(),
                1
            );
            let tl = s.timeline("w-1").await.expect("timeline");
            assert_eq!(
                tl.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
                ["raised"]
            );
            let w = s.get("w-1").await.expect("get").expect("row");
            assert_eq!(
                (w.status.as_str(), w.ack_due, w.handle_due),
                ("open", Some(1_100), Some(10_100))
            );
            assert_eq!(w.departments, vec!["zjj"]);
            // reopening the store keeps it
            let (rows, total) = s
                .list(&Filter {
                    limit: 10,
                    ..Filter::default()
                })
                .await
                .expect("list");
            assert_eq!((rows.len(), total), (1, 1));
        }
    }

    #[tokio::test]
    async fn the_lifecycle_refuses_steps_out_of_order() {
        for (_d, s) in stores("the_lifecycle_refuses_steps_out_of_order").await {
            s.record(&[transition(TransitionKind::Raise, 0, Level::Red)], 100)
                .await
                .expect("record");
            let close = Action::Close {
                note: None,
                without_feedback: false,
            };
            assert!(matches!(
                s.act("w-1", &close, "zjj", 200).await.expect("act"),
                Err(ActError::Conflict(_))
            ));
            let ack = Action::Ack { note: None };
            assert_eq!(
                s.act("w-1", &ack, "zjj", 200)
                    .await
                    .expect("act")
                    .expect("ok")
                    .status,
                "acknowledged"
            );
            assert!(s.act("w-1", &ack, "zjj", 210).await.expect("act").is_err());
            let fb = Action::Feedback {
                measures: "停工".into(),
                result: "已恢复".into(),
            };
            assert_eq!(
                s.act("w-1", &fb, "zjj", 300)
                    .await
                    .expect("act")
                    .expect("ok")
                    .status,
                "handled"
            );
            assert_eq!(
                s.act("w-1", &close, "zjj", 400)
                    .await
                    .expect("act")
                    .expect("ok")
                    .status,
                "closed"
            );
            assert!(matches!(
                s.act("w-1", &ack, "zjj", 500).await.expect("act"),
                Err(ActError::Conflict(_))
            ));
            assert_eq!(
                s.act("w-9", &ack, "zjj", 500).await.expect("act").err(),
                Some(ActError::NotFound)
            );
            let kinds: Vec<String> = s
                .timeline("w-1")
                .await
                .expect("tl")
                .into_iter()
                .map(|e| e.kind)
                .collect();
            assert_eq!(kinds, ["raised", "acknowledged", "feedback", "closed"]);
        }
    }

    #[tokio::test]
    async fn a_cleared_warning_needs_no_answer_and_a_relapse_reopens_it() {
        for (_d, s) in stores("a_cleared_warning_needs_no_answer_and_a_relapse_reopens_it").await {
            s.record(&[transition(TransitionKind::Raise, 0, Level::Red)], 100)
                .await
                .expect("raise");
            s.record(&[transition(TransitionKind::Clear, 1, Level::Red)], 200)
                .await
                .expect("clear");
            let w = s.get("w-1").await.expect("get").expect("row");
            assert_eq!(
                (w.status.as_str(), w.active, w.cleared_at),
                ("cleared", false, Some(200))
            );
            assert!(
                s.overdue(5_000).await.expect("overdue").is_empty(),
                "cleared: no deadline"
            );
            let mut again = transition(TransitionKind::Raise, 2, Level::Yellow);
            again.reopened = true;
            s.record(&[again], 300).await.expect("reopen");
            let w = s.get("w-1").await.expect("get").expect("row");
            assert_eq!(
                (w.status.as_str(), w.active, w.level.as_str(), w.ack_due),
                ("open", true, "yellow", Some(1_300))
            );
            assert_eq!(s.active().await.expect("active").len(), 1);
        }
    }

    #[tokio::test]
    async fn missed_deadlines_climb_the_ladder_once_each() {
        for (_d, s) in stores("missed_deadlines_climb_the_ladder_once_each").await {
            s.record(&[transition(TransitionKind::Raise, 0, Level::Red)], 100)
                .await
                .expect("raise");
            assert!(s.overdue(1_000).await.expect("overdue").is_empty());
            let due = s.overdue(1_100).await.expect("overdue");
            assert_eq!((due.len(), due[0].step, due[0].what), (1, 1, "ack"));
            s.notice(
                &due[0],
                "reminder",
                &[("zjj".into(), "zjj-hook".into())],
                "{}",
                1_100,
            )
            .await
            .expect("notice");
            assert!(s.overdue(1_500).await.expect("overdue").is_empty());
            let due = s.overdue(2_100).await.expect("overdue");
            assert_eq!((due.len(), due[0].step), (1, 2));
            s.notice(
                &due[0],
                "supervisor_notified",
                &[("dcs".into(), "dcs-hook".into())],
                "{}",
                2_100,
            )
            .await
            .expect("notice");
            // the handling deadline is its own step
            let due = s.overdue(10_100).await.expect("overdue");
            assert_eq!((due.len(), due[0].what), (1, "handle"));
            s.notice(&due[0], "supervisor_notified", &[], "{}", 10_100)
                .await
                .expect("notice");
            assert!(s.overdue(99_000).await.expect("overdue").is_empty());
            let purposes: Vec<String> = s
                .deliveries(None, Some("w-1"), 10)
                .await
                .expect("outbox")
                .into_iter()
                .map(|d| d.purpose)
                .collect();
            assert_eq!(purposes, ["supervisor-ack", "reminder-ack", "transition"]);
        }
    }

    #[tokio::test]
    async fn a_claimed_delivery_is_not_claimed_twice_until_its_lease_ends() {
        for (_d, s) in stores("a_claimed_delivery_is_not_claimed_twice_until_its_lease_ends").await
        {
            s.record(&[transition(TransitionKind::Raise, 0, Level::Red)], 100)
                .await
                .expect("raise");
            let got = s.claim(100, 1_000, 10).await.expect("claim");
            assert_eq!(got.len(), 1);
            assert!(s.claim(500, 1_000, 10).await.expect("claim").is_empty());
            assert_eq!(
                s.claim(1_100, 1_000, 10).await.expect("claim").len(),
                1,
                "lease ran out"
            );
            assert_eq!(s.release_leases().await.expect("release"), 1);
            let it = s.claim(1_200, 1_000, 10).await.expect("claim").remove(0);
            s.record_outcomes(&[outcome(&it, 1_200, Some(("HTTP 503", Some(1_500))))])
                .await
                .expect("failed");
            assert!(
                s.claim(1_300, 1_000, 10).await.expect("claim").is_empty(),
                "waits for its retry"
            );
            let it = s.claim(1_500, 1_000, 10).await.expect("claim").remove(0);
            assert_eq!(it.attempts, 1);
            s.record_outcomes(&[outcome(&it, 1_600, Some(("HTTP 400", None)))])
                .await
                .expect("dead");
            assert_eq!(
                s.deliveries(Some("dead"), None, 10)
                    .await
                    .expect("dead")
                    .len(),
                1
            );
            assert!(s.retry_delivery(it.id, 2_000).await.expect("retry"));
            let it = s.claim(2_000, 1_000, 10).await.expect("claim").remove(0);
            s.record_outcomes(&[outcome(&it, 2_100, None)])
                .await
                .expect("delivered");
            assert!(s.claim(9_000, 1_000, 10).await.expect("claim").is_empty());
            let kinds: Vec<String> = s
                .timeline("w-1")
                .await
                .expect("tl")
                .into_iter()
                .map(|e| e.kind)
                .collect();
            assert_eq!(
                kinds,
                ["raised", "delivery_failed", "delivery_dead", "delivered"]
            );
        }
    }
}
