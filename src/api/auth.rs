//! Bearer tokens with roles. yujing.toml stores only each token's SHA-256; a request's token is
//! hashed and looked up. The dashboard's requests carry a session cookie instead
//! ([`super::session`]), and their state-changing ones the session's CSRF token. Every refusal is
//! counted and logged with its reason.

use super::{ApiError, AppState};
use crate::config::service::Role;
use crate::dispatch::channel::token_hash;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

/// Who is calling.
#[derive(Clone, Debug)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// The actor recorded in a warning's timeline.
    pub fn actor(&self) -> String {
        format!("{} ({})", self.name, self.role.as_string())
    }

    /// May this caller see a warning sent to `departments`?
    pub fn sees(&self, departments: &[String]) -> bool {
        match &self.role {
            Role::Operator | Role::Admin => true,
            Role::Department(d) => departments.iter().any(|x| x == d),
            Role::Ingest => false,
        }
    }

    pub fn department(&self) -> Option<&str> {
        match &self.role {
            Role::Department(d) => Some(d),
            _ => None,
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Admin => Ok(()),
            _ => Err(ApiError::Forbidden(format!(
                "{} may not do this: it needs the admin role",
                self.name
            ))),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let Some(token) = header.and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        }) else {
            return from_session(parts, state);
        };
        let caller = caller_of_token(state, token)?;
        // the 12345 system's token posts tickets and does nothing else, whatever a handler
        // would otherwise allow a caller that is not a department
        if caller.role == Role::Ingest
            && !(parts.method == axum::http::Method::POST && parts.uri.path() == INGEST_PATH)
        {
            return Err(ApiError::Forbidden(format!(
                "{} has the ingest role: it may only POST {INGEST_PATH}",
                caller.name
            )));
        }
        Ok(caller)
    }
}

/// The one endpoint the `ingest` role may call.
pub const INGEST_PATH: &str = "/api/v1/hotline/tickets";

/// The caller a token belongs to.
pub fn caller_of_token(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let hash = token_hash(token.trim());
    let cfg = state.config.borrow().clone();
    match cfg.service.tokens.iter().find(|t| t.sha256 == hash) {
        Some(t) => Ok(Caller {
            name: t.name.clone(),
            role: t.role.clone(),
        }),
        None => Err(ApiError::Unauthorized("unknown token".into())),
    }
}

/// A dashboard request: the session cookie, and for anything but reading the CSRF token.
fn from_session(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    use super::session::{cookie, COOKIE, CSRF_HEADER};
    let id = parts
        .headers
        .get(axum::http::header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| cookie(h, COOKIE));
    let Some(id) = id else {
        return Err(ApiError::Unauthorized(
            "missing bearer token (Authorization: Bearer <token>) or dashboard session".into(),
        ));
    };
    let Some(s) = state.sessions.get(id, crate::store::now_ms()) else {
        return Err(ApiError::Unauthorized(
            "the dashboard session has ended: log in again".into(),
        ));
    };
    // the token it was opened with must still be in yujing.toml, with the same role
    if !state
        .config
        .borrow()
        .service
        .tokens
        .iter()
        .any(|t| t.sha256 == s.token && t.role == s.role)
    {
        state.sessions.close(id);
        return Err(ApiError::Unauthorized(
            "the token this session was opened with has been revoked or changed: log in again"
                .into(),
        ));
    }
    let safe = matches!(
        parts.method,
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    if !safe {
        let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if sent != Some(s.csrf.as_str()) {
            return Err(ApiError::Forbidden(
                "missing or wrong CSRF token (X-CSRF-Token) for a dashboard session".into(),
            ));
        }
    }
    Ok(Caller {
        name: s.name,
        role: s.role,
    })
}

/// The client's address: the connection's peer, or, when the peer is a trusted reverse proxy
/// (`[http] trusted_proxies`), the last address its `X-Forwarded-For` names.
pub struct ClientAddr(pub std::net::IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        use std::net::{IpAddr, Ipv4Addr, SocketAddr};
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        let trusted = state
            .config
            .borrow()
            .service
            .http
            .trusted_proxies
            .contains(&peer);
        if trusted {
            let forwarded = parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|a| a.trim().parse::<IpAddr>().ok())
                .next_back();
            if let Some(a) = forwarded {
                return Ok(ClientAddr(a));
            }
        }
        Ok(ClientAddr(peer))
    }
}
