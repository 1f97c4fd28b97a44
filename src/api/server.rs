//! The HTTP server under the API: HTTP/1.1 (hyper) with a deadline for each request's headers,
//! a cap on open connections in all and per address, a deadline for each request's handling
//! (slow bodies included), and the peer's address in each request's extensions
//! ([`axum::extract::ConnectInfo`]). `axum::serve` has none of these; without them idle or
//! half-sent requests hold descriptors until the process runs out.

use crate::metrics::Metrics;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use yujing_connectors::admit::Admit;

/// The bounds of the HTTP server (`[http]` in yujing.toml).
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    pub max_connections: usize,
    /// 0: no cap per address (behind a reverse proxy).
    pub max_connections_per_address: usize,
    /// A request's headers (and an idle keep-alive connection's next request) must arrive
    /// within this.
    pub header_timeout: Duration,
    /// A request must be read and answered within this (server-sent event streams only need
    /// to start).
    pub request_timeout: Duration,
}

/// Serve `app` on `listener` until `stop`; then open connections get `grace` to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    grace: Duration,
) {
    let admit = Admit::new(limits.max_connections, limits.max_connections_per_address);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let app = app.layer(axum::middleware::from_fn_with_state(
        limits.request_timeout,
        deadline,
    ));
    while let Some((sock, peer)) = yujing_connectors::admit::accept(&listener, "http", &stop).await
    {
        let slot = match admit.take(peer.ip()) {
            Ok(s) => s,
            Err(why) => {
                metrics
                    .connections_refused
                    .with_label_values(&["http", why.as_str()])
                    .inc();
                tracing::debug!(%peer, reason = why.as_str(), "HTTP connection refused");
                tokio::spawn(refuse(sock));
                continue;
            }
        };
        let app = app.clone();
        let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let mut req = req.map(axum::body::Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(req)
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_headers(64)
            .max_buf_size(64 * 1024)
            .serve_connection(TokioIo::new(sock), svc);
        let conn = graceful.watch(conn);
        let m = metrics.clone();
        m.http_connections.inc();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended");
            }
            drop(slot);
            m.http_connections.dec();
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("HTTP: connections still open after the grace period are dropped");
    }
}

/// Answer a connection over the cap with 503 and close it, without reading what it sends.
async fn refuse(mut sock: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        sock.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 45\r\nretry-after: 5\r\nconnection: close\r\n\r\n{\"error\":\"too many connections: retry later\"}",
        ),
    )
    .await;
}

/// A request not answered within the deadline gets 408 (reading its body) or 503.
async fn deadline(
    axum::extract::State(limit): axum::extract::State<Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (
            axum::http::StatusCode::REQUEST_TIMEOUT,
            axum::Json(serde_json::json!({
                "error": format!("the request was not read and answered within {} s", limit.as_secs())
            })),
        )
            .into_response(),
    }
}
