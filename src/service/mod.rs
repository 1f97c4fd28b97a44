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
use tokio_util::sync::CancellationToken;
use yujing_connectors::http::HttpOut;
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
    let mut source_tasks = Vec::new();
    let mut after_drain = Vec::new();
    let mut ready: Vec<crate::handle::Readiness> = Vec::new();
    for source in sources::sources(&config) {
        let name = source.name();
        let running = source
            .start(&cx, in_tx.clone())
            .await
            .with_context(|| format!("starting the {name} source"))?;
        source_tasks.extend(running.tasks);
        after_drain.extend(running.after_drain);
        ready.extend(running.ready);
    }
    drop(in_tx);
    if svc.mqtt.is_none() {
        tracing::warn!("no [mqtt] table in yujing.toml: no readings will come in");
    }

    // MQTT out (mqtt channels, dead letters)
    let publisher: Option<Publisher> = match &svc.mqtt {
        Some(m) => {
            let (ptx, prx) = watch::channel(LinkState::Connecting);
            sources::watch_link(metrics.clone(), "mqtt_out", prx);
            let suffix = format!("{}-out", sources::mqtt::instance_suffix(&config));
            let (p, _) = Publisher::connect(&sources::mqtt::client_config(m, &suffix), ptx)?;
            Some(p)
        }
        None => None,
    };
    // Kafka out: an idempotent producer (kafka channels, dead letters, a cluster's readings)
    let kafka_out = match &svc.kafka {
        Some(k) => {
            let timeout = Duration::from_millis(svc.dispatch.timeout.max(1_000) as u64);
            let kc = sources::kafka::client_config(k);
            Some(
                yujing_connectors::kafka::KafkaProducer::new(&kc, timeout)
                    .context("Kafka producer")?,
            )
        }
        None => None,
    };
    let shares = sources::kafka::shares_partitions(&config);
    let cluster = match (&svc.cluster, &svc.kafka) {
        (Some(cluster), Some(k)) if shares => Some(pipeline::Cluster::new(
            cluster.clone(),
            k.group_id.clone(),
            k.readings_topic.clone().unwrap_or_default(),
            k.tickets_topic.clone(),
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
            .and_then(|t| kafka_out.clone().map(|p| (p, t)))
    });
    let reload_state = Arc::new(Mutex::new(ReloadResult {
        at: crate::time::format_ts(crate::store::now_ms(), config.settings.timezone),
        ok: true,
        errors: Vec::new(),
        kept: 0,
        reset: config.rules.len(),
        trigger: "start".into(),
    }));
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
    // history: processed readings and the store's rows as Parquet
    let mut archive_task = None;
    if let Some(a) = &svc.archive {
        let recorder = crate::archive::Recorder::open(&a.dir, config.settings.timezone)
            .with_context(|| format!("opening the archive {}", a.dir.display()))?;
        let (tx, rx) = mpsc::channel(16);
        pipe.archive = Some(pipeline::Archiving::new(recorder, tx, a.flush_every));
        archive_task = Some(tokio::spawn(crate::archive::keeper::keep(
            store.clone(),
            a.clone(),
            config_rx.clone(),
            rx,
            metrics.clone(),
        )));
        tracing::info!(dir = %a.dir.display(), retention_days = a.retention_days, "archive up");
    }
    pipe.cluster = cluster;
    let (req_tx, req_rx) = mpsc::channel(64);
    let pipeline_task = tokio::spawn(pipe.run(in_rx, req_rx));

    // dispatch
    let dispatcher = Dispatcher {
        store: store.clone(),
        config: config_rx.clone(),
        http: HttpOut::new(Duration::from_millis(svc.dispatch.timeout as u64))?,
        mqtt: publisher.clone(),
        kafka: kafka_out.clone(),
        metrics: metrics.clone(),
        wake: wake.clone(),
    };
    let dispatch_cancel = CancellationToken::new();
    let dispatch_task = tokio::spawn(dispatcher.run(dispatch_cancel.clone()));
    let deadline_task = tokio::spawn(dispatch::watch_deadlines(
        store.clone(),
        config_rx.clone(),
        wake.clone(),
        Duration::from_millis(500),
        dispatch_cancel.clone(),
    ));

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
        ready,
        demo_hooks,
        sessions: Arc::new(api::session::Sessions::default()),
        // in a cluster, tickets reach the rules through Kafka (the partition of their site)
        tickets_out: svc
            .cluster
            .as_ref()
            .and(svc.kafka.as_ref())
            .and_then(|k| k.tickets_topic.clone())
            .and_then(|topic| {
                kafka_out
                    .clone()
                    .map(|producer| KafkaTickets { producer, topic })
            })
            .map(|s| Arc::new(s) as Arc<dyn crate::handle::TicketSink>),
    };
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
    let http_cancel = CancellationToken::new();
    let http_task = tokio::spawn(api::server::serve(
        listener,
        api::router(state),
        api::server::Limits {
            max_connections: svc.http.max_connections,
            max_connections_per_address: svc.http.max_connections_per_address,
            header_timeout: Duration::from_millis(svc.http.header_timeout as u64),
            request_timeout: Duration::from_millis(svc.http.request_timeout as u64),
        },
        metrics.clone(),
        http_cancel.clone(),
        Duration::from_secs(2),
    ));
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
    tracing::info!(
        signal = why,
        "shutting down: sources, engine, acknowledgements, deliveries, API, store"
    );
    eprintln!(
        "yujing: {why}: draining (sources, engine, acknowledgements, deliveries, API, store)"
    );
    sim_cancel.cancel();
    cancel.cancel();
    // 1-3: sources stop; the pipeline drains and stores; acks are flushed; disconnect
    stop_source.cancel();
    for t in source_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let _ = pipeline_task.await;
    // the last staging file sealed and the store exported
    if let Some(t) = archive_task {
        let _ = t.await;
    }
    source_done.cancel();
    for t in after_drain {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    // 4-5: deliveries under way finish; the rest stay queued
    dispatch_cancel.cancel();
    let _ = dispatch_task.await;
    let _ = deadline_task.await;
    if let Some(p) = &publisher {
        p.disconnect().await;
    }
    // 6: the API
    http_cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(3), http_task).await;
    // 7: the store
    store.close().await;
    eprintln!("yujing: stopped");
    Ok(())
}

/// Tickets passed on to the tickets topic, keyed by site (in a cluster).
struct KafkaTickets {
    producer: yujing_connectors::kafka::KafkaProducer,
    topic: String,
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
