//! `POST /api/v1/query`: read-only SQL over the history archive, for operators and admins.
//!
//! SQL from any operator token is hostile input. Its text is bounded before anything else
//! ([`Limits::API`]: length, tokens, nesting, unions, relations); at most two queries run at
//! once; and each runs in a worker process of its own (`yujing query-worker`, this same binary)
//! with an address-space limit of `[archive] query_memory_mib` + 1 GiB, a deadline and no core
//! dump. DataFusion's memory pool bounds what its operators reserve; the process limit bounds
//! everything else (a scalar function building huge strings, a stack overflow in the planner):
//! the worker dies, the service does not. A client that goes away kills its worker, and the
//! query's place is given back only once the worker has exited.

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::archive::query::{self as aq, Limits, QueryError};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Deserialize)]
pub struct QueryBody {
    sql: String,
    /// At most this many rows (default 1,000, at most 10,000).
    limit: Option<usize>,
}

/// Queries running at once: SQL over the archive is heavy work. A permit is held until the
/// query's worker has exited, even when its client went away.
static QUERIES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
/// How long a query waits for one of the permits before it is turned away (503).
const QUERY_QUEUE: Duration = Duration::from_secs(10);
/// Address space a worker has beyond its query memory: the binary, thread stacks, allocator
/// arenas, the answer.
const WORKER_OVERHEAD: u64 = 1 << 30;
/// What a worker may write on stderr that is kept (a panic message).
const STDERR_KEPT: usize = 16 << 10;

/// What the service asks of a worker (its stdin, JSON).
#[derive(Serialize, Deserialize)]
pub struct WorkerRequest {
    pub dir: PathBuf,
    pub sql: String,
    pub limit: usize,
    pub memory_mib: usize,
    pub answer_bytes: usize,
    pub timeout_ms: u64,
}

/// A worker's answer when it fails (its stdout, JSON; exit code [`WORKER_ERROR`]).
#[derive(Serialize, Deserialize)]
struct WorkerFailure {
    error: String,
    /// The query's fault (400), not the service's.
    client: bool,
}

/// The exit code of a worker that wrote a [`WorkerFailure`].
pub const WORKER_ERROR: i32 = 3;

/// Read-only SQL over the history archive (operators and administrators: the archive holds
/// every department's warnings).
pub async fn query(
    State(st): State<AppState>,
    caller: Caller,
    Json(q): Json<QueryBody>,
) -> Result<Response, ApiError> {
    if caller.department().is_some() {
        return Err(ApiError::Forbidden(format!(
            "{} may not query the archive: it holds every department's warnings (operator or admin role)",
            caller.name
        )));
    }
    let Some(archive) = st.config.borrow().service.archive.clone() else {
        return Err(ApiError::NotFound(
            "no archive: [archive] is not set in yujing.toml".into(),
        ));
    };
    let count = |outcome: &str| st.metrics.queries.with_label_values(&[outcome]).inc();
    // refused before it waits for a permit or reaches a worker
    if q.sql.len() > Limits::API.sql_bytes {
        count("refused");
        return Err(ApiError::BadRequest(
            QueryError::TooLong(q.sql.len(), Limits::API.sql_bytes).to_string(),
        ));
    }
    let req = WorkerRequest {
        dir: archive.dir,
        sql: q.sql,
        limit: q.limit.unwrap_or(1_000).min(10_000),
        memory_mib: archive.query_memory_mib,
        answer_bytes: archive.query_answer_mib << 20,
        timeout_ms: archive.query_timeout as u64,
    };
    let Ok(Ok(permit)) = tokio::time::timeout(QUERY_QUEUE, QUERIES.acquire()).await else {
        count("busy");
        let mut r = ApiError::Unavailable("other queries are running: try again shortly".into())
            .into_response();
        r.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("5"),
        );
        return Ok(r);
    };
    // the client going away (this future dropped) kills the worker; the permit goes back only
    // when the worker has exited
    let cancel = CancellationToken::new();
    let _kill_on_drop = cancel.clone().drop_guard();
    let running = st.metrics.queries_running.clone();
    let task = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        running.inc();
        struct Done(prometheus::IntGauge);
        impl Drop for Done {
            fn drop(&mut self) {
                self.0.dec();
            }
        }
        let _done = Done(running);
        run_worker(&req, &cancel)
    });
    let res = task
        .await
        .map_err(|_| ApiError::Internal("the query task stopped".into()))?;
    let (outcome, res) = match res {
        Ok(body) => ("ok", Ok(body)),
        Err(Ended::Failed(f)) if f.client => ("refused", Err(ApiError::BadRequest(f.error))),
        Err(Ended::Failed(f)) => ("failed", Err(ApiError::Unavailable(f.error))),
        Err(Ended::Timeout(s)) => (
            "timeout",
            Err(ApiError::Unavailable(QueryError::Timeout(s).to_string())),
        ),
        Err(Ended::Killed(m)) => ("killed", Err(ApiError::BadRequest(m))),
        Err(Ended::Cancelled) => ("cancelled", Err(ApiError::Unavailable("cancelled".into()))),
    };
    count(outcome);
    let body = res?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// How a worker ended, when it gave no answer.
enum Ended {
    Failed(WorkerFailure),
    Timeout(u64),
    /// Killed by the kernel or itself: out of its address space, or a crash.
    Killed(String),
    Cancelled,
}

/// Run one query in a worker process and wait for it (blocking): its answer's bytes, or how it
/// ended.
fn run_worker(req: &WorkerRequest, cancel: &CancellationToken) -> Result<Vec<u8>, Ended> {
    let failed = |m: String| {
        Ended::Failed(WorkerFailure {
            error: m,
            client: false,
        })
    };
    let exe = std::env::current_exe().map_err(|e| {
        failed(format!(
            "cannot find the yujing binary for a query worker: {e}"
        ))
    })?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("query-worker")
        // fewer malloc arenas: less address space reserved per thread
        .env("MALLOC_ARENA_MAX", "2")
        .env_remove("RUST_BACKTRACE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let space = ((req.memory_mib as u64) << 20).saturating_add(WORKER_OVERHEAD);
        // SAFETY: between fork and exec only setrlimit, which is async-signal-safe, runs
        unsafe {
            cmd.pre_exec(move || {
                let limit = |resource, v: u64| {
                    let l = libc::rlimit {
                        rlim_cur: v as libc::rlim_t,
                        rlim_max: v as libc::rlim_t,
                    };
                    libc::setrlimit(resource, &l)
                };
                if limit(libc::RLIMIT_AS, space) != 0 || limit(libc::RLIMIT_CORE, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| failed(format!("cannot start a query worker: {e}")))?;
    let request = serde_json::to_vec(req).map_err(|e| failed(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&request);
    }
    // the answer (at most its cap and a margin: a worker writing more is cut off) and stderr
    let cap = req.answer_bytes.saturating_add(1 << 20);
    let stdout = read_bounded(child.stdout.take(), cap);
    let stderr = read_bounded(child.stderr.take(), STDERR_KEPT);
    let deadline = Instant::now() + Duration::from_millis(req.timeout_ms) + Duration::from_secs(5);
    let mut stopped = None;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) => {}
            Err(_) => break None,
        }
        if cancel.is_cancelled() {
            stopped = Some(Ended::Cancelled);
        } else if Instant::now() > deadline {
            stopped = Some(Ended::Timeout(req.timeout_ms / 1000));
        }
        if stopped.is_some() {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    if let Some(s) = stopped {
        return Err(s);
    }
    let Some(status) = status else {
        return Err(failed("lost track of the query worker".into()));
    };
    match status.code() {
        Some(0) => Ok(out),
        Some(WORKER_ERROR) => Err(Ended::Failed(serde_json::from_slice(&out).unwrap_or_else(
            |_| WorkerFailure {
                error: "the query failed".into(),
                client: false,
            },
        ))),
        _ => {
            let said = String::from_utf8_lossy(&err);
            let memory = said.contains("memory allocation") || said.contains("out of memory");
            tracing::warn!(status = %status, stderr = %said.lines().next().unwrap_or(""), "a query worker died");
            Err(Ended::Killed(if memory {
                format!(
                    "the query needed more memory than a query may have ([archive] query_memory_mib {} MiB, and 1 GiB more for the rest): aggregate more, or narrow it by day or site",
                    req.memory_mib
                )
            } else {
                format!("the query could not run: its worker ended ({status})")
            }))
        }
    }
}

/// Read at most `cap` bytes of a pipe on a thread of its own.
fn read_bounded<R: Read + Send + 'static>(
    r: Option<R>,
    cap: usize,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(r) = r {
            let _ = r.take(cap as u64).read_to_end(&mut out);
        }
        out
    })
}

/// `yujing query-worker`: read a [`WorkerRequest`] on stdin, run it within the API's limits,
/// write the answer's JSON on stdout (exit 0) or a failure (exit [`WORKER_ERROR`]).
pub fn worker_main() -> i32 {
    let mut input = Vec::new();
    let _ = std::io::stdin().take(1 << 20).read_to_end(&mut input);
    let fail = |error: String, client: bool| {
        let _ = std::io::stdout().write_all(
            serde_json::to_string(&WorkerFailure { error, client })
                .unwrap_or_default()
                .as_bytes(),
        );
        WORKER_ERROR
    };
    let req: WorkerRequest = match serde_json::from_slice(&input) {
        Ok(r) => r,
        Err(e) => return fail(format!("a query worker's request: {e}"), false),
    };
    let limits = Limits {
        memory: Some(req.memory_mib << 20),
        answer_bytes: req.answer_bytes,
        timeout: Duration::from_millis(req.timeout_ms),
        ..Limits::API
    };
    let answer = aq::run_isolated(
        req.dir.clone(),
        req.sql,
        req.limit,
        limits,
        CancellationToken::new(),
    );
    let answer = match answer {
        Ok(a) => a,
        Err(e) => return fail(e.to_string(), e.is_client()),
    };
    let tz = crate::archive::timezone(&req.dir).unwrap_or(chrono_tz::Tz::UTC);
    match aq::json_body(&answer, tz, req.answer_bytes) {
        Ok(body) => match std::io::stdout().write_all(&body) {
            Ok(()) => 0,
            Err(_) => WORKER_ERROR,
        },
        Err(e) => fail(e.to_string(), false),
    }
}
