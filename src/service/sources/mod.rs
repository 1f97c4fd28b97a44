//! Inputs: every connector the live pipeline reads, behind one interface, the way Vector's
//! `SourceConfig::build` and Arroyo's connector registry work. [`sources`] lists what the
//! configuration turns on; each [`Source`] starts its connector (from `yujing_connectors`) and
//! hands what arrives to one channel of [`Input`]; the pipeline knows inputs only as that enum.
//!
//! One connector, one file here: its client settings built from its `[table]` of yujing.toml,
//! its runtime started, its health and counters in `/metrics`. Its decoder lives under
//! `decode/` and its arm in `pipeline/inputs.rs`.
//!
//! Adding a connector (Modbus TCP, say) touches five files, as the HJ 212 listener shows:
//! 1. `connectors/src/modbus.rs`: the protocol and its runtime, sending items into a channel;
//! 2. `src/config/service.rs`: its `[modbus]` table (settings, checks, file:line:col errors);
//! 3. `src/service/sources/modbus.rs`: a [`Source`] that starts it;
//! 4. this file: one line in [`sources`] and one variant of [`Input`];
//! 5. `src/service/pipeline/inputs.rs`: what the pipeline does with the variant (decode, push).
//!
//! (plus `src/decode/` when its payload is a new format).

pub mod cameras;
pub mod hj212;
pub mod kafka;
pub mod mqtt;

use crate::config::Config;
use crate::handle::Readiness;
use crate::metrics::Metrics;
use anyhow::{Context as _, Result};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use yujing_connectors::hj212::Incoming;
use yujing_connectors::kafka::{GroupEvent, KafkaAcker, KafkaMessage};
use yujing_connectors::mqtt::{Acker, LinkState, Message};
use yujing_connectors::rtsp::CameraItem;

/// What a source hands the pipeline: an item, and how to acknowledge it where the protocol
/// acknowledges (after its transitions are stored).
pub enum Input {
    Mqtt(Message, Acker),
    Hj212(Incoming),
    Camera(CameraItem),
    /// Kafka messages (readings, tickets) and how to mark them processed.
    Kafka(Vec<KafkaMessage>, KafkaAcker),
    /// Kafka in a group shared with other instances (`[cluster]`): partitions assigned and
    /// revoked, and messages.
    Group(GroupEvent),
}

/// What every source may use to start.
pub struct Context {
    pub config: Arc<Config>,
    /// The configuration as reloaded (sources that follow sites.yaml, like the cameras).
    pub config_rx: watch::Receiver<Arc<Config>>,
    pub metrics: Arc<Metrics>,
    /// Cancelled when the sources are to stop taking input.
    pub stop: CancellationToken,
    /// Cancelled once the pipeline has drained: a source that acknowledges disconnects then.
    pub done: CancellationToken,
}

/// A started source.
#[derive(Default)]
pub struct Running {
    /// End once the source has stopped taking input (after [`Context::stop`]).
    pub tasks: Vec<JoinHandle<()>>,
    /// End after [`Context::done`].
    pub after_drain: Vec<JoinHandle<()>>,
    /// Whether the source is connected, for `/readyz`.
    pub ready: Vec<Readiness>,
}

pub type Starting<'a> = Pin<Box<dyn Future<Output = Result<Running>> + Send + 'a>>;

/// One input connector.
pub trait Source: Send {
    /// Its name in logs and in `yujing_connector_up{connector=...}`.
    fn name(&self) -> &'static str;
    /// Connect or listen, sending what arrives to `out` until [`Context::stop`].
    fn start<'a>(self: Box<Self>, cx: &'a Context, out: mpsc::Sender<Input>) -> Starting<'a>;
}

/// The sources yujing.toml turns on, in start order.
pub fn sources(config: &Config) -> Vec<Box<dyn Source>> {
    let svc = &config.service;
    let mut out: Vec<Box<dyn Source>> = Vec::new();
    if let Some(m) = &svc.mqtt {
        out.push(Box::new(mqtt::MqttSource::new(m.clone())));
    }
    if let Some(k) = &svc.kafka {
        if let Some(s) = kafka::KafkaSource::new(k.clone()) {
            out.push(Box::new(s));
        }
    }
    if let Some(h) = &svc.hj212 {
        out.push(Box::new(hj212::Hj212Source::new(h.clone())));
    }
    if svc.cameras.enabled {
        out.push(Box::new(cameras::CameraSource));
    }
    out
}

/// Every source yujing.toml turns on, started in order, sending into `out`; their tasks and
/// readiness together.
pub async fn start_all(cx: &Context, out: mpsc::Sender<Input>) -> Result<Running> {
    let mut all = Running::default();
    let list = sources(&cx.config);
    if cx.config.service.mqtt.is_none() {
        tracing::warn!("no [mqtt] table in yujing.toml: no readings will come in");
    }
    for source in list {
        let name = source.name();
        let running = source
            .start(cx, out.clone())
            .await
            .with_context(|| format!("starting the {name} source"))?;
        all.tasks.extend(running.tasks);
        all.after_drain.extend(running.after_drain);
        all.ready.extend(running.ready);
    }
    Ok(all)
}

/// Pass a connector's items on as [`Input`]s until it stops or the pipeline is gone.
fn forward<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
    out: mpsc::Sender<Input>,
    wrap: impl Fn(T) -> Input + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(x) = rx.recv().await {
            if out.send(wrap(x)).await.is_err() {
                break;
            }
        }
    })
}

/// Track a connector's state in `/metrics` (`yujing_connector_up`).
pub fn watch_link(metrics: Arc<Metrics>, name: &'static str, mut rx: watch::Receiver<LinkState>) {
    tokio::spawn(async move {
        loop {
            let up = *rx.borrow_and_update() == LinkState::Up;
            metrics
                .connector_up
                .with_label_values(&[name])
                .set(i64::from(up));
            if rx.changed().await.is_err() {
                break;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Config {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        match Config::load(dir) {
            Ok(c) => c,
            Err(d) => panic!("the sample configuration: {d:?}"),
        }
    }

    #[test]
    fn yujing_toml_decides_which_sources_run() {
        let mut c = sample();
        let names = |c: &Config| sources(c).iter().map(|s| s.name()).collect::<Vec<_>>();
        assert_eq!(names(&c), ["mqtt", "hj212", "camera"]);
        c.service.mqtt = None;
        c.service.cameras.enabled = false;
        assert_eq!(names(&c), ["hj212"]);
        // a Kafka table without topics reads nothing: it is there for the producer
        c.service.kafka = Some(crate::config::service::KafkaSettings {
            brokers: "127.0.0.1:9092".into(),
            group_id: "yujing".into(),
            readings_topic: None,
            tickets_topic: None,
            dead_letter_topic: Some("dl".into()),
            client: Default::default(),
        });
        assert_eq!(names(&c), ["hj212"]);
        if let Some(k) = &mut c.service.kafka {
            k.tickets_topic = Some("tickets".into());
        }
        assert_eq!(names(&c), ["kafka", "hj212"]);
        assert!(
            !kafka::shares_partitions(&c),
            "no [cluster], no shared partitions"
        );
    }

    /// A source that sends what it is given, then stops.
    struct Canned(Vec<Incoming>);

    impl Source for Canned {
        fn name(&self) -> &'static str {
            "canned"
        }
        fn start<'a>(self: Box<Self>, _: &'a Context, out: mpsc::Sender<Input>) -> Starting<'a> {
            Box::pin(async move {
                let task = tokio::spawn(async move {
                    for i in self.0 {
                        let _ = out.send(Input::Hj212(i)).await;
                    }
                });
                Ok(Running {
                    tasks: vec![task],
                    ..Running::default()
                })
            })
        }
    }

    #[tokio::test]
    async fn the_channel_closes_when_every_source_has_stopped() {
        let c = Arc::new(sample());
        let (_, config_rx) = watch::channel(c.clone());
        let cx = Context {
            config: c,
            config_rx,
            metrics: Arc::new(Metrics::new()),
            stop: CancellationToken::new(),
            done: CancellationToken::new(),
        };
        let (tx, mut rx) = mpsc::channel(4);
        let item = |mn: &str| Incoming::Packet {
            peer: std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
            data: format!("QN=1;ST=22;CN=2011;PW=123456;MN={mn};CP=&&&&"),
            done: tokio::sync::oneshot::channel().0,
        };
        let mut running = Vec::new();
        for s in [
            Canned(vec![item("A1"), item("A2")]),
            Canned(vec![item("B1")]),
        ] {
            running.push(Box::new(s).start(&cx, tx.clone()).await.expect("start"));
        }
        drop(tx);
        let mut got = 0;
        while let Some(i) = rx.recv().await {
            assert!(matches!(i, Input::Hj212(_)));
            got += 1;
        }
        assert_eq!(got, 3, "every item, then the end");
        for r in running {
            for t in r.tasks {
                t.await.expect("task");
            }
        }
    }
}
