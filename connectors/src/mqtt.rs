//! MQTT in and out (rumqttc): a subscribing source with QoS 1, a persistent session and manual
//! acknowledgements (a message is acknowledged only after the pipeline has taken it), and a
//! publisher. Both reconnect with exponential backoff and report their connection state.

use crate::Backoff;
use bytes::Bytes;
use rumqttc::{
    AsyncClient, ClientError, ConnectionError, Event, EventLoop, MqttOptions, Packet, Publish, QoS,
    TlsConfiguration, Transport,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// How to reach a broker.
#[derive(Clone, Debug)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM file of the CA that signed the broker's certificate: connect over TLS.
    pub ca_file: Option<PathBuf>,
    /// Keep the session (subscriptions and unacknowledged QoS 1 messages) across reconnects.
    pub persistent: bool,
    pub keep_alive: Duration,
    /// Messages in flight before the broker waits for acknowledgements.
    pub inflight: u16,
    /// The largest packet taken from the broker; a larger one drops the connection.
    pub max_packet: usize,
}

impl MqttConfig {
    /// The packet limit for payloads judged up to `max_payload`: room enough that an oversize
    /// payload still arrives and is dead-lettered by the pipeline (dropping the connection would
    /// make the broker redeliver it forever), bounded so a broker cannot make us buffer 64 MiB.
    /// Brokers should refuse larger messages themselves (Mosquitto: `message_size_limit`).
    pub fn packet_limit(max_payload: usize) -> usize {
        max_payload.saturating_mul(16).max(1 << 20)
    }
}

#[derive(Debug, Error)]
pub enum MqttError {
    #[error("cannot read the CA file {path}: {source}")]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the MQTT client cannot take the request: {0}")]
    Client(#[from] ClientError),
    #[error("the broker did not confirm the publish: {0}")]
    Unconfirmed(String),
}

/// Connection state, as `/metrics` and `/readyz` report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    Connecting,
    Up,
    Down,
}

/// One message from a subscription. Acknowledge it with [`Acker::ack`] once it is processed.
#[derive(Debug)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    publish: Publish,
}

/// Acknowledges messages of one source (QoS 1 `PUBACK`), after the pipeline has taken them.
#[derive(Clone)]
pub struct Acker {
    client: AsyncClient,
}

impl Acker {
    pub async fn ack(&self, m: &Message) -> Result<(), MqttError> {
        Ok(self.client.ack(&m.publish).await?)
    }
}

fn options(cfg: &MqttConfig, manual_acks: bool) -> Result<MqttOptions, MqttError> {
    let mut o = MqttOptions::new(cfg.client_id.clone(), cfg.host.clone(), cfg.port);
    o.set_keep_alive(cfg.keep_alive)
        .set_clean_session(!cfg.persistent)
        .set_manual_acks(manual_acks)
        .set_inflight(cfg.inflight.max(1))
        // oversize payloads are judged (and dead-lettered) by the pipeline, not by dropping the
        // connection, which would make the broker redeliver them forever
        .set_max_packet_size(cfg.max_packet, cfg.max_packet);
    if let (Some(u), p) = (&cfg.username, &cfg.password) {
        o.set_credentials(u.clone(), p.clone().unwrap_or_default());
    }
    if let Some(path) = &cfg.ca_file {
        let ca = std::fs::read(path).map_err(|source| MqttError::CaFile {
            path: path.clone(),
            source,
        })?;
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
            ca,
            alpn: None,
            client_auth: None,
        }));
    }
    Ok(o)
}

/// Subscribe to `topics` and forward every message to `tx`. A broken connection is retried
/// with backoff, and with a persistent session the broker redelivers what was not acknowledged.
///
/// Stopping takes two steps: after `stop` no message is forwarded any more (`tx` is dropped, so
/// the consumer sees the end once it has drained); after `done` the acknowledgements the
/// consumer sent meanwhile are flushed and the client disconnects.
pub fn subscribe(
    cfg: &MqttConfig,
    topics: Vec<String>,
    tx: mpsc::Sender<Message>,
    state: watch::Sender<LinkState>,
    stop: CancellationToken,
    done: CancellationToken,
) -> Result<(Acker, tokio::task::JoinHandle<()>), MqttError> {
    let (client, eventloop) = AsyncClient::new(options(cfg, true)?, 1024);
    let acker = Acker {
        client: client.clone(),
    };
    let name = cfg.client_id.clone();
    let handle = tokio::spawn(async move {
        source_loop(&name, &client, eventloop, topics, tx, state, stop, done).await
    });
    Ok((acker, handle))
}

#[allow(clippy::too_many_arguments)]
async fn source_loop(
    name: &str,
    client: &AsyncClient,
    mut eventloop: EventLoop,
    topics: Vec<String>,
    tx: mpsc::Sender<Message>,
    state: watch::Sender<LinkState>,
    stop: CancellationToken,
    done: CancellationToken,
) {
    let mut backoff = Backoff(0);
    let mut tx = Some(tx);
    loop {
        let polled = tokio::select! {
            p = eventloop.poll() => p,
            _ = stop.cancelled(), if tx.is_some() => {
                // no more messages in; keep the connection for the acknowledgements
                tx = None;
                continue;
            }
            _ = done.cancelled() => break,
        };
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = Backoff(0);
                state.send_replace(LinkState::Up);
                tracing::info!(client = %name, session_present = ack.session_present, "MQTT connected");
                for t in &topics {
                    // the request queue is drained by this very loop: never wait on it here
                    if let Err(e) = client.try_subscribe(t.clone(), QoS::AtLeastOnce) {
                        tracing::warn!(client = %name, topic = %t, error = %e, "MQTT subscribe failed");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                // after `stop`, a message is left unacknowledged: the broker redelivers it
                if let Some(t) = &tx {
                    let m = Message {
                        topic: p.topic.clone(),
                        payload: p.payload.clone(),
                        publish: p,
                    };
                    if t.send(m).await.is_err() {
                        tx = None;
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                state.send_replace(LinkState::Down);
                let wait = backoff.next();
                log_connection_error(name, &e, wait);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = done.cancelled() => break,
                }
            }
        }
    }
    // flush what is queued (acknowledgements), then say goodbye
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(ev) = eventloop.poll().await {
            if matches!(ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                break;
            }
        }
    })
    .await;
    state.send_replace(LinkState::Down);
}

fn log_connection_error(name: &str, e: &ConnectionError, wait: Duration) {
    if let ConnectionError::MqttState(rumqttc::StateError::Deserialization(
        rumqttc::Error::PayloadSizeLimitExceeded(n),
    )) = e
    {
        // the broker redelivers an unacknowledged message at every reconnect: only the broker
        // can stop this one
        tracing::error!(client = %name, bytes = n, retry_in_ms = wait.as_millis() as u64, "the MQTT broker sent a message larger than yujing takes ([mqtt] max_payload x 16, at least 1 MiB); it will send it again at every reconnect. Limit packet sizes at the broker (Mosquitto: max_packet_size) to about [mqtt] max_payload (docs/security.md)");
        return;
    }
    tracing::warn!(client = %name, error = %e, retry_in_ms = wait.as_millis() as u64, "MQTT connection lost");
}

/// A publishing client (warnings to `yujing/warnings/{department}`, dead letters, the demo's
/// simulated devices). Publishes are QoS 1 and queued while the broker is unreachable;
/// [`Publisher::publish_confirmed`] waits for the broker's `PUBACK`.
#[derive(Clone)]
pub struct Publisher {
    client: AsyncClient,
    acks: Arc<tokio::sync::Mutex<Acks>>,
}

/// Matching `PUBACK`s to publishes: the event loop sends publishes in the order they were
/// requested, so each outgoing packet id goes to the oldest request still waiting for one.
#[derive(Default)]
struct Acks {
    /// Requests not yet sent, oldest first (`None`: nobody waits for this one).
    queued: std::collections::VecDeque<Option<oneshot::Sender<()>>>,
    /// Sent, waiting for their `PUBACK`, by packet id.
    sent: std::collections::HashMap<u16, oneshot::Sender<()>>,
}

impl Publisher {
    pub fn connect(
        cfg: &MqttConfig,
        state: watch::Sender<LinkState>,
    ) -> Result<(Publisher, tokio::task::JoinHandle<()>), MqttError> {
        let (client, mut eventloop) = AsyncClient::new(options(cfg, false)?, 4096);
        let name = cfg.client_id.clone();
        let acks = Arc::new(tokio::sync::Mutex::new(Acks::default()));
        let a = acks.clone();
        let handle = tokio::spawn(async move {
            let mut backoff = Backoff(0);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        backoff = Backoff(0);
                        state.send_replace(LinkState::Up);
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => {
                        let mut acks = a.lock().await;
                        // a packet id still waiting is a retransmission after a reconnect
                        if !acks.sent.contains_key(&pkid) {
                            if let Some(Some(tx)) = acks.queued.pop_front() {
                                acks.sent.insert(pkid, tx);
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        if let Some(tx) = a.lock().await.sent.remove(&ack.pkid) {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(e) => {
                        state.send_replace(LinkState::Down);
                        let wait = backoff.next();
                        log_connection_error(&name, &e, wait);
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        });
        Ok((Publisher { client, acks }, handle))
    }

    async fn request(
        &self,
        topic: &str,
        payload: Vec<u8>,
        waiter: Option<oneshot::Sender<()>>,
    ) -> Result<(), MqttError> {
        let mut waiter = waiter;
        let mut tries = 0u32;
        loop {
            {
                // hold the lock from queueing the waiter to handing over the request: order is
                // what matches packet ids to waiters. Never wait while holding it: the event
                // loop needs it to make room.
                let mut acks = self.acks.lock().await;
                acks.queued.push_back(waiter.take());
                match self
                    .client
                    .try_publish(topic, QoS::AtLeastOnce, false, payload.clone())
                {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        waiter = acks.queued.pop_back().flatten();
                        // the request queue is full (or the client is gone): wait a little
                        tries += 1;
                        if tries > 2_000 {
                            return Err(e.into());
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Queue a publish (QoS 1) without waiting for the broker.
    pub async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), MqttError> {
        self.request(topic, payload, None).await
    }

    /// Publish (QoS 1) and wait until the broker acknowledged it, at most `within`.
    pub async fn publish_confirmed(
        &self,
        topic: &str,
        payload: Vec<u8>,
        within: Duration,
    ) -> Result<(), MqttError> {
        let (tx, rx) = oneshot::channel();
        self.request(topic, payload, Some(tx)).await?;
        match tokio::time::timeout(within, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(MqttError::Unconfirmed("the connection was reset".into())),
            Err(_) => Err(MqttError::Unconfirmed(format!(
                "no PUBACK within {} ms",
                within.as_millis()
            ))),
        }
    }

    /// Flush what is queued and close the connection.
    pub async fn disconnect(&self) {
        let _ = self.client.disconnect().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_cap_with_jitter() {
        let mut b = Backoff(0);
        let first = b.next();
        assert!(first <= Duration::from_millis(100));
        let mut last = Duration::ZERO;
        for _ in 0..20 {
            last = b.next();
        }
        assert!(last >= Duration::from_millis(15_000) && last <= Duration::from_millis(30_000));
    }
}
