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
    /// The SHA-256 of the token it called with (or its session was opened with).
    pub token: String,
}

impl Caller {
    /// Whether the token it called with is still in yujing.toml with the same role (a long
    /// request, a live event stream, checks again).
    pub fn still_valid(&self, config: &crate::config::Config) -> bool {
        config
            .service
            .tokens
            .iter()
            .any(|t| t.sha256 == self.token && t.role == self.role)
    }

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
            token: hash,
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
    let (caller, csrf) = session_caller(state, id)?;
    let safe = matches!(
        parts.method,
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    if !safe {
        let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if sent != Some(csrf.as_str()) {
            return Err(ApiError::Forbidden(
                "missing or wrong CSRF token (X-CSRF-Token) for a dashboard session".into(),
            ));
        }
    }
    Ok(caller)
}

/// The caller of a live dashboard session and its CSRF token; the session ends (401) when the
/// token it was opened with is no longer in yujing.toml with the same role.
pub fn session_caller(state: &AppState, id: &str) -> Result<(Caller, String), ApiError> {
    let Some(s) = state.sessions.get(id, crate::store::now_ms()) else {
        return Err(ApiError::Unauthorized(
            "the dashboard session has ended: log in again".into(),
        ));
    };
    let caller = Caller {
        name: s.name,
        role: s.role,
        token: s.token,
    };
    if !caller.still_valid(&state.config.borrow()) {
        state.sessions.close(id);
        return Err(ApiError::Unauthorized(
            "the token this session was opened with has been revoked or changed: log in again"
                .into(),
        ));
    }
    Ok((caller, s.csrf))
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
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| {
                c.0.ip().to_canonical()
            });
        let trusted = state
            .config
            .borrow()
            .service
            .http
            .trusted_proxies
            .iter()
            .any(|p| p.to_canonical() == peer);
        if trusted {
            // the entry the proxy itself appended (the last), or the proxy when it is not an
            // address: never one further left, which the client wrote
            let last = parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .next_back()
                .and_then(|a| a.trim().parse::<IpAddr>().ok());
            if let Some(a) = last {
                return Ok(ClientAddr(a.to_canonical()));
            }
        }
        Ok(ClientAddr(peer))
    }
}
