//! The HTTP server under the API: HTTP/1.1 (hyper) with a deadline for each request's headers,
//! a cap on open connections in all and per address, a deadline for each request's handling
//! (slow bodies included), a deadline for a client that stops reading an answer, and the peer's
//! address in each request's extensions ([`axum::extract::ConnectInfo`]). `axum::serve` has none
//! of these; without them idle or half-sent requests, or answers nobody reads, hold descriptors
//! and memory until the process runs out.

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
    /// to start); a client that takes nothing of an answer for this long is disconnected.
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
    let mut warned = yujing_connectors::admit::Warned::default();
    let mut conns = tokio::task::JoinSet::new();
    while let Some((sock, peer)) = yujing_connectors::admit::accept(&listener, "http", &stop).await
    {
        let slot = match admit.take(peer.ip()) {
            Ok(s) => s,
            Err(why) => {
                metrics
                    .connections_refused
                    .with_label_values(&["http", why.as_str()])
                    .inc();
                warned.warn("http", why.as_str(), &peer);
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
            .serve_connection(TokioIo::new(Stall::new(sock, limits.request_timeout)), svc);
        let conn = graceful.watch(conn);
        let m = metrics.clone();
        m.http_connections.inc();
        // finished connections are reaped as new ones come
        while conns.try_join_next().is_some() {}
        conns.spawn(async move {
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
    // none outlives the server (the store closes next)
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

/// A connection whose writes may not stall longer than `limit`: a client that reads nothing
/// of an answer is disconnected rather than holding the answer and its place for ever.
struct Stall<T> {
    inner: T,
    limit: Duration,
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<T> Stall<T> {
    fn new(inner: T, limit: Duration) -> Self {
        Stall {
            inner,
            limit,
            stalled: None,
        }
    }

    /// A write's outcome: done, the clock stops; pending, it starts (or is checked), and once it
    /// has run out the write fails.
    fn watch<R>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        r: std::task::Poll<std::io::Result<R>>,
    ) -> std::task::Poll<std::io::Result<R>> {
        use std::future::Future;
        if r.is_ready() {
            self.stalled = None;
            return r;
        }
        let limit = self.limit;
        let t = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match t.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Stall<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Stall<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, r)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, r)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Answer a connection over the cap with 503 and close it. What it sent is read and thrown
/// away for a moment (closing with unread bytes would reset the connection, and the client
/// might lose the answer), at most 64 KiB in one second. At most [`REFUSING`] are answered at
/// once; past that a refused connection is closed outright (a flood must not hold descriptors
/// through its refusals).
async fn refuse(mut sock: tokio::net::TcpStream) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    static BUSY: AtomicUsize = AtomicUsize::new(0);
    if BUSY.fetch_add(1, Ordering::Relaxed) >= REFUSING {
        BUSY.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    struct Done;
    impl Drop for Done {
        fn drop(&mut self) {
            BUSY.fetch_sub(1, Ordering::Relaxed);
        }
    }
    let _done = Done;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        sock.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 45\r\nretry-after: 5\r\nconnection: close\r\n\r\n{\"error\":\"too many connections: retry later\"}",
        )
        .await?;
        sock.shutdown().await?;
        let mut buf = [0u8; 4096];
        let mut drained = 0;
        while drained < 64 * 1024 {
            match sock.read(&mut buf).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// Refused connections answered at once (the rest are closed without an answer).
const REFUSING: usize = 64;

/// A request not read and answered within the deadline gets 408.
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
