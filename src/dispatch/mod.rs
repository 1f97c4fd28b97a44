//! Dispatch: deliveries from the outbox to departments' channels, and deadlines.
//!
//! The outbox worker claims due deliveries, sends each over its channel ([`channel`] builds the
//! bytes, the connectors move them), and records the outcome in the warning's timeline: delivered,
//! or failed and retried with exponential backoff and jitter, or dead after `max_attempts` (visible
//! in the API, re-queued by an admin). The deadline watcher turns missed deadlines into a reminder
//! to the department and then a copy to the supervising unit, each a timeline entry with its own
//! deliveries.

pub mod channel;

use crate::config::routes::ChannelKind;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{now_ms, OutboxItem, Outcome, Overdue, Store};
use crate::time::{format_ts, Ts};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use yujing_connectors::http::HttpOut;
use yujing_connectors::mqtt::Publisher;

/// Everything a delivery needs; cheap to clone into each task.
#[derive(Clone)]
pub struct Dispatcher {
    pub store: Store,
    pub config: watch::Receiver<Arc<Config>>,
    pub http: HttpOut,
    pub mqtt: Option<Publisher>,
    /// The producer of kafka channels (`[kafka]` in yujing.toml).
    pub kafka: Option<yujing_connectors::kafka::KafkaProducer>,
    pub metrics: Arc<Metrics>,
    /// Poked when new deliveries are stored.
    pub wake: Arc<Notify>,
}

/// Why one attempt failed, and whether to try again.
struct Failure {
    error: String,
    retry: bool,
}

impl Dispatcher {
    /// The delay before attempt `n + 1` (n >= 1 failed attempts): base * 2^(n-1), capped, with
    /// "equal jitter" (half fixed, half random) so retries from many warnings spread out.
    fn backoff(base: i64, max: i64, failed: i64) -> i64 {
        let exp = base
            .saturating_mul(1i64 << (failed - 1).clamp(0, 30))
            .min(max);
        exp / 2 + fastrand::i64(0..=exp / 2)
    }

    /// Run the outbox worker until `cancel`; in-flight deliveries are finished first.
    pub async fn run(self, cancel: CancellationToken) {
        let cfg = self.config.borrow().clone();
        let limit = cfg.service.dispatch.concurrency;
        let lease = cfg.service.dispatch.timeout * 2 + 5_000;
        let permits = Arc::new(Semaphore::new(limit));
        let mut tasks = JoinSet::new();
        // outcomes are written together: a burst of deliveries costs one commit, not one each
        let (otx, orx) = mpsc::unbounded_channel::<Outcome>();
        let recorder = tokio::spawn(record_outcomes(self.store.clone(), orx));
        let mut last_depth: Option<std::time::Instant> = None;
        loop {
            if cancel.is_cancelled() {
                break;
            }
            let free = permits.available_permits() as i64;
            let mut claimed = 0;
            if free > 0 {
                match self.store.claim(now_ms(), lease, free).await {
                    Ok(items) => {
                        claimed = items.len();
                        for it in items {
                            let Ok(permit) = permits.clone().acquire_owned().await else {
                                break;
                            };
                            let d = self.clone();
                            let otx = otx.clone();
                            tasks.spawn(async move {
                                let o = d.deliver(it).await;
                                // the recorder outlives every task (it ends when they are gone)
                                let _ = otx.send(o);
                                drop(permit);
                            });
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "cannot read the delivery outbox"),
                }
            }
            if last_depth.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                self.update_depth().await;
                last_depth = Some(std::time::Instant::now());
            }
            if claimed > 0 && (claimed as i64) == free {
                // there may be more: go again as soon as a slot frees
                tokio::select! {
                    _ = tasks.join_next(), if !tasks.is_empty() => {}
                    _ = cancel.cancelled() => {}
                }
                continue;
            }
            let wait = match self.store.next_due().await {
                Ok(Some(t)) => (t - now_ms()).clamp(10, 1_000),
                _ => 1_000,
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                _ = tasks.join_next(), if !tasks.is_empty() => {}
                _ = cancel.cancelled() => {}
            }
        }
        // drain: deliveries under way finish (each is bounded by the HTTP timeout), and their
        // outcomes are written
        while tasks.join_next().await.is_some() {}
        drop(otx);
        let _ = recorder.await;
    }

    async fn update_depth(&self) {
        if let Ok(counts) = self.store.outbox_counts().await {
            for state in ["pending", "dead"] {
                let n = counts
                    .iter()
                    .find(|(s, _)| s == state)
                    .map_or(0, |(_, n)| *n);
                self.metrics.outbox.with_label_values(&[state]).set(n);
            }
        }
    }

    /// One attempt; its outcome is for the recorder to store.
    async fn deliver(&self, item: OutboxItem) -> Outcome {
        let cfg = self.config.borrow().clone();
        let chan = cfg.routes.channel(&item.channel).cloned();
        let kind = chan.as_ref().map_or("unknown", |c| c.kind.as_str());
        let outcome = match &chan {
            None => Err(Failure {
                error: format!("channel `{}` is no longer in routes.yaml", item.channel),
                retry: false,
            }),
            Some(c) => self.send(&cfg, c, &item).await.map_err(|f| Failure {
                // stored, shown to departments and logged: never a key or a signature
                error: channel::redact(&f.error, &channel_secrets(&cfg, c)),
                retry: f.retry,
            }),
        };
        let now = now_ms();
        let attempt = item.attempts + 1;
        let mut detail = serde_json::json!({
            "channel": item.channel,
            "type": kind,
            "department": item.department,
            "purpose": item.purpose,
            "attempt": attempt,
            "key": item.key,
        });
        match outcome {
            Ok(status) => {
                detail["status"] = status.into();
                self.metrics
                    .deliveries
                    .with_label_values(&[kind, "delivered"])
                    .inc();
                self.metrics
                    .delivery_latency
                    .with_label_values(&[kind])
                    .observe((now - item.created_at).max(0) as f64 / 1000.0);
                Outcome {
                    item: item.id,
                    warning_id: item.warning_id,
                    at: now,
                    failed: None,
                    detail,
                }
            }
            Err(f) => {
                let d = &cfg.service.dispatch;
                let give_up = !f.retry || attempt >= d.max_attempts as i64;
                let retry_at =
                    (!give_up).then(|| now + Self::backoff(d.retry_base, d.retry_max, attempt));
                detail["error"] = f.error.clone().into();
                if let Some(t) = retry_at {
                    detail["retry_at"] = format_ts(t, cfg.settings.timezone).into();
                }
                let outcome = if give_up { "dead" } else { "failed" };
                self.metrics
                    .deliveries
                    .with_label_values(&[kind, outcome])
                    .inc();
                if give_up {
                    tracing::error!(warning = %item.warning_id, channel = %item.channel, attempts = attempt, error = %f.error, "delivery gave up; re-queue it from the API once the endpoint works");
                } else {
                    tracing::warn!(warning = %item.warning_id, channel = %item.channel, attempt, error = %f.error, "delivery failed; will retry");
                }
                Outcome {
                    item: item.id,
                    warning_id: item.warning_id,
                    at: now,
                    failed: Some((f.error, retry_at)),
                    detail,
                }
            }
        }
    }

    async fn send(
        &self,
        cfg: &Config,
        c: &crate::config::routes::Channel,
        item: &OutboxItem,
    ) -> Result<String, Failure> {
        let secret = |name: &Option<String>| -> Result<Option<String>, Failure> {
            match name {
                None => Ok(None),
                Some(n) => cfg
                    .service
                    .secrets
                    .get(n)
                    .cloned()
                    .map(Some)
                    .ok_or(Failure {
                        error: format!("secret `{n}` is not configured"),
                        retry: false,
                    }),
            }
        };
        let http_fail = |e: yujing_connectors::http::HttpError| Failure {
            retry: e.retryable(),
            error: e.to_string(),
        };
        let url = c.url.clone().unwrap_or_default();
        match c.kind {
            ChannelKind::Webhook => {
                let body = item.doc.as_bytes().to_vec();
                let mut headers = vec![
                    ("x-yujing-delivery", item.key.clone()),
                    ("idempotency-key", item.key.clone()),
                    ("x-yujing-event", item.purpose.clone()),
                ];
                if let Some(sec) = secret(&c.secret)? {
                    // the signature covers when it was sent: a captured webhook cannot be
                    // replayed past the receiver's tolerance
                    let ts = now_ms() / 1000;
                    headers.push(("x-yujing-timestamp", ts.to_string()));
                    headers.push((
                        "x-yujing-signature",
                        channel::webhook_signature(&sec, ts, &body),
                    ));
                }
                let r = self
                    .http
                    .post_json(&url, &headers, body)
                    .await
                    .map_err(http_fail)?;
                Ok(r.status.to_string())
            }
            ChannelKind::Wecom | ChannelKind::Dingtalk => {
                let doc: serde_json::Value =
                    serde_json::from_str(&item.doc).map_err(|e| Failure {
                        error: format!("stored document is not JSON: {e}"),
                        retry: false,
                    })?;
                let (url, body) = if c.kind == ChannelKind::Wecom {
                    (url, channel::wecom_body(&doc))
                } else {
                    let url = match secret(&c.secret)? {
                        Some(sec) => {
                            channel::dingtalk_url(&url, &sec, now_ms()).map_err(|error| {
                                Failure {
                                    error,
                                    retry: false,
                                }
                            })?
                        }
                        None => url,
                    };
                    (url, channel::dingtalk_body(&doc))
                };
                let r = self
                    .http
                    .post_json(&url, &[], body)
                    .await
                    .map_err(http_fail)?;
                match channel::robot_error(&r.body) {
                    None => Ok(r.status.to_string()),
                    Some(error) => Err(Failure { error, retry: true }),
                }
            }
            ChannelKind::Mqtt => {
                let Some(p) = &self.mqtt else {
                    return Err(Failure {
                        error: "no MQTT connection is configured ([mqtt] in yujing.toml)".into(),
                        retry: false,
                    });
                };
                let within = Duration::from_millis(cfg.service.dispatch.timeout.max(1) as u64);
                p.publish_confirmed(
                    &channel::mqtt_topic(&item.department),
                    item.doc.as_bytes().to_vec(),
                    within,
                )
                .await
                .map_err(|e| Failure {
                    error: e.to_string(),
                    retry: true,
                })?;
                Ok("PUBACK".into())
            }
            ChannelKind::Kafka => {
                let Some(p) = &self.kafka else {
                    return Err(Failure {
                        error: "no Kafka connection is configured ([kafka] in yujing.toml)".into(),
                        retry: false,
                    });
                };
                let topic = c.topic.as_deref().unwrap_or("yujing.warnings");
                // keyed by site id: a site's warnings stay in order on one partition
                let site = serde_json::from_str::<serde_json::Value>(&item.doc)
                    .ok()
                    .and_then(|d| d["site"]["id"].as_str().map(str::to_string))
                    .unwrap_or_default();
                let (partition, offset) = p
                    .send(
                        topic,
                        &site,
                        item.doc.as_bytes(),
                        &[
                            ("yujing-delivery", item.key.as_str()),
                            ("yujing-department", item.department.as_str()),
                        ],
                    )
                    .await
                    .map_err(|e| Failure {
                        error: e.to_string(),
                        retry: true,
                    })?;
                Ok(format!("{topic}/{partition}@{offset}"))
            }
        }
    }
}

/// What a channel's errors must not show: its secret and the values in its URL's query string
/// (robots' `key` and `access_token`).
pub fn channel_secrets(cfg: &Config, c: &crate::config::routes::Channel) -> Vec<String> {
    let mut out: Vec<String> = c
        .secret
        .as_ref()
        .and_then(|n| cfg.service.secrets.get(n))
        .cloned()
        .into_iter()
        .collect();
    if let Some(u) = c.url.as_deref().and_then(|u| url::Url::parse(u).ok()) {
        out.extend(u.query_pairs().map(|(_, v)| v.into_owned()));
        if let Some(p) = u.password() {
            out.push(p.to_string());
        }
    }
    out
}

/// Write delivery outcomes as they come, every one waiting at that moment in one transaction;
/// retried until the store takes them.
async fn record_outcomes(store: Store, mut rx: mpsc::UnboundedReceiver<Outcome>) {
    let mut buf = Vec::new();
    while rx.recv_many(&mut buf, 512).await > 0 {
        let mut wait = Duration::from_millis(100);
        while let Err(e) = store.record_outcomes(&buf).await {
            tracing::error!(error = %e, "cannot record delivery outcomes; retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(10));
        }
        buf.clear();
    }
}

/// Watch deadlines every `every` until `cancel`.
pub async fn watch_deadlines(
    store: Store,
    config: watch::Receiver<Arc<Config>>,
    wake: Arc<Notify>,
    every: Duration,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = cancel.cancelled() => return,
        }
        let cfg = config.borrow().clone();
        let now = now_ms();
        let due = match store.overdue(now).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "cannot check deadlines");
                continue;
            }
        };
        for o in due {
            if let Err(e) = notice(&store, &cfg, &o, now).await {
                tracing::error!(error = %e, warning = %o.id, "cannot record an overdue notice");
            }
        }
        wake.notify_one();
    }
}

/// One overdue notice: who gets it, with what document.
async fn notice(
    store: &Store,
    cfg: &Config,
    o: &Overdue,
    now: Ts,
) -> Result<(), crate::store::StoreError> {
    let (kind, to): (&str, Vec<String>) = if o.step == 1 {
        ("reminder", o.departments.clone())
    } else {
        (
            "supervisor_notified",
            o.supervisor.iter().cloned().collect(),
        )
    };
    let mut deliveries = Vec::new();
    for d in &to {
        for c in cfg.routes.channels_of(d) {
            deliveries.push((d.clone(), c.clone()));
        }
    }
    let mut doc: serde_json::Value = serde_json::from_str(&o.doc)?;
    doc["notice"] = serde_json::json!({
        "kind": if o.step == 1 { "reminder" } else { "supervisor" },
        "overdue": o.what,
        "due": format_ts(o.due, cfg.settings.timezone),
        "departments": o.departments,
    });
    // another instance sharing the store may have sent this notice already
    if store
        .notice(o, kind, &deliveries, &doc.to_string(), now)
        .await?
    {
        tracing::warn!(warning = %o.id, overdue = o.what, step = o.step, to = ?to, "deadline missed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        for failed in 1..20 {
            let d = Dispatcher::backoff(1_000, 60_000, failed);
            let exp = (1_000i64 << (failed - 1).min(30)).min(60_000);
            assert!(d >= exp / 2 && d <= exp, "{failed}: {d}");
        }
    }
}
