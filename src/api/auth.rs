//! Bearer tokens with roles. yujing.toml stores only each token's SHA-256; a request's token is
//! hashed and looked up. Every refusal is counted and logged with its reason.

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
            return Err(ApiError::Unauthorized(
                "missing bearer token (Authorization: Bearer <token>)".into(),
            ));
        };
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
}
