//! The live pipeline: one task owns the engine. MQTT messages come in, are decoded and pushed;
//! transitions are rendered, routed, and stored (with the deliveries they owe) before the
//! message is acknowledged to the broker; the API asks it for the engine's state; a reload swaps
//! the configuration in place.

use super::sources::Input;
use crate::config::Config;
use crate::decode;
use crate::engine::{Engine, Subject};
use crate::event::{Level, RejectReason};
use crate::metrics::Metrics;
use crate::store::{now_ms, Store};
use crate::time::{format_ts, Ts};
use crate::warnings::finish;
use rustc_hash::FxHashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch, Notify};
use yujing_connectors::kafka::KafkaAcker;

mod cluster;
mod dead_letter;
mod inputs;

use crate::handle::{
    DeviceView, EventView, LatestReading, LiveEvent, ReloadResult, Request, SiteView, StreamView,
    HISTORY_MINUTES,
};

pub use dead_letter::DeadLetter;

pub use cluster::Cluster;

/// Each device's series: its latest reading per metric and a short history for charts.
type Latest = FxHashMap<u32, Vec<Series>>;

/// One device's metric: the newest reading and the last [`HISTORY_MINUTES`] minutes.
struct Series {
    metric: Box<str>,
    ts: Ts,
    value: f64,
    via: &'static str,
    /// (minute start, the minute's latest value), oldest first.
    points: std::collections::VecDeque<(Ts, f64)>,
}

impl Series {
    fn add(&mut self, ts: Ts, value: f64, via: &'static str) {
        if ts >= self.ts {
            self.ts = ts;
            self.value = value;
            self.via = via;
        }
        let minute = ts - ts.rem_euclid(60_000);
        match self.points.back_mut() {
            Some(last) if last.0 == minute => last.1 = value,
            Some(last) if last.0 > minute => {
                // out of order: into its minute if that is still kept
                if let Some(p) = self.points.iter_mut().find(|p| p.0 == minute) {
                    p.1 = value;
                }
            }
            _ => {
                self.points.push_back((minute, value));
                if self.points.len() > HISTORY_MINUTES {
                    self.points.pop_front();
                }
            }
        }
    }
}

/// Camera events kept per camera for the site view.
const RECENT_EVENTS: usize = 10;

pub struct Pipeline {
    pub engine: Engine,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub events: broadcast::Sender<Arc<LiveEvent>>,
    pub wake: Arc<Notify>,
    pub dead: DeadLetter,
    pub config_tx: watch::Sender<Arc<Config>>,
    pub reload_state: Arc<Mutex<ReloadResult>>,
    pub config_dir: PathBuf,
    overlay: super::Overlay,
    latest: Latest,
    /// Camera stream state by device: (playing, since, error).
    streams: FxHashMap<u32, (bool, Ts, Option<String>)>,
    /// Recent camera events by device, newest last.
    recent: FxHashMap<u32, std::collections::VecDeque<(Ts, EventView)>>,
    /// ONVIF property states by camera (motion, tamper, ...): they hold until the camera
    /// changes them, so they are read again with every health report; event-driven metrics
    /// would otherwise leave windows empty and a firing warning could never clear.
    states: FxHashMap<u32, Vec<(String, f64)>>,
    source: usize,
    source_hj212: usize,
    source_camera: usize,
    source_hotline: usize,
    /// Watermark sources of Kafka partitions, by (topic, partition): event time waits for the
    /// slowest partition, so a backlog read partition by partition is not made late.
    kafka_sources: Vec<(Arc<str>, i32, usize)>,
    /// `yujing_input_readings_total` by connector, looked up once.
    readings_by: FxHashMap<String, prometheus::IntCounter>,
    /// Engine counters already exported: (readings, windows closed).
    exported: (u64, u64),
    /// This instance's share of a cluster (`[cluster]`).
    pub cluster: Option<Cluster>,
    /// Processed readings into the history archive (`[archive]`).
    pub archive: Option<Archiving>,
}

/// The pipeline's side of the archive: the staging file, and where finished ones go.
pub struct Archiving {
    pub recorder: crate::archive::Recorder,
    pub sealed: mpsc::Sender<PathBuf>,
    pub every: crate::time::Millis,
    next: Ts,
    failed: u64,
}

impl Archiving {
    pub fn new(
        recorder: crate::archive::Recorder,
        sealed: mpsc::Sender<PathBuf>,
        every: crate::time::Millis,
    ) -> Archiving {
        Archiving {
            recorder,
            sealed,
            every,
            next: now_ms() + every,
            failed: 0,
        }
    }
}

impl Pipeline {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        mut engine: Engine,
        store: Store,
        metrics: Arc<Metrics>,
        events: broadcast::Sender<Arc<LiveEvent>>,
        wake: Arc<Notify>,
        dead: DeadLetter,
        config_tx: watch::Sender<Arc<Config>>,
        reload_state: Arc<Mutex<ReloadResult>>,
        config_dir: PathBuf,
        overlay: super::Overlay,
    ) -> Pipeline {
        let source = engine.source("mqtt");
        let source_hj212 = engine.source("hj212");
        let source_camera = engine.source("camera");
        let source_hotline = engine.passive_source("hotline");
        // every connector's counters exist from the start (at 0), so dashboards and alerts on
        // them see a series before the first rejection
        for c in ["mqtt", "hj212", "camera", "hotline", "kafka"] {
            metrics.readings.with_label_values(&[c]);
            for r in RejectReason::ALL {
                metrics.rejected.with_label_values(&[c, r.as_str()]);
            }
        }
        Pipeline {
            engine,
            store,
            metrics,
            events,
            wake,
            dead,
            config_tx,
            reload_state,
            config_dir,
            overlay,
            latest: FxHashMap::default(),
            streams: FxHashMap::default(),
            recent: FxHashMap::default(),
            states: FxHashMap::default(),
            source,
            source_hj212,
            source_camera,
            source_hotline,
            kafka_sources: Vec::new(),
            exported: (0, 0),
            readings_by: Default::default(),
            cluster: None,
            archive: None,
        }
    }

    /// Resume the warnings that were firing when the service stopped.
    pub async fn resume(&mut self) -> Result<usize, crate::store::StoreError> {
        let mut n = 0;
        for (w, episode_start) in self.store.active().await? {
            let Some(level) = Level::parse(&w.level) else {
                continue;
            };
            // in a cluster, another instance's sites are its own
            let site = self.engine.config.registry.site(&w.site);
            if site.is_some_and(|i| !self.engine.owns(i)) {
                continue;
            }
            if self.engine.resume(
                &w.rule,
                &w.subject,
                level,
                w.seq as u32,
                episode_start,
                w.raised_at,
            ) {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Run until every source has stopped (the input channel closes); requests are answered
    /// meanwhile and the engine ticks every second by the clock.
    pub async fn run(
        mut self,
        mut inputs: mpsc::Receiver<Input>,
        mut requests: mpsc::Receiver<Request>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut requests_open = true;
        let mut kafka_acker = None;
        let mut kafka_done: Vec<(String, i32, i64)> = Vec::new();
        loop {
            tokio::select! {
                i = inputs.recv() => match i {
                    Some(i) => self.on_input(i, &mut kafka_acker, &mut kafka_done).await,
                    None => break,
                },
                r = requests.recv(), if requests_open => match r {
                    Some(r) => self.on_request(r).await,
                    None => requests_open = false,
                },
                _ = tick.tick() => {
                    let before = self.counts();
                    self.engine.tick(now_ms());
                    self.attribute("clock", before);
                    self.flush(now_ms()).await;
                    self.checkpoint_due().await;
                    self.archive_due(false).await;
                    self.sync_metrics();
                    self.dead.flush();
                }
            }
        }
        // a cluster member leaving: its partitions' state for whoever takes them
        self.checkpoint(None).await;
        // the last readings to the archive; dropping the sender ends the archive's task
        self.archive_due(true).await;
        self.archive = None;
        // the sources stopped: what was taken is stored; windows still open are not judged early
        self.flush(now_ms()).await;
        store_offsets(&kafka_acker, &mut kafka_done);
        if let Some(a) = &kafka_acker {
            a.commit();
        }
        self.sync_metrics();
        self.dead.flush();
    }

    /// One item of a source; acknowledged (MQTT) or marked processed (Kafka) once what it
    /// caused is stored.
    async fn on_input(
        &mut self,
        input: Input,
        kafka_acker: &mut Option<KafkaAcker>,
        kafka_done: &mut Vec<(String, i32, i64)>,
    ) {
        match input {
            Input::Group(ev) => self.on_group(ev).await,
            Input::Kafka(batch, acker) => {
                self.on_kafka(&batch).await;
                self.archive_sync();
                // processed and their transitions stored: the offsets may be committed (the
                // newest per partition)
                for k in &batch {
                    match kafka_done
                        .iter_mut()
                        .find(|d| *d.0 == *k.topic && d.1 == k.partition)
                    {
                        Some(d) => d.2 = d.2.max(k.offset),
                        None => kafka_done.push((k.topic.to_string(), k.partition, k.offset)),
                    }
                }
                *kafka_acker = Some(acker);
                store_offsets(kafka_acker, kafka_done);
            }
            Input::Hj212(i) => self.on_hj212(i).await,
            Input::Camera(c) => self.on_camera(c).await,
            Input::Mqtt(m, acker) => {
                let done = self.on_message(&m).await;
                self.archive_sync();
                if done {
                    if let Err(e) = acker.ack(&m).await {
                        tracing::warn!(error = %e, "cannot acknowledge an MQTT message; the broker will redeliver it");
                    }
                }
            }
        }
    }

    async fn on_request(&mut self, r: Request) {
        match r {
            Request::Sites(points, reply) => {
                let _ = reply.send(self.sites(points));
            }
            Request::Ticket {
                site,
                concern,
                received_at,
                done,
            } => {
                self.on_ticket(&site, &concern, received_at).await;
                let _ = done.send(());
            }
            Request::Reload(trigger, reply) => {
                let res = self.reload(&trigger).await;
                let _ = reply.send(res);
            }
        }
    }

    /// Validate the whole config directory again; swap it in only if it is clean.
    pub async fn reload(&mut self, trigger: &str) -> ReloadResult {
        let tz = self.engine.config.settings.timezone;
        let at = format_ts(now_ms(), tz);
        let res = match Config::load(&self.config_dir) {
            Err(diags) => {
                let errors: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
                for e in &errors {
                    tracing::error!(error = %e, "reload rejected; the previous configuration keeps running");
                }
                self.metrics.reloads.with_label_values(&["error"]).inc();
                ReloadResult {
                    at,
                    ok: false,
                    errors,
                    kept: 0,
                    reset: 0,
                    trigger: trigger.into(),
                }
            }
            Ok(cfg) => {
                let mut cfg = cfg;
                cfg.settings.watch_unseen_devices = true;
                (self.overlay)(&mut cfg);
                // connection settings (HTTP, MQTT, store) take effect on restart; tokens, secrets
                // and dispatch settings now
                let running = &self.engine.config.service;
                cfg.service.http = running.http.clone();
                cfg.service.mqtt = running.mqtt.clone();
                cfg.service.store = running.store.clone();
                let cfg = Arc::new(cfg);
                let (kept, reset) = self.engine.reload(cfg.clone());
                if reset > 0 {
                    // warnings firing under rules that start afresh keep their episode (and id)
                    if let Err(e) = self.resume().await {
                        tracing::error!(error = %e, "cannot resume firing warnings after the reload");
                    }
                }
                self.source = self.engine.source("mqtt");
                self.source_hj212 = self.engine.source("hj212");
                self.source_camera = self.engine.source("camera");
                self.source_hotline = self.engine.passive_source("hotline");
                // the engine may be new: its sources are registered again
                for (t, p, i) in self.kafka_sources.iter_mut() {
                    *i = self.engine.source(&kafka_source_name(t, *p));
                }
                self.rebind_cluster();
                self.config_tx.send_replace(cfg);
                self.metrics.reloads.with_label_values(&["ok"]).inc();
                tracing::info!(kept, reset, trigger, "configuration reloaded");
                ReloadResult {
                    at,
                    ok: true,
                    errors: Vec::new(),
                    kept,
                    reset,
                    trigger: trigger.into(),
                }
            }
        };
        if let Ok(mut s) = self.reload_state.lock() {
            *s = res.clone();
        }
        res
    }

    /// Render, route and store the engine's transitions; retried until the store takes them
    /// (input waits meanwhile: nothing is acknowledged that is not stored).
    async fn flush(&mut self, now: Ts) {
        if self.engine.transitions.is_empty() {
            return;
        }
        let transitions = std::mem::take(&mut self.engine.transitions);
        let cfg = self.engine.config.clone();
        let mut batch = Vec::with_capacity(transitions.len());
        for t in &transitions {
            let site = &cfg.registry.sites[t.site as usize];
            // tickets that counted: their numbers are evidence
            let concerns: Vec<&str> = ticket_concerns(&cfg.rules[t.rule]);
            let mut tickets = Vec::new();
            if !concerns.is_empty() {
                let found = self
                    .store
                    .tickets(&crate::store::tickets::TicketFilter {
                        site: Some(site.id.clone()),
                        from: Some(t.window.0),
                        to: Some(t.window.1),
                        limit: 100,
                        ..Default::default()
                    })
                    .await
                    .unwrap_or_default();
                tickets = found
                    .into_iter()
                    .filter(|x| x.fed && concerns.contains(&x.concern.as_ref()))
                    .map(|x| x.ticket.number)
                    .collect();
            }
            match finish(&self.engine, t, tickets).stored(t) {
                Ok(row) => batch.push(row),
                Err(e) => tracing::error!(error = %e, "cannot render a warning"),
            }
        }
        let mut wait = Duration::from_millis(100);
        let fresh = loop {
            match self.store.record(&batch, now).await {
                Ok(f) => break f,
                Err(e) => {
                    tracing::error!(error = %e, retry_in_ms = wait.as_millis() as u64, "cannot store warnings; input waits until the store takes them");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        };
        for (t, new) in batch.iter().zip(fresh) {
            if !new {
                continue;
            }
            self.metrics
                .transitions
                .with_label_values(&[&t.rule, t.level.as_str(), t.kind.as_str()])
                .inc();
            tracing::info!(warning = %t.id, rule = %t.rule, site = %t.site, level = t.level.as_str(), transition = t.kind.as_str(), "{}", t.message);
            let _ = self.events.send(Arc::new(LiveEvent {
                kind: "transition",
                id: t.id.clone(),
                departments: t.departments.clone(),
                data: t.doc.clone(),
            }));
        }
        self.wake.notify_one();
    }

    /// Hand the archived readings to the operating system (before input is acknowledged).
    pub(super) fn archive_sync(&mut self) {
        if let Some(a) = &mut self.archive {
            if a.recorder.pending() > 0 {
                if let Err(e) = a.recorder.sync() {
                    a.recorder.failed += 1;
                    a.recorder.last_error = Some(e.to_string());
                }
            }
        }
    }

    /// Every `flush_every` (and at the end): the staging file goes to be made Parquet.
    async fn archive_due(&mut self, last: bool) {
        let Some(a) = &mut self.archive else {
            return;
        };
        if a.recorder.failed > a.failed {
            self.metrics
                .archive_errors
                .with_label_values(&["record"])
                .inc_by(a.recorder.failed - a.failed);
            tracing::error!(readings = a.recorder.failed - a.failed, error = ?a.recorder.last_error, "readings could not be archived");
            a.failed = a.recorder.failed;
        }
        let now = now_ms();
        if !last && now < a.next {
            self.archive_sync();
            return;
        }
        a.next = now + a.every;
        match a.recorder.rotate() {
            Ok(Some(done)) => {
                let _ = a.sealed.send(done).await;
            }
            Ok(None) => {}
            Err(e) => {
                self.metrics
                    .archive_errors
                    .with_label_values(&["record"])
                    .inc();
                tracing::error!(error = %e, "cannot start a new archive staging file");
            }
        }
    }

    fn sync_metrics(&mut self) {
        let s = &self.engine.stats;
        let (readings, windows) = self.exported;
        self.metrics
            .evaluations
            .inc_by(s.windows_closed.saturating_sub(windows));
        self.exported = (readings, s.windows_closed);
        self.metrics
            .window_series
            .set(self.engine.window_entries() as i64);
    }

    /// The engine's input counters now: readings and rejections by reason.
    fn counts(&self) -> (u64, [u64; RejectReason::ALL.len()]) {
        (self.engine.stats.readings, self.engine.stats.rejected)
    }

    /// Export what the engine counted since `before` under `connector`.
    fn attribute(&mut self, connector: &str, before: (u64, [u64; RejectReason::ALL.len()])) {
        let (readings, rejected) = self.counts();
        let n = readings.saturating_sub(before.0);
        if n > 0 {
            // the label lookup once per connector, not per message
            let metrics = &self.metrics;
            self.readings_by
                .entry(connector.to_string())
                .or_insert_with(|| metrics.readings.with_label_values(&[connector]))
                .inc_by(n);
        }
        for r in RejectReason::ALL {
            let d = rejected[r as usize].saturating_sub(before.1[r as usize]);
            if d > 0 {
                self.metrics
                    .rejected
                    .with_label_values(&[connector, r.as_str()])
                    .inc_by(d);
            }
        }
    }

    /// Count and dead-letter a rejection decided outside the engine.
    fn count_reject(&mut self, reason: RejectReason) {
        self.engine.stats.readings += 1;
        self.engine.stats.rejected[reason as usize] += 1;
    }

    /// Dead-letter what one input had rejected (late ones counted as such too), then what the
    /// engine decided about held readings since.
    async fn dead_letter_all(
        &mut self,
        connector: &str,
        rejected: Vec<(RejectReason, String)>,
        topic: &str,
        payload: &[u8],
    ) {
        for (reason, detail) in rejected {
            if reason == RejectReason::Late {
                self.metrics.late.inc();
            }
            self.dead
                .write(connector, reason, &detail, topic, payload)
                .await;
        }
        self.deferred(connector, topic, payload).await;
    }

    /// Rejections the engine decided after the fact (held readings it did not confirm).
    async fn deferred(&mut self, connector: &str, topic: &str, payload: &[u8]) {
        for (reason, held) in self.engine.take_deferred_rejects() {
            let detail = format!("{held:?}");
            self.dead
                .write(connector, reason, &detail, topic, payload)
                .await;
        }
    }

    fn sites(&self, points: usize) -> Vec<SiteView> {
        let cfg = &self.engine.config;
        let tz = cfg.settings.timezone;
        let firing = self.engine.firing();
        let mut offline = rustc_hash::FxHashSet::default();
        for (ri, subj, _) in &firing {
            if let (crate::config::rules::Body::Absence { .. }, Subject::Device(d)) =
                (&cfg.rules[*ri].body, subj)
            {
                offline.insert(*d);
            }
        }
        cfg.registry
            .sites
            .iter()
            .enumerate()
            .map(|(si, s)| SiteView {
                site: s.clone(),
                firing: firing
                    .iter()
                    .filter(|(_, subj, _)| match subj {
                        Subject::Site(x) => *x as usize == si,
                        Subject::Device(d) => cfg.registry.devices[*d as usize].site as usize == si,
                    })
                    .map(|(ri, _, l)| (cfg.rules[*ri].id.clone(), *l))
                    .collect(),
                devices: s
                    .devices
                    .iter()
                    .filter(|&&d| !cfg.registry.devices[d as usize].is_hotline())
                    .map(|&d| {
                        let dev = &cfg.registry.devices[d as usize];
                        let readings: Vec<LatestReading> = self
                            .latest
                            .get(&d)
                            .map(|v| {
                                v.iter()
                                    .map(|x| LatestReading {
                                        metric: x.metric.to_string(),
                                        value: x.value,
                                        ts: format_ts(x.ts, tz),
                                        via: x.via,
                                        points: x
                                            .points
                                            .iter()
                                            .skip(x.points.len().saturating_sub(points))
                                            .copied()
                                            .collect(),
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        let last = self
                            .latest
                            .get(&d)
                            .and_then(|v| v.iter().map(|x| x.ts).max());
                        DeviceView {
                            id: dev.id.clone(),
                            kind: dev.kind.clone(),
                            hj212_mn: dev.hj212_mn.clone(),
                            metrics: dev.metrics.clone(),
                            status: if offline.contains(&d) {
                                "offline"
                            } else if last.is_none() {
                                "unseen"
                            } else {
                                "online"
                            },
                            last_seen: last.map(|t| format_ts(t, tz)),
                            readings,
                            // cameras yujing dials (not when `[cameras] enabled = false`)
                            stream: dev
                                .rtsp_url
                                .as_ref()
                                .filter(|_| cfg.service.cameras.enabled)
                                .map(|_| match self.streams.get(&d) {
                                    Some((up, since, error)) => StreamView {
                                        state: if *up { "playing" } else { "lost" },
                                        since: format_ts(*since, tz),
                                        error: error.clone(),
                                    },
                                    None => StreamView {
                                        state: "connecting",
                                        since: String::new(),
                                        error: None,
                                    },
                                }),
                            events: self
                                .recent
                                .get(&d)
                                .map(|q| q.iter().rev().map(|(_, e)| e.clone()).collect())
                                .unwrap_or_default(),
                        }
                    })
                    .collect(),
            })
            .collect()
    }
}

/// The ticket concerns a rule counts (`tickets.<concern>` metrics of its conditions).
fn ticket_concerns(rule: &crate::config::rules::Rule) -> Vec<&str> {
    match &rule.body {
        crate::config::rules::Body::Threshold { conds, .. } => conds
            .iter()
            .filter_map(|c| c.metric.strip_prefix("tickets."))
            .collect(),
        crate::config::rules::Body::Absence { .. } => Vec::new(),
    }
}

/// Push one reading into the engine and keep it as its device's latest value.
fn feed(
    engine: &mut Engine,
    latest: &mut Latest,
    archive: &mut Option<Archiving>,
    r: &crate::event::ReadingRef<'_>,
    via: &'static str,
) -> Result<(), RejectReason> {
    let dev = engine.config.registry.device(r.device);
    // a device sends the metrics sites.yaml declares for it, no others: made-up names would
    // each become a series here, in the archive and in the API's site views
    if let Some(d) = dev {
        let declared = &engine.config.registry.devices[d as usize].metrics;
        if !declared.iter().any(|m| m == r.metric) {
            engine.stats.readings += 1;
            engine.stats.rejected[RejectReason::UnknownMetric as usize] += 1;
            return Err(RejectReason::UnknownMetric);
        }
    }
    engine.push(r)?;
    if let Some(d) = dev {
        // ticket counts are archived as tickets, not as readings
        if let (Some(a), false) = (archive.as_mut(), via == "hotline") {
            let reg = &engine.config.registry;
            let site = &reg.sites[reg.devices[d as usize].site as usize].id;
            a.recorder
                .record(site, r.device, r.metric, r.value, r.ts, r.arrival, via);
        }
        let v = latest.entry(d).or_default();
        match v.iter_mut().find(|x| &*x.metric == r.metric) {
            Some(series) => series.add(r.ts, r.value, via),
            None => {
                let mut series = Series {
                    metric: r.metric.into(),
                    ts: r.ts,
                    value: r.value,
                    via,
                    points: std::collections::VecDeque::new(),
                };
                series.add(r.ts, r.value, via);
                v.push(series);
            }
        }
    }
    Ok(())
}

/// The watermark source of a Kafka partition.
fn kafka_source_name(topic: &str, partition: i32) -> String {
    format!("kafka:{topic}:{partition}")
}

impl Pipeline {
    /// The watermark source of a Kafka partition, registered on first use (no allocation after).
    fn kafka_source(&mut self, topic: &Arc<str>, partition: i32) -> usize {
        if let Some(i) = self.kafka_source_of(topic, partition) {
            return i;
        }
        let i = self.engine.source(&kafka_source_name(topic, partition));
        self.kafka_sources.push((topic.clone(), partition, i));
        i
    }

    /// Register (or re-register) a partition's source as `i`.
    fn set_kafka_source(&mut self, topic: &str, partition: i32, i: usize) {
        match self
            .kafka_sources
            .iter_mut()
            .find(|(t, p, _)| *p == partition && **t == *topic)
        {
            Some(e) => e.2 = i,
            None => self.kafka_sources.push((Arc::from(topic), partition, i)),
        }
    }

    fn kafka_source_of(&self, topic: &str, partition: i32) -> Option<usize> {
        self.kafka_sources
            .iter()
            .find(|(t, p, _)| *p == partition && **t == *topic)
            .map(|(_, _, i)| *i)
    }
}

/// Store the offsets of processed Kafka messages (the newest per partition).
fn store_offsets(acker: &Option<KafkaAcker>, done: &mut Vec<(String, i32, i64)>) {
    if let Some(a) = acker {
        if let Err(e) = a.ack_many(done) {
            tracing::warn!(error = %e, "cannot store Kafka offsets; those messages will be read again");
        }
    }
    done.clear();
}
