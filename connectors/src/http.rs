//! HTTP out: one POST of a prepared body (webhooks, WeCom and DingTalk robots). What the body
//! says and how it is signed is decided upstream (`dispatch`); this moves the bytes and reports
//! whose fault a failure was.

use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum HttpError {
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("{0}")]
    Send(reqwest::Error),
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

/// A successful response: status and (a bounded prefix of) the body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl HttpOut {
    pub fn new(timeout: Duration) -> Result<HttpOut, HttpError> {
        let client = reqwest::Client::builder()
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
        let resp = req.send().await.map_err(HttpError::Send)?;
        let status = resp.status().as_u16();
        let mut text = resp.text().await.unwrap_or_default();
        if text.len() > 2048 {
            let mut cut = 2048;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        if (200..300).contains(&status) {
            Ok(Response { status, body: text })
        } else {
            Err(HttpError::Status { status, body: text })
        }
    }
}
