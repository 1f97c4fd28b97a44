//! The HTTP API (axum) per the contract: warnings and their lifecycle, sites with the engine's
//! latest readings and device health, rules and the last reload, server-sent events of warning
//! changes, `/metrics`, `/healthz`, `/readyz`, and the OpenAPI document. It reads the store and
//! asks the engine; it never touches a connector.

pub mod auth;
pub mod hotline;
pub mod query;
pub mod server;
pub mod session;
pub mod ui;

use crate::config::Config;
use crate::dispatch::channel;
use crate::handle::{LiveEvent, Readiness, ReloadResult, Request, SiteView, TicketSink};
use crate::metrics::Metrics;
use crate::store::{now_ms, ActError, Action, Filter, Store, WarningRow};
use crate::time::{format_ts, parse_ts, Ts};
use crate::warnings::shown;
use auth::Caller;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

/// The OpenAPI 3.1 description of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub config: watch::Receiver<Arc<Config>>,
    pub engine: mpsc::Sender<Request>,
    pub events: broadcast::Sender<Arc<LiveEvent>>,
    pub reload: Arc<Mutex<ReloadResult>>,
    /// The inputs `/readyz` waits for (the MQTT connection, when there is one).
    pub ready: Vec<Readiness>,
    /// `yujing demo` receives its own webhooks here: (secret, what arrived).
    pub demo_hooks: Option<Arc<DemoHooks>>,
    /// Dashboard sessions.
    pub sessions: Arc<session::Sessions>,
    /// In a cluster (`[cluster]`): tickets taken here are counted by the instance whose
    /// partition carries their site, so they go there (the tickets topic).
    pub tickets_out: Option<Arc<dyn TicketSink>>,
}

/// Webhooks the demo sends to itself, verified like any receiver would.
pub struct DemoHooks {
    pub secret: String,
    /// The newest webhooks received (at most 1,000) and how many in all.
    pub received: Mutex<Vec<Value>>,
    pub total: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
pub enum ApiError {
    Unauthorized(String),
    Forbidden(String),
    NotFound(String),
    BadRequest(String),
    Conflict(String),
    Unavailable(String),
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, msg) = match self {
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
            ApiError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, m),
        };
        let mut r = (status, Json(json!({ "error": msg }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "store error in the API");
        ApiError::Internal("the store failed; see the service log".into())
    }
}

/// Count and log refusals (4xx) with the path and reason.
async fn log_refusals(
    State(st): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let s = resp.status();
    if s.is_client_error() {
        st.metrics
            .api_refused
            .with_label_values(&[s.as_str()])
            .inc();
        tracing::warn!(status = s.as_u16(), %method, %path, "API request refused");
    }
    resp
}

pub fn router(state: AppState) -> Router {
    let mut r = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/warnings", get(list_warnings))
        .route("/api/v1/warnings/{id}", get(get_warning))
        .route("/api/v1/warnings/{id}/ack", post(ack))
        .route("/api/v1/warnings/{id}/feedback", post(feedback))
        .route("/api/v1/warnings/{id}/close", post(close))
        .route("/api/v1/sites", get(sites))
        .route("/api/v1/sites/{id}", get(site))
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/rules/tests", get(rule_tests))
        .route("/api/v1/report", get(report))
        .route("/api/v1/query", post(query::query))
        .route("/api/v1/reload", post(reload))
        .route("/api/v1/deliveries", get(deliveries))
        .route("/api/v1/deliveries/{id}/retry", post(retry_delivery))
        .route("/api/v1/stream", get(stream))
        .route(
            "/api/v1/hotline/tickets",
            get(hotline::list_tickets).post(hotline::post_ticket),
        )
        .route(
            "/api/v1/hotline/tickets/{number}/assign",
            post(hotline::assign_ticket),
        )
        .route("/api/v1", get(index))
        .route("/", get(ui::index))
        .route("/ui/app.js", get(ui::app_js))
        .route("/ui/app.css", get(ui::app_css))
        .route("/ui/login", post(ui::login))
        .route("/ui/session", get(ui::session))
        .route("/ui/logout", post(ui::logout));
    if state.demo_hooks.is_some() {
        r = r
            .route("/demo/hooks/{department}", post(demo_hook))
            .route("/demo/hooks", get(demo_hooks_seen));
    }
    r.fallback(|uri: Uri| async move { ApiError::NotFound(format!("no such endpoint: {uri}")) })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            log_refusals,
        ))
        .with_state(state)
}

async fn index() -> impl IntoResponse {
    Json(json!({
        "service": "yujing",
        "version": env!("CARGO_PKG_VERSION"),
        "api": "/api/v1",
        "openapi": "/api/v1/openapi.json",
        "metrics": "/metrics",
    }))
}

async fn openapi() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}

async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        st.metrics.render(),
    )
}

async fn readyz(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let version = st
        .store
        .schema_version()
        .await
        .map_err(|e| ApiError::Unavailable(format!("store: {e}")))?;
    for ready in &st.ready {
        ready().map_err(ApiError::Unavailable)?;
    }
    Ok(Json(json!({ "ready": true, "schema_version": version })))
}

fn ts_opt(t: Option<Ts>, tz: chrono_tz::Tz) -> Value {
    t.map(|t| Value::String(format_ts(t, tz)))
        .unwrap_or(Value::Null)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    level: Option<String>,
    department: Option<String>,
    site: Option<String>,
    rule: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

const STATUSES: [&str; 5] = ["open", "acknowledged", "handled", "closed", "cleared"];

async fn list_warnings(
    State(st): State<AppState>,
    caller: Caller,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let tz = st.config.borrow().settings.timezone;
    if let Some(s) = &q.status {
        if !STATUSES.contains(&s.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "status must be one of {}",
                STATUSES.join(", ")
            )));
        }
    }
    if let Some(l) = &q.level {
        if crate::event::Level::parse(l).is_none() {
            return Err(ApiError::BadRequest(
                "level must be blue, yellow, orange or red".into(),
            ));
        }
    }
    let time = |s: &Option<String>, name: &str| -> Result<Option<Ts>, ApiError> {
        s.as_deref()
            .map(|s| parse_ts(s, tz).map_err(|e| ApiError::BadRequest(format!("{name}: {e}"))))
            .transpose()
    };
    let department = match (caller.department(), q.department) {
        (Some(own), Some(asked)) if asked != own => {
            return Err(ApiError::Forbidden(format!(
                "{} sees only the warnings of department {own}",
                caller.name
            )))
        }
        (Some(own), _) => Some(own.to_string()),
        (None, asked) => asked,
    };
    let f = Filter {
        status: q.status,
        level: q.level,
        department,
        site: q.site,
        rule: q.rule,
        from: time(&q.from, "from")?,
        to: time(&q.to, "to")?,
        limit: q.limit.unwrap_or(50).clamp(1, 500),
        offset: q.offset.unwrap_or(0).max(0),
    };
    let (rows, total) = st.store.list(&f).await?;
    Ok(Json(json!({
        "total": total,
        "limit": f.limit,
        "offset": f.offset,
        "items": rows.iter().map(|w| shown(w, tz)).collect::<Vec<_>>(),
    })))
}

/// The warning, if the caller may see it (403 otherwise, logged).
async fn visible(st: &AppState, caller: &Caller, id: &str) -> Result<WarningRow, ApiError> {
    let Some(w) = st.store.get(id).await? else {
        return Err(ApiError::NotFound(format!("no warning {id}")));
    };
    if !caller.sees(&w.departments) {
        return Err(ApiError::Forbidden(format!(
            "warning {id} belongs to {}, not to {}",
            w.departments.join(", "),
            caller.role.as_string()
        )));
    }
    Ok(w)
}

async fn get_warning(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tz = st.config.borrow().settings.timezone;
    let w = visible(&st, &caller, &id).await?;
    // a warning shared by several departments: each sees its own deliveries only (another's
    // channel names and outcomes are not its business)
    let own = |d: &str| caller.department().is_none_or(|o| o == d);
    let secrets = channel_secrets(&st.config.borrow());
    let timeline: Vec<Value> = st
        .store
        .timeline(&id)
        .await?
        .into_iter()
        .filter(|e| e.detail["department"].as_str().is_none_or(own))
        .map(|mut e| {
            // errors stored before they were redacted where they arose (older versions)
            if let Some(err) = e.detail["error"].as_str() {
                e.detail["error"] = channel::redact(err, &secrets).into();
            }
            json!({ "at": format_ts(e.at, tz), "kind": e.kind, "actor": e.actor, "detail": e.detail })
        })
        .collect();
    let deliveries: Vec<Value> = st
        .store
        .deliveries(None, Some(&id), 500)
        .await?
        .into_iter()
        .filter(|d| own(&d.department))
        .map(|d| delivery_json(&d, tz, &secrets))
        .collect();
    let mut v = shown(&w, tz);
    v["timeline"] = json!(timeline);
    v["deliveries"] = json!(deliveries);
    Ok(Json(v))
}

fn delivery_json(d: &crate::store::OutboxItem, tz: chrono_tz::Tz, secrets: &[String]) -> Value {
    json!({
        "id": d.id, "key": d.key, "warning_id": d.warning_id, "purpose": d.purpose,
        "department": d.department, "channel": d.channel, "state": d.state, "attempts": d.attempts,
        "next_at": format_ts(d.next_at, tz), "created_at": format_ts(d.created_at, tz),
        "delivered_at": ts_opt(d.delivered_at, tz),
        "last_error": d.last_error.as_deref().map(|e| channel::redact(e, secrets)),
    })
}

/// Every channel's secrets and URL parameters: what no answer may show.
fn channel_secrets(cfg: &Config) -> Vec<String> {
    cfg.routes
        .channels
        .iter()
        .flat_map(|c| crate::dispatch::channel_secrets(cfg, c))
        .collect()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackBody {
    measures: String,
    result: String,
}

fn body<T: serde::de::DeserializeOwned + Default>(b: &[u8]) -> Result<T, ApiError> {
    if b.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(b).map_err(|e| ApiError::BadRequest(format!("body: {e}")))
}

async fn act(
    st: &AppState,
    caller: &Caller,
    id: &str,
    action: Action,
) -> Result<Json<Value>, ApiError> {
    let tz = st.config.borrow().settings.timezone;
    visible(st, caller, id).await?;
    let w = match st.store.act(id, &action, &caller.actor(), now_ms()).await? {
        Ok(w) => w,
        Err(ActError::NotFound) => return Err(ApiError::NotFound(format!("no warning {id}"))),
        Err(ActError::Conflict(m)) => return Err(ApiError::Conflict(m)),
    };
    let v = shown(&w, tz);
    let _ = st.events.send(Arc::new(LiveEvent {
        kind: "update",
        id: w.id.clone(),
        departments: w.departments.clone(),
        data: v.to_string(),
    }));
    Ok(Json(v))
}

async fn ack(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    b: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let n: NoteBody = body(&b)?;
    act(&st, &caller, &id, Action::Ack { note: n.note }).await
}

async fn feedback(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    b: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let f: FeedbackBody = serde_json::from_slice(&b).map_err(|e| {
        ApiError::BadRequest(format!(
            "body must be {{\"measures\": \"...\", \"result\": \"...\"}}: {e}"
        ))
    })?;
    if f.measures.trim().is_empty() || f.result.trim().is_empty() {
        return Err(ApiError::BadRequest(
            "measures and result must not be empty".into(),
        ));
    }
    act(
        &st,
        &caller,
        &id,
        Action::Feedback {
            measures: f.measures,
            result: f.result,
        },
    )
    .await
}

async fn close(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    b: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let n: NoteBody = body(&b)?;
    let without_feedback = caller.department().is_none();
    act(
        &st,
        &caller,
        &id,
        Action::Close {
            note: n.note,
            without_feedback,
        },
    )
    .await
}

/// The engine's view of every site; a department sees what fires only at its own sites.
async fn ask_sites(
    st: &AppState,
    caller: &Caller,
    points: usize,
) -> Result<Vec<SiteView>, ApiError> {
    let mut v = ask_engine(st, points).await?;
    if let Some(d) = caller.department() {
        for s in &mut v {
            if !s.departments.iter().any(|x| x == d) {
                s.firing.clear();
            }
        }
    }
    Ok(v)
}

async fn ask_engine(st: &AppState, points: usize) -> Result<Vec<SiteView>, ApiError> {
    let (tx, rx) = oneshot::channel();
    st.engine
        .send(Request::Sites(points, tx))
        .await
        .map_err(|_| ApiError::Unavailable("the engine is shutting down".into()))?;
    rx.await
        .map_err(|_| ApiError::Unavailable("the engine is shutting down".into()))
}

async fn sites(State(st): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    // the list carries half an hour per series: enough for sparklines
    let v = ask_sites(&st, &caller, 30).await?;
    Ok(Json(json!({ "items": v })))
}

async fn site(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let cfg = st.config.borrow().clone();
    let tz = cfg.settings.timezone;
    let all = ask_sites(&st, &caller, crate::handle::HISTORY_MINUTES).await?;
    let Some(s) = all.into_iter().find(|s| s.id == id) else {
        return Err(ApiError::NotFound(format!("no site {id}")));
    };
    let (rows, _) = st
        .store
        .list(&Filter {
            site: Some(id.clone()),
            department: caller.department().map(str::to_string),
            limit: 100,
            ..Filter::default()
        })
        .await?;
    let mut v = serde_json::to_value(&s).map_err(|e| ApiError::Internal(e.to_string()))?;
    v["warnings"] = json!(rows
        .iter()
        .filter(|w| w.status != "closed")
        .map(|w| shown(w, tz))
        .collect::<Vec<_>>());
    v["thresholds"] = json!(thresholds_at(&cfg, &id));
    Ok(Json(v))
}

/// The level thresholds each rule applies at a site, per metric: what charts draw.
fn thresholds_at(cfg: &Config, site: &str) -> Vec<Value> {
    let Some(si) = cfg.registry.site(site) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for r in cfg.rules.iter().filter(|r| r.sites.contains(&si)) {
        // daily counts compare a number of windows, not the metric: nothing to draw
        let crate::config::rules::Body::Threshold {
            conds,
            per_day: None,
            ..
        } = &r.body
        else {
            continue;
        };
        // only aggregates in the metric's own units can be drawn over its readings
        use crate::config::rules::Agg;
        for c in conds.iter().filter(|c| {
            matches!(
                c.aggregate,
                Agg::Avg | Agg::Min | Agg::Max | Agg::First | Agg::Last | Agg::Quantile(_)
            )
        }) {
            let Some(t) = c.thresholds.get(&si) else {
                continue;
            };
            let levels: serde_json::Map<String, Value> = crate::event::Level::ALL
                .iter()
                .filter(|l| !t[l.index()].is_nan())
                .map(|l| {
                    let level = if c.gate { r.level } else { *l };
                    (level.as_str().to_string(), json!(t[l.index()]))
                })
                .collect();
            out.push(json!({
                "rule": r.id, "title": r.title, "title_en": r.title_en,
                "metric": c.metric, "aggregate": c.aggregate.name(),
                "direction": if c.direction == crate::config::rules::Direction::Above { "above" } else { "below" },
                "levels": levels,
            }));
        }
    }
    out
}

async fn rules(State(st): State<AppState>, _caller: Caller) -> Result<Json<Value>, ApiError> {
    let cfg = st.config.borrow().clone();
    let list: Vec<Value> = cfg
        .rules
        .iter()
        .map(|r| {
            json!({
                "id": r.id, "title": r.title, "title_en": r.title_en,
                "file": r.file.to_string(), "line": r.pos.line,
                "kinds": r.kinds, "sites": r.sites.iter().map(|s| cfg.registry.sites[*s as usize].id.clone()).collect::<Vec<_>>(),
                "level": r.level.as_str(),
                "window": r.window().map(|w| w.describe()),
            })
        })
        .collect();
    let last = st.reload.lock().map(|r| r.clone()).ok();
    Ok(Json(json!({ "rules": list, "last_reload": last })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /api/v1/report?from=&to=`: the department response report (default: the last 30 days);
/// a department gets its own row.
async fn report(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<ReportQuery>,
) -> Result<Json<Value>, ApiError> {
    let cfg = st.config.borrow().clone();
    let tz = cfg.settings.timezone;
    let now = now_ms();
    let when = |v: &Option<String>, default: Ts| -> Result<Ts, ApiError> {
        match v.as_deref() {
            None => Ok(default),
            Some(s) => {
                let full = if s.len() == 10 {
                    format!("{s}T00:00:00")
                } else {
                    s.to_string()
                };
                parse_ts(&full, tz).map_err(|e| ApiError::BadRequest(format!("`{s}`: {e}")))
            }
        }
    };
    let from = when(&q.from, now - 30 * 86_400_000)?;
    let to = when(&q.to, now + 1)?;
    let cases = crate::report::cases(&st.store, from, to).await?;
    let names = crate::report::department_names(&cfg.registry);
    let mut rows = crate::report::summarize(&cases, &names);
    if let Some(d) = caller.department() {
        rows.retain(|r| r.department == d);
    }
    Ok(Json(json!({
        "from": format_ts(from, tz),
        "to": format_ts(to, tz),
        "departments": rows,
    })))
}

/// Run the rule tests of the configuration now loaded (operators and admins).
async fn rule_tests(State(st): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    if caller.department().is_some() {
        return Err(ApiError::Forbidden(format!(
            "{} may not run rule tests: operators and admins may",
            caller.name
        )));
    }
    let cfg = st.config.borrow().clone();
    let outcomes = tokio::task::spawn_blocking(move || crate::ruletest::run_all(&cfg))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let passed = outcomes.iter().filter(|o| o.failure.is_none()).count();
    let items: Vec<Value> = outcomes
        .iter()
        .map(|o| json!({"name": o.name, "location": o.location, "ok": o.failure.is_none(), "failure": o.failure}))
        .collect();
    Ok(Json(json!({
        "passed": passed,
        "failed": outcomes.len() - passed,
        "items": items,
    })))
}

async fn reload(State(st): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let (tx, rx) = oneshot::channel();
    st.engine
        .send(Request::Reload(format!("api by {}", caller.name), tx))
        .await
        .map_err(|_| ApiError::Unavailable("the engine is shutting down".into()))?;
    let res = rx
        .await
        .map_err(|_| ApiError::Unavailable("the engine is shutting down".into()))?;
    let status = if res.ok {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((status, Json(json!(res))).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DeliveryQuery {
    state: Option<String>,
    limit: Option<i64>,
}

async fn deliveries(
    State(st): State<AppState>,
    caller: Caller,
    q: Result<Query<DeliveryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if caller.department().is_some() {
        return Err(ApiError::Forbidden(
            "the delivery queue is for operators and admins".into(),
        ));
    }
    let tz = st.config.borrow().settings.timezone;
    let secrets = channel_secrets(&st.config.borrow());
    let items = st
        .store
        .deliveries(
            q.state.as_deref(),
            None,
            q.limit.unwrap_or(100).clamp(1, 1000),
        )
        .await?;
    Ok(Json(
        json!({ "items": items.iter().map(|d| delivery_json(d, tz, &secrets)).collect::<Vec<_>>() }),
    ))
}

async fn retry_delivery(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    if st.store.retry_delivery(id, now_ms()).await? {
        Ok(Json(json!({ "id": id, "state": "pending" })))
    } else {
        Err(ApiError::Conflict(format!(
            "delivery {id} is not dead (or does not exist)"
        )))
    }
}

async fn stream(
    State(st): State<AppState>,
    caller: Caller,
) -> Sse<impl tokio_stream::Stream<Item = Result<Event, Infallible>>> {
    // the stream ends when the caller's token is revoked: checked at every event and every
    // five seconds
    let ticks = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(
        std::time::Duration::from_secs(5),
    ))
    .map(|_| None);
    let rx = BroadcastStream::new(st.events.subscribe()).map(Some);
    let config = st.config.clone();
    let who = caller.clone();
    let s = rx
        .merge(ticks)
        .take_while(move |_| who.still_valid(&config.borrow()))
        .filter_map(move |ev| match ev? {
            Ok(ev) if caller.sees(&ev.departments) => Some(Ok(Event::default()
                .event(ev.kind)
                .id(ev.id.clone())
                .data(ev.data.clone()))),
            Ok(_) => None,
            Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                Some(Ok(Event::default()
                    .event("lagged")
                    .data(json!({ "missed": n }).to_string())))
            }
        });
    Sse::new(s).keep_alive(KeepAlive::default())
}

async fn demo_hook(
    State(st): State<AppState>,
    Path(department): Path<String>,
    headers: HeaderMap,
    b: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let Some(h) = &st.demo_hooks else {
        return Err(ApiError::NotFound("no demo".into()));
    };
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    channel::verify_webhook(
        &h.secret,
        &b,
        header("x-yujing-timestamp"),
        header("x-yujing-signature"),
        now_ms() / 1000,
        channel::WEBHOOK_TOLERANCE_S,
    )
    .map_err(ApiError::Unauthorized)?;
    let doc: Value = serde_json::from_slice(&b).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let key = headers
        .get("x-yujing-delivery")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let notice = if doc["notice"].is_object() {
        "（超时提醒）"
    } else {
        ""
    };
    println!(
        "  webhook → {department}: 【{}】{}{notice}  [signature ok]",
        channel::level_zh(doc["level"].as_str().unwrap_or("")),
        doc["message"].as_str().unwrap_or("")
    );
    h.total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Ok(mut r) = h.received.lock() {
        // the newest 1,000 are kept: a demo left running must not grow without bound
        if r.len() >= 1_000 {
            r.remove(0);
        }
        r.push(json!({ "department": department, "key": key, "warning": doc }));
    }
    Ok(Json(json!({ "ok": true })))
}

/// The webhooks the demo received: a department's own, or all of them for operators and admins.
async fn demo_hooks_seen(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let Some(h) = &st.demo_hooks else {
        return Err(ApiError::NotFound("no demo".into()));
    };
    let mut v = h.received.lock().map(|r| r.clone()).unwrap_or_default();
    let mut count = h.total.load(std::sync::atomic::Ordering::Relaxed);
    if let Some(own) = caller.department() {
        v.retain(|x| x["department"] == own);
        count = v.len() as u64;
    }
    Ok(Json(json!({ "count": count, "items": v })))
}
