//! `yujing run` and `yujing demo`: the live service wired together.
//!
//! ```text
//! MQTT           --.
//! Kafka           --+ sources::sources()
//! HJ 212 listener --+-> one channel of Input -> pipeline (decode, engine, finish, store) --> outbox --> dispatcher --> channels
//! RTSP cameras  --'     ^  |                                              ^
//!        reload ---------'  '--> live events (SSE)        deadline watcher '
//! HTTP API: reads the store, asks the pipeline for the engine's state, acts on warnings
//! ```
//!
//! Shutdown (Ctrl-C or SIGTERM) drains in this order:
//! 1. the sources stop taking input (MQTT messages, HJ 212 packets, camera streams);
//! 2. the pipeline processes what it had received and stores the transitions (open windows are
//!    not judged early);
//! 3. acknowledgements are flushed to the broker and the source disconnects;
//! 4. deliveries under way finish; the rest stay queued in the outbox for the next start;
//! 5. the deadline watcher and the MQTT publisher stop;
//! 6. the HTTP API stops (open event streams get two seconds);
//! 7. the store is closed.

pub mod limits;
pub mod pipeline;
pub mod simulate;
pub mod sources;

use crate::api::{self, AppState, DemoHooks};
use crate::config::service::ServiceSettings;
use crate::config::Config;
use crate::dispatch::{self, Dispatcher};
use crate::engine::Engine;
use crate::handle::{ReloadResult, Request};
use crate::metrics::Metrics;
use crate::store::Store;
use anyhow::{Context, Result};
use pipeline::{DeadLetter, Pipeline};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use yujing_connectors::http::HttpOut;
use yujing_connectors::kafka::KafkaProducer;
use yujing_connectors::mqtt::{LinkState, Publisher};

/// Applied to every configuration loaded (at start and on each reload): the demo's overrides,
/// or nothing.
pub type Overlay = Arc<dyn Fn(&mut Config) + Send + Sync>;

pub struct Options {
    pub config_dir: PathBuf,
    pub overlay: Overlay,
    /// The demo: webhooks to itself, the simulator, and its banner.
    pub demo: Option<DemoOptions>,
}

pub struct DemoOptions {
    pub hook_secret: String,
    /// The token the simulated 12345 centre posts its tickets with.
    pub hotline_token: String,
    pub speed: f64,
    /// Printed once everything listens.
    pub banner: String,
}

/// Load the config directory with the overlay applied.
pub fn load(dir: &std::path::Path, overlay: &Overlay) -> Result<Config> {
    match Config::load(dir) {
        Ok(mut c) => {
            // live, a device never heard from is as silent as one that stopped
            c.settings.watch_unseen_devices = true;
            overlay(&mut c);
            Ok(c)
        }
        Err(diags) => {
            let text: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
            anyhow::bail!("the configuration has errors:\n{}", text.join("\n"))
        }
    }
}

async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return "Ctrl-C";
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "Ctrl-C",
            _ = term.recv() => "SIGTERM",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

/// Reload on SIGHUP and when a config file changes (debounced).
fn reload_triggers(
    dir: PathBuf,
    engine: mpsc::Sender<Request>,
    cancel: CancellationToken,
) -> Option<notify::RecommendedWatcher> {
    #[cfg(unix)]
    {
        let engine = engine.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            loop {
                tokio::select! {
                    _ = hup.recv() => {
                        let (tx, rx) = tokio::sync::oneshot::channel();
                        if engine.send(Request::Reload("SIGHUP".into(), tx)).await.is_err() { break; }
                        let _ = rx.await;
                    }
                    _ = cancel.cancelled() => break,
                }
            }
        });
    }
    use notify::Watcher;
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = match notify::recommended_watcher(
        move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                let relevant = ev.paths.iter().any(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    (name.ends_with(".yaml")
                        || name.ends_with(".yml")
                        || name.ends_with(".csv")
                        || name == "yujing.toml")
                        && !p.components().any(|c| c.as_os_str() == "tests")
                });
                if relevant && (ev.kind.is_modify() || ev.kind.is_create() || ev.kind.is_remove()) {
                    let _ = tx.send(());
                }
            }
        },
    ) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config directory; reload with SIGHUP or POST /api/v1/reload");
            return None;
        }
    };
    for p in [dir.clone(), dir.join("rules")] {
        if p.exists() {
            if let Err(e) = watcher.watch(&p, notify::RecursiveMode::NonRecursive) {
                tracing::warn!(error = %e, path = %p.display(), "cannot watch");
            }
        }
    }
    tokio::spawn(async move {
        loop {
            tokio::select! {
                got = rx.recv() => {
                    if got.is_none() { break; }
                    // editors write in several steps: wait for the burst to end
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    while rx.try_recv().is_ok() {}
                    let (tx, r) = tokio::sync::oneshot::channel();
                    if engine.send(Request::Reload("file change".into(), tx)).await.is_err() { break; }
                    let _ = r.await;
                }
                _ = cancel.cancelled() => break,
            }
        }
    });
    Some(watcher)
}

/// Run the service until Ctrl-C or SIGTERM.
pub async fn run(opts: Options) -> Result<()> {
    let config = Arc::new(load(&opts.config_dir, &opts.overlay)?);
    let svc = config.service.clone();
    limits::open_files(&svc)?;
    limits::warn_unsafe(&config, opts.demo.is_some());
    let metrics = Arc::new(Metrics::new());
    let store = open_store(&svc).await?;
    let (config_tx, config_rx) = watch::channel(config.clone());
    let (events, _) = broadcast::channel(1024);
    let wake = Arc::new(Notify::new());
    let cancel = CancellationToken::new();

    // the inputs, into one channel
    let (in_tx, in_rx) = mpsc::channel(4096);
    let stop_source = CancellationToken::new();
    let source_done = CancellationToken::new();
    let cx = sources::Context {
        config: config.clone(),
        config_rx: config_rx.clone(),
        metrics: metrics.clone(),
        stop: stop_source.clone(),
        done: source_done.clone(),
    };
    let inputs = sources::start_all(&cx, in_tx).await?;

    let (publisher, kafka_out) = connect_outputs(&config, &metrics)?;
    let shares = sources::kafka::shares_partitions(&config);
    let cluster = match (&svc.cluster, &svc.kafka) {
        (Some(cluster), Some(k)) if shares => Some(pipeline::Cluster::new(
            cluster.clone(),
            k,
            kafka_out.clone(),
        )),
        _ => None,
    };

    // the engine, resumed from the store
    let mut engine = Engine::new(config.clone());
    engine.source("mqtt");
    if shares {
        // in a cluster no site is this instance's until the group gives it partitions
        engine.set_owned(Some(vec![false; config.registry.sites.len()]));
    }
    let dead = open_dead_letter(&svc, &metrics, &publisher, &kafka_out)?;
    let reload_state = Arc::new(Mutex::new(ReloadResult::started(
        crate::time::format_ts(crate::store::now_ms(), config.settings.timezone),
        config.rules.len(),
    )));
    let mut pipe = Pipeline::new(
        engine,
        store.clone(),
        metrics.clone(),
        events.clone(),
        wake.clone(),
        dead,
        config_tx,
        reload_state.clone(),
        opts.config_dir.clone(),
        opts.overlay.clone(),
    );
    // in a cluster, firing warnings come back with their partitions' checkpoints
    let resumed = if shares { 0 } else { pipe.resume().await? };
    if resumed > 0 {
        tracing::info!(
            resumed,
            "warnings still firing at the last stop resume their episodes"
        );
    }
    let archive_task = start_archive(&mut pipe, &store, &config_rx, &metrics)?;
    pipe.cluster = cluster;
    let (req_tx, req_rx) = mpsc::channel(64);
    let pipeline_task = tokio::spawn(pipe.run(in_rx, req_rx));

    // dispatch
    let dispatch_cancel = CancellationToken::new();
    let (dispatch_task, deadline_task) = start_dispatch(
        Dispatcher {
            store: store.clone(),
            config: config_rx.clone(),
            http: HttpOut::new(Duration::from_millis(svc.dispatch.timeout as u64))?,
            mqtt: publisher.clone(),
            kafka: kafka_out.clone(),
            metrics: metrics.clone(),
            wake: wake.clone(),
        },
        &dispatch_cancel,
    );

    // HTTP
    let demo_hooks = opts.demo.as_ref().map(|d| {
        Arc::new(DemoHooks {
            secret: d.hook_secret.clone(),
            received: Mutex::new(Vec::new()),
            total: Default::default(),
        })
    });
    let state = AppState {
        store: store.clone(),
        metrics: metrics.clone(),
        config: config_rx.clone(),
        engine: req_tx.clone(),
        events: events.clone(),
        reload: reload_state,
        ready: inputs.ready,
        demo_hooks,
        sessions: Arc::new(api::session::Sessions::default()),
        tickets_out: KafkaTickets::of(&svc, &kafka_out),
    };
    let http_cancel = CancellationToken::new();
    let (local, http_task) = serve_http(&svc, state, &metrics, &http_cancel).await?;
    let _watcher = reload_triggers(opts.config_dir.clone(), req_tx.clone(), cancel.clone());
    drop(req_tx);

    let sim_cancel = CancellationToken::new();
    if let Some(d) = &opts.demo {
        println!("{}", d.banner.replace("{http}", &format!("http://{local}")));
        if let Some(p) = &publisher {
            tokio::spawn(simulate::run(
                config.clone(),
                p.clone(),
                d.speed,
                Some((format!("http://{local}"), d.hotline_token.clone())),
                sim_cancel.clone(),
            ));
        }
    }

    let why = shutdown_signal().await;
    Live {
        sim_cancel,
        cancel,
        stop_source,
        source_tasks: inputs.tasks,
        pipeline_task,
        archive_task,
        source_done,
        after_drain: inputs.after_drain,
        dispatch_cancel,
        dispatch_task,
        deadline_task,
        publisher,
        http_cancel,
        http_task,
        store,
    }
    .drain(why)
    .await;
    Ok(())
}

/// The dispatcher (outbox to channels) and the deadline watcher, until `cancel`.
fn start_dispatch(
    dispatcher: Dispatcher,
    cancel: &CancellationToken,
) -> (JoinHandle<()>, JoinHandle<()>) {
    let deadlines = tokio::spawn(dispatch::watch_deadlines(
        dispatcher.store.clone(),
        dispatcher.config.clone(),
        dispatcher.wake.clone(),
        Duration::from_millis(500),
        cancel.clone(),
    ));
    (tokio::spawn(dispatcher.run(cancel.clone())), deadlines)
}

/// The store of `[store]`: SQLite, or PostgreSQL shared with other instances.
async fn open_store(svc: &ServiceSettings) -> Result<Store> {
    let store = match &svc.store.url {
        Some(url) => Store::connect(url)
            .await
            .with_context(|| format!("connecting to the store {}", crate::store::redact(url)))?,
        None => Store::open(&svc.store.path, svc.store.fsync)
            .await
            .with_context(|| format!("opening the store {}", svc.store.path.display()))?,
    };
    // in a shared store, other instances' deliveries under way are theirs
    let released = match store.backend() {
        crate::store::Backend::Sqlite => store.release_leases().await?,
        crate::store::Backend::Postgres => 0,
    };
    if released > 0 {
        tracing::warn!(released, "deliveries that were under way when the service last stopped are sent again (same idempotency keys)");
    }
    Ok(store)
}

/// The outputs: an MQTT publisher (mqtt channels, dead letters) and an idempotent Kafka
/// producer (kafka channels, dead letters, a cluster's readings), each if configured.
fn connect_outputs(
    config: &Config,
    metrics: &Arc<Metrics>,
) -> Result<(Option<Publisher>, Option<KafkaProducer>)> {
    let svc = &config.service;
    let publisher = match &svc.mqtt {
        Some(m) => {
            let (ptx, prx) = watch::channel(LinkState::Connecting);
            sources::watch_link(metrics.clone(), "mqtt_out", prx);
            let suffix = format!("{}-out", sources::mqtt::instance_suffix(config));
            let (p, _) = Publisher::connect(&sources::mqtt::client_config(m, &suffix), ptx)?;
            Some(p)
        }
        None => None,
    };
    let kafka = match &svc.kafka {
        Some(k) => {
            let timeout = Duration::from_millis(svc.dispatch.timeout.max(1_000) as u64);
            let kc = sources::kafka::client_config(k);
            Some(KafkaProducer::new(&kc, timeout).context("Kafka producer")?)
        }
        None => None,
    };
    Ok((publisher, kafka))
}

/// The dead-letter file, copied to the MQTT and Kafka dead-letter topics if configured.
fn open_dead_letter(
    svc: &ServiceSettings,
    metrics: &Metrics,
    publisher: &Option<Publisher>,
    kafka: &Option<KafkaProducer>,
) -> Result<DeadLetter> {
    let dead_topic = svc
        .mqtt
        .as_ref()
        .and_then(|m| m.dead_letter_topic.clone())
        .and_then(|t| publisher.clone().map(|p| (p, t)));
    let mut dead = DeadLetter::open(
        &svc.store.dead_letter,
        svc.store.dead_letter_max_bytes,
        svc.store.dead_letter_keep,
        dead_topic,
    )
    .with_context(|| {
        format!(
            "opening the dead-letter file {}",
            svc.store.dead_letter.display()
        )
    })?;
    dead.suppressed = Some(metrics.dead_letters_suppressed.clone());
    dead.kafka = svc.kafka.as_ref().and_then(|k| {
        k.dead_letter_topic
            .clone()
            .and_then(|t| kafka.clone().map(|p| (p, t)))
    });
    Ok(dead)
}

/// History (`[archive]`): processed readings and the store's rows as Parquet; the task that
/// seals, exports and prunes the files.
fn start_archive(
    pipe: &mut Pipeline,
    store: &Store,
    config_rx: &watch::Receiver<Arc<Config>>,
    metrics: &Arc<Metrics>,
) -> Result<Option<JoinHandle<()>>> {
    let config = config_rx.borrow().clone();
    let Some(a) = &config.service.archive else {
        return Ok(None);
    };
    let recorder = crate::archive::Recorder::open(&a.dir, config.settings.timezone)
        .with_context(|| format!("opening the archive {}", a.dir.display()))?;
    let (tx, rx) = mpsc::channel(16);
    pipe.archive = Some(pipeline::Archiving::new(recorder, tx, a.flush_every));
    tracing::info!(dir = %a.dir.display(), retention_days = a.retention_days, "archive up");
    Ok(Some(tokio::spawn(crate::archive::keeper::keep(
        store.clone(),
        a.clone(),
        config_rx.clone(),
        rx,
        metrics.clone(),
    ))))
}

/// The HTTP API on `[http] listen`, until `cancel`.
async fn serve_http(
    svc: &ServiceSettings,
    state: AppState,
    metrics: &Arc<Metrics>,
    cancel: &CancellationToken,
) -> Result<(std::net::SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(&svc.http.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (choose another with --listen or [http] listen)",
                svc.http.listen
            )
        })?;
    let local = listener.local_addr()?;
    // the line tests and scripts wait for
    println!("yujing: listening on http://{local}");
    tracing::info!(%local, "HTTP API up");
    let task = tokio::spawn(api::server::serve(
        listener,
        api::router(state),
        api::server::Limits {
            max_connections: svc.http.max_connections,
            max_connections_per_address: svc.http.max_connections_per_address,
            header_timeout: Duration::from_millis(svc.http.header_timeout as u64),
            request_timeout: Duration::from_millis(svc.http.request_timeout as u64),
        },
        metrics.clone(),
        cancel.clone(),
        Duration::from_secs(2),
    ));
    Ok((local, task))
}

/// The running service's parts, stopped in drain order.
struct Live {
    sim_cancel: CancellationToken,
    cancel: CancellationToken,
    stop_source: CancellationToken,
    source_tasks: Vec<JoinHandle<()>>,
    pipeline_task: JoinHandle<()>,
    archive_task: Option<JoinHandle<()>>,
    source_done: CancellationToken,
    after_drain: Vec<JoinHandle<()>>,
    dispatch_cancel: CancellationToken,
    dispatch_task: JoinHandle<()>,
    deadline_task: JoinHandle<()>,
    publisher: Option<Publisher>,
    http_cancel: CancellationToken,
    http_task: JoinHandle<()>,
    store: Store,
}

impl Live {
    /// Shut down in the order of the module's documentation.
    async fn drain(self, why: &str) {
        tracing::info!(
            signal = why,
            "shutting down: sources, engine, acknowledgements, deliveries, API, store"
        );
        eprintln!(
            "yujing: {why}: draining (sources, engine, acknowledgements, deliveries, API, store)"
        );
        self.sim_cancel.cancel();
        self.cancel.cancel();
        // 1-3: sources stop; the pipeline drains and stores; acks are flushed; disconnect
        self.stop_source.cancel();
        for t in self.source_tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        let _ = self.pipeline_task.await;
        // the last staging file sealed and the store exported
        if let Some(t) = self.archive_task {
            let _ = t.await;
        }
        self.source_done.cancel();
        for t in self.after_drain {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        // 4-5: deliveries under way finish; the rest stay queued
        self.dispatch_cancel.cancel();
        let _ = self.dispatch_task.await;
        let _ = self.deadline_task.await;
        if let Some(p) = &self.publisher {
            p.disconnect().await;
        }
        // 6: the API
        self.http_cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(3), self.http_task).await;
        // 7: the store
        self.store.close().await;
        eprintln!("yujing: stopped");
    }
}

/// Tickets passed on to the tickets topic, keyed by site (in a cluster).
struct KafkaTickets {
    producer: KafkaProducer,
    topic: String,
}

impl KafkaTickets {
    /// In a cluster, tickets reach the rules through Kafka (the partition of their site).
    fn of(
        svc: &ServiceSettings,
        producer: &Option<KafkaProducer>,
    ) -> Option<Arc<dyn crate::handle::TicketSink>> {
        let topic = svc
            .cluster
            .as_ref()
            .and(svc.kafka.as_ref())?
            .tickets_topic
            .clone()?;
        let producer = producer.clone()?;
        Some(Arc::new(KafkaTickets { producer, topic }))
    }
}

impl crate::handle::TicketSink for KafkaTickets {
    fn send<'a>(
        &'a self,
        site: &'a str,
        payload: &'a [u8],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            self.producer
                .send(&self.topic, site, payload, &[])
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}
