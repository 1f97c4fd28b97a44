//! RTSP cameras: one session per camera of sites.yaml with an `rtsp_url`, following reloads;
//! stream health and ONVIF events become readings.

use super::{forward, Context, Input, Running, Source, Starting};
use crate::config::Config;
use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub struct CameraSource;

impl Source for CameraSource {
    fn name(&self) -> &'static str {
        "camera"
    }

    fn start<'a>(self: Box<Self>, cx: &'a Context, out: mpsc::Sender<Input>) -> Starting<'a> {
        Box::pin(async move {
            let (tx, rx) = mpsc::channel(64);
            let managing = tokio::spawn(manage_cameras(
                cx.config_rx.clone(),
                tx,
                cx.metrics.clone(),
                cx.stop.clone(),
            ));
            Ok(Running {
                tasks: vec![managing, forward(rx, out, Input::Camera)],
                ..Running::default()
            })
        })
    }
}

/// The camera sessions the configuration asks for (cameras of sites.yaml with an `rtsp_url`).
fn camera_configs(config: &Config) -> Vec<yujing_connectors::rtsp::CameraConfig> {
    let svc = &config.service;
    let cams = &svc.cameras;
    let mut out = Vec::new();
    for d in &config.registry.devices {
        let Some(raw) = &d.rtsp_url else { continue };
        // both were checked when the configuration was loaded
        let Ok(url) = url::Url::parse(raw) else {
            continue;
        };
        let (username, password) = match d.rtsp_secret.as_ref().and_then(|n| svc.secrets.get(n)) {
            None => (None, None),
            Some(v) => match v.split_once(':') {
                Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
                None => (Some(v.clone()), None),
            },
        };
        out.push(yujing_connectors::rtsp::CameraConfig {
            id: d.id.clone(),
            url,
            username,
            password,
            udp: cams.udp,
            health_every: Duration::from_millis(cams.health_every as u64),
            stall_timeout: Duration::from_millis(cams.stall_timeout as u64),
        });
    }
    out
}

/// Keep one session per configured camera: started at once, and after a reload started for new
/// cameras, stopped for removed ones, restarted for changed ones. Returns when `stop` is
/// cancelled and every session has ended.
async fn manage_cameras(
    mut config: watch::Receiver<Arc<Config>>,
    tx: mpsc::Sender<yujing_connectors::rtsp::CameraItem>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    use std::collections::HashMap;
    use yujing_connectors::rtsp;
    type Session = (
        rtsp::CameraConfig,
        CancellationToken,
        tokio::task::JoinHandle<()>,
    );
    let mut running: HashMap<String, Session> = HashMap::new();
    loop {
        let wanted = camera_configs(&config.borrow_and_update());
        let keep: std::collections::HashSet<&str> = wanted.iter().map(|c| c.id.as_str()).collect();
        let gone: Vec<String> = running
            .keys()
            .filter(|id| !keep.contains(id.as_str()))
            .cloned()
            .collect();
        for id in gone {
            if let Some((_, cancel, handle)) = running.remove(&id) {
                cancel.cancel();
                let _ = handle.await;
                tracing::info!(camera = %id, "camera removed from sites.yaml: session stopped");
            }
        }
        for c in wanted {
            if running.get(&c.id).is_some_and(|(old, ..)| *old == c) {
                continue;
            }
            if let Some((_, cancel, handle)) = running.remove(&c.id) {
                cancel.cancel();
                let _ = handle.await;
            }
            let cancel = stop.child_token();
            let handle = tokio::spawn(rtsp::run(c.clone(), tx.clone(), cancel.clone()));
            running.insert(c.id.clone(), (c, cancel, handle));
        }
        metrics.cameras.set(running.len() as i64);
        tokio::select! {
            changed = config.changed() => if changed.is_err() { break },
            _ = stop.cancelled() => break,
        }
    }
    for (_, (_, cancel, handle)) in running {
        cancel.cancel();
        let _ = handle.await;
    }
}
