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
mod deadlines;
mod outbox;
mod warnings;

use warnings::{add_deliveries, add_timeline, add_timelines, values, warning_row};
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
