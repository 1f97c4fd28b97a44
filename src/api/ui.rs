//! The dashboard: a single page (HTML, CSS, JavaScript embedded in the binary; no CDN, no build
//! step) served at `/`, logged in with an API token exchanged for a session cookie
//! ([`super::session`]). It reads and acts through the same `/api/v1` endpoints as any client.

use super::auth::{caller_of_token, Caller, ClientAddr};
use super::session::{cookie, COOKIE, TTL_MS};
use super::{ApiError, AppState};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

const INDEX: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const APP_CSS: &str = include_str!("ui/app.css");

fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

pub async fn index() -> Response {
    let mut r = asset(INDEX, "text/html; charset=utf-8");
    let h = r.headers_mut();
    // everything the page needs is served from here
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

pub async fn app_js() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

pub async fn app_css() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    token: String,
}

fn who(st: &AppState, c: &Caller, csrf: &str) -> serde_json::Value {
    let cfg = st.config.borrow().clone();
    let departments: Vec<_> = cfg
        .registry
        .departments
        .iter()
        .map(|d| json!({"id": d.id, "name": d.name, "name_en": d.name_en}))
        .collect();
    json!({
        "name": c.name,
        "role": c.role.as_string(),
        "department": c.department(),
        "csrf": csrf,
        "departments": departments,
    })
}

/// Exchange an API token for a session cookie.
pub async fn login(
    State(st): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    Json(l): Json<Login>,
) -> Result<Response, ApiError> {
    if !st.sessions.logins.attempt(addr) {
        st.metrics.logins.with_label_values(&["limited"]).inc();
        let mut r = (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({"error": "too many failed logins from this address: wait a minute"})),
        )
            .into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return Ok(r);
    }
    // counted as failed until it succeeds
    let caller = caller_of_token(&st, &l.token).inspect_err(|_| {
        st.metrics.logins.with_label_values(&["failed"]).inc();
        tracing::warn!(%addr, "dashboard login with an unknown token");
    })?;
    st.sessions.logins.succeeded(addr);
    if caller.role == crate::config::service::Role::Ingest {
        return Err(ApiError::Forbidden(format!(
            "{} has the ingest role: it posts 12345 tickets and has no dashboard",
            caller.name
        )));
    }
    st.metrics.logins.with_label_values(&["ok"]).inc();
    let (id, s) = st
        .sessions
        .open(
            &caller.name,
            &caller.role,
            &caller.token,
            crate::store::now_ms(),
        )
        .map_err(|e| ApiError::Internal(format!("cannot make a session: {e}")))?;
    tracing::info!(user = %caller.name, role = %caller.role.as_string(), "dashboard login");
    // behind an HTTPS reverse proxy the cookie never travels in clear
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        TTL_MS / 1000,
        if https { "; Secure" } else { "" }
    );
    let mut r = Json(who(&st, &caller, &s.csrf)).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

/// Who the session belongs to (and its CSRF token), for a page that was reloaded.
pub async fn session(State(st): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let id = session_id(&headers).ok_or_else(|| ApiError::Unauthorized("not logged in".into()))?;
    let (c, csrf) = super::auth::session_caller(&st, id)?;
    Ok(Json(who(&st, &c, &csrf)).into_response())
}

/// End the session (CSRF-checked like any change).
pub async fn logout(State(st): State<AppState>, _caller: Caller, headers: HeaderMap) -> Response {
    if let Some(id) = session_id(&headers) {
        st.sessions.close(id);
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("yj_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| cookie(h, COOKIE))
}
