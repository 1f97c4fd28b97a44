//! HJ 212 in: the TCP listener environmental monitors connect to (`[hj212] listen`), with its
//! connection caps and lockout, its counters in `/metrics`.

use super::{forward, Context, Input, Running, Source, Starting};
use crate::config::service::Hj212Settings;
use anyhow::Context as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use yujing_connectors::hj212::{self, ListenConfig, ListenStats};

pub struct Hj212Source {
    settings: Hj212Settings,
}

impl Hj212Source {
    pub fn new(settings: Hj212Settings) -> Hj212Source {
        Hj212Source { settings }
    }
}

impl Source for Hj212Source {
    fn name(&self) -> &'static str {
        "hj212"
    }

    fn start<'a>(self: Box<Self>, cx: &'a Context, out: mpsc::Sender<Input>) -> Starting<'a> {
        Box::pin(async move {
            let h = &self.settings;
            let listener = tokio::net::TcpListener::bind(&h.listen)
                .await
                .with_context(|| {
                    format!("HJ 212: cannot listen on {} ([hj212] listen)", h.listen)
                })?;
            let local = listener.local_addr()?;
            // the line tests and scripts wait for
            println!("yujing: HJ 212 listening on {local}");
            tracing::info!(%local, "HJ 212 listener up");
            let (tx, rx) = mpsc::channel(64);
            let stats = Arc::new(ListenStats::default());
            let cfg = ListenConfig {
                max_connections: h.max_connections,
                max_per_address: h.max_connections_per_address,
                first_packet: Duration::from_millis(h.first_packet_timeout as u64),
                idle_timeout: Duration::from_millis(h.idle_timeout as u64),
            };
            let serving = tokio::spawn(hj212::serve(
                listener,
                cfg,
                tx,
                stats.clone(),
                cx.stop.clone(),
            ));
            tokio::spawn(export(stats, cx.metrics.clone(), cx.stop.clone()));
            Ok(Running {
                tasks: vec![serving, forward(rx, out, Input::Hj212)],
                ..Running::default()
            })
        })
    }
}

/// The listener's connections and refusals into `/metrics`, every second until `stop`.
async fn export(
    stats: Arc<ListenStats>,
    m: Arc<crate::metrics::Metrics>,
    stop: tokio_util::sync::CancellationToken,
) {
    let refused = |reason| m.connections_refused.with_label_values(&["hj212", reason]);
    loop {
        m.hj212_connections.set(stats.open.load(Relaxed) as i64);
        for (counter, reason) in [
            (&stats.refused_full, "cap"),
            (&stats.refused_per_address, "per_address"),
            (&stats.first_packet_timeouts, "first_packet"),
            (&stats.refused_locked_out, "locked_out"),
        ] {
            let c = refused(reason);
            let n = counter.load(Relaxed);
            if n > c.get() {
                c.inc_by(n - c.get());
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.cancelled() => break,
        }
    }
}
