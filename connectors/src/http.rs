//! HTTP out: one POST of a prepared body (webhooks, WeCom and DingTalk robots). What the body
//! says and how it is signed is decided upstream (`dispatch`); this moves the bytes and reports
//! whose fault a failure was.
//!
//! Robot URLs carry their keys in the query string (`key=`, `access_token=`, `sign=`), so no
//! error from here names a URL: only its host. Redirects are not followed (a receiver that
//! moved is a configuration error, and a redirect could carry the signed body elsewhere), and
//! at most [`MAX_BODY`] bytes of a response are read.

use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum HttpError {
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
    /// Sending failed: what went wrong and the host, never the URL.
    #[error("{0}")]
    Send(String),
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
}

impl HttpError {
    /// Whether trying again later may succeed (a 4xx other than 408/429 will not).
    pub fn retryable(&self) -> bool {
        match self {
            HttpError::Client(_) => false,
            HttpError::Send(_) => true,
            HttpError::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
        }
    }
}

/// A shared HTTP client with a per-request timeout.
#[derive(Clone)]
pub struct HttpOut {
    client: reqwest::Client,
}

/// The most of a response body that is read (the rest is left unread).
pub const MAX_BODY: usize = 2048;

/// What went wrong sending to `url`, naming its host only.
fn describe(e: reqwest::Error, url: &str) -> String {
    let host = url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "the receiver".into());
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_builder() {
        "bad request"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut causes = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(&e);
    while let Some(c) = cur {
        causes.push(c.to_string());
        cur = c.source();
    }
    causes.dedup();
    if causes.is_empty() {
        format!("{what} ({host})")
    } else {
        format!("{what} ({host}): {}", causes.join(": "))
    }
}

/// A successful response: status and (a bounded prefix of) the body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl HttpOut {
    pub fn new(timeout: Duration) -> Result<HttpOut, HttpError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("yujing/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(HttpError::Client)?;
        Ok(HttpOut { client })
    }

    /// POST `body` as JSON with extra headers; any 2xx is success.
    pub async fn post_json(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Response, HttpError> {
        let mut req = self
            .client
            .post(url)
            .header("content-type", "application/json; charset=utf-8")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| HttpError::Send(describe(e, url)))?;
        let status = resp.status().as_u16();
        // a bounded prefix of the body: a receiver cannot make us read (or hold) more
        let mut body = Vec::new();
        while body.len() < MAX_BODY {
            match resp.chunk().await {
                Ok(Some(c)) => body.extend_from_slice(&c[..c.len().min(MAX_BODY - body.len())]),
                _ => break,
            }
        }
        let text = String::from_utf8_lossy(&body).into_owned();
        if (200..300).contains(&status) {
            Ok(Response { status, body: text })
        } else {
            Err(HttpError::Status { status, body: text })
        }
    }
}
