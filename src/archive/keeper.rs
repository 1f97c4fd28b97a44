//! The archive's work in the live service: seal the staging files the pipeline hands over,
//! export the store's rows and apply the retention every `flush_every`.

use super::{day_of, expire, export, seal};
use crate::config::service::ArchiveSettings;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Store;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Run until the pipeline drops the sender of `sealed` (it hands over its last staging file
/// first); a last export follows, so a stopped service leaves a complete archive.
pub async fn keep(
    store: Store,
    settings: ArchiveSettings,
    config: watch::Receiver<Arc<Config>>,
    mut sealed: mpsc::Receiver<PathBuf>,
    metrics: Arc<Metrics>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(settings.flush_every as u64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            f = sealed.recv() => match f {
                Some(path) => seal_file(&settings, &config, path, &metrics).await,
                None => break,
            },
            _ = tick.tick() => export_now(&store, &settings, &config, &metrics).await,
        }
    }
    export_now(&store, &settings, &config, &metrics).await;
}

async fn seal_file(
    settings: &ArchiveSettings,
    config: &watch::Receiver<Arc<Config>>,
    path: PathBuf,
    metrics: &Metrics,
) {
    let tz = config.borrow().settings.timezone;
    let dir = settings.dir.clone();
    let shown = path.display().to_string();
    match tokio::task::spawn_blocking(move || seal(&dir, &path, tz)).await {
        Ok(Ok(n)) => metrics.archived.inc_by(n as u64),
        Ok(Err(e)) => {
            // the staging file stays; the next start seals it
            metrics.archive_errors.with_label_values(&["seal"]).inc();
            tracing::error!(file = %shown, error = %e, "cannot archive readings as Parquet; the staging file is kept");
        }
        Err(e) => tracing::error!(error = %e, "archive task failed"),
    }
}

async fn export_now(
    store: &Store,
    settings: &ArchiveSettings,
    config: &watch::Receiver<Arc<Config>>,
    metrics: &Metrics,
) {
    let cfg = config.borrow().clone();
    let tz = cfg.settings.timezone;
    let now = crate::store::now_ms();
    match export::export(store, &settings.dir, tz, &cfg.registry, now).await {
        Ok(x) if x.days > 0 => tracing::debug!(
            days = x.days,
            rows = x.rows,
            "store exported to the archive"
        ),
        Ok(_) => {}
        Err(e) => {
            metrics.archive_errors.with_label_values(&["export"]).inc();
            tracing::error!(error = %e, "cannot export the store to the archive (tried again at the next flush)");
        }
    }
    let dir = settings.dir.clone();
    let days = settings.retention_days;
    let today = day_of(now, tz);
    match tokio::task::spawn_blocking(move || expire(&dir, days, today)).await {
        Ok(Ok(n)) if n > 0 => tracing::info!(
            folders = n,
            retention_days = days,
            "archive days past the retention deleted"
        ),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            metrics.archive_errors.with_label_values(&["expire"]).inc();
            tracing::error!(error = %e, "cannot apply the archive retention");
        }
        Err(e) => tracing::error!(error = %e, "archive task failed"),
    }
}
