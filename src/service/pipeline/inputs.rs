//! The pipeline's inputs, one handler each: MQTT messages (sensor readings, edge boxes' camera
//! events), HJ 212 packets, RTSP camera items (health, ONVIF metadata), Kafka messages (readings,
//! tickets) and matched 12345 tickets. Each decodes, feeds the engine, dead-letters what it
//! rejects, stores the transitions that follow and counts what it took under its connector.

use super::*;
use yujing_connectors::hj212::{Incoming, Packet, PacketError, Verdict};
use yujing_connectors::mqtt::Message;
use yujing_connectors::rtsp::CameraItem;

impl Pipeline {
    /// Returns whether the message may be acknowledged to the broker.
    pub(super) async fn on_message(&mut self, m: &Message) -> bool {
        let before = self.counts();
        let done = self.mqtt_message(m).await;
        self.attribute("mqtt", before);
        done
    }

    async fn mqtt_message(&mut self, m: &Message) -> bool {
        let now = now_ms();
        let max = self
            .engine
            .config
            .service
            .mqtt
            .as_ref()
            .map_or(64 * 1024, |m| m.max_payload);
        if m.payload.len() > max {
            self.reject(
                RejectReason::Oversize,
                &format!("{} bytes, the limit is {max}", m.payload.len()),
                m,
            )
            .await;
            return true;
        }
        let mut parts = m.topic.rsplit('/');
        let (Some(device), Some(site)) = (parts.next(), parts.next()) else {
            self.reject(
                RejectReason::Malformed,
                "topic is not .../{site}/{device}",
                m,
            )
            .await;
            return true;
        };
        // `.../cameras/{camera}/events`: an edge AI box
        if device == "events" && parts.next() == Some("cameras") {
            let camera = site.to_string();
            return self.on_edge_event(&camera, m).await;
        }
        let tz = self.engine.config.settings.timezone;
        if self.cluster.is_some() {
            let (site, device) = (site.to_string(), device.to_string());
            return self.pass_on_mqtt(m, &site, &device).await;
        }
        let src = self.source;
        let engine = &mut self.engine;
        let latest = &mut self.latest;
        let archive = &mut self.archive;
        let mut rejected: Vec<(RejectReason, String)> = Vec::new();
        let res = decode::json::decode(&m.payload, Some(site), Some(device), tz, &mut |mut r| {
            r.arrival = now;
            r.source = src;
            if let Err(reason) = feed(engine, latest, archive, &r, "mqtt") {
                rejected.push((reason, format!("{} {} at {}", r.device, r.metric, r.ts)));
            }
        });
        if let Err(e) = res {
            self.reject(e.reason, &e.detail, m).await;
        }
        self.dead_letter_all("mqtt", rejected, &m.topic, &m.payload)
            .await;
        if !self.engine.transitions.is_empty() {
            self.flush(now).await;
            self.metrics
                .detect_latency
                .observe((now_ms() - now).max(0) as f64 / 1000.0);
        }
        true
    }

    async fn reject(&mut self, reason: RejectReason, detail: &str, m: &Message) {
        // counted like the engine's own rejections (attributed in /metrics)
        self.count_reject(reason);
        self.dead
            .write("mqtt", reason, detail, &m.topic, &m.payload)
            .await;
    }

    /// An HJ 212 packet (or a refused one) from a monitor connection.
    pub(super) async fn on_hj212(&mut self, inc: Incoming) {
        let before = self.counts();
        match inc {
            Incoming::Bad { peer, error, raw } => {
                let (result, reason) = match &error {
                    PacketError::Crc { .. } | PacketError::BadCrcField(_) => {
                        ("crc", RejectReason::Malformed)
                    }
                    PacketError::BadLength(_) | PacketError::LengthMismatch { .. } => {
                        ("length", RejectReason::Malformed)
                    }
                    PacketError::Garbage { too_long: true, .. } => {
                        ("too_long", RejectReason::Oversize)
                    }
                    PacketError::Garbage { .. } => ("noise", RejectReason::Malformed),
                    _ => ("malformed", RejectReason::Malformed),
                };
                self.metrics
                    .hj212_packets
                    .with_label_values(&[result])
                    .inc();
                self.count_reject(reason);
                self.dead
                    .write(
                        "hj212",
                        reason,
                        &error.to_string(),
                        &peer.ip().to_string(),
                        &redact_pw(&raw),
                    )
                    .await;
            }
            Incoming::Packet { peer, data, done } => {
                let verdict = self.hj212_packet(&peer.ip().to_string(), &data).await;
                // the monitor resends what is not acknowledged: acknowledge once it is stored
                if !self.engine.transitions.is_empty() {
                    self.flush(now_ms()).await;
                }
                self.archive_sync();
                let _ = done.send(verdict);
            }
        }
        self.attribute("hj212", before);
    }

    /// Decode one checked packet into readings, if it comes from a known monitor with its
    /// password.
    async fn hj212_packet(&mut self, peer: &str, data: &str) -> Verdict {
        let p = match Packet::parse(data) {
            Ok(p) => p,
            Err(e) => {
                self.metrics
                    .hj212_packets
                    .with_label_values(&["malformed"])
                    .inc();
                self.count_reject(RejectReason::Malformed);
                self.dead
                    .write(
                        "hj212",
                        RejectReason::Malformed,
                        &e.to_string(),
                        peer,
                        &redact_pw(data.as_bytes()),
                    )
                    .await;
                // no MN, no password: nothing proves who sent it (and no acknowledgement can be
                // built for it)
                return Verdict::Refused;
            }
        };
        let cfg = self.engine.config.clone();
        let Some(dev) = cfg.registry.device_by_mn(p.mn) else {
            self.metrics
                .hj212_packets
                .with_label_values(&["unknown_mn"])
                .inc();
            self.count_reject(RejectReason::UnknownDevice);
            let detail = format!(
                "MN {} is not bound to a device (sites.yaml `hj212_mn`)",
                p.mn
            );
            self.dead
                .write(
                    "hj212",
                    RejectReason::UnknownDevice,
                    &detail,
                    peer,
                    &redact_pw(data.as_bytes()),
                )
                .await;
            return Verdict::Refused;
        };
        // the monitor's password (PW), when sites.yaml gives one: refused, unacknowledged
        let expected = cfg.registry.devices[dev as usize]
            .hj212_pw
            .as_ref()
            .map(|pw| pw.resolve(&cfg.service.secrets));
        if let Some(expected) = expected {
            let right = match (expected, p.pw) {
                (Some(e), Some(got)) => constant_time_eq(e.as_bytes(), got.as_bytes()),
                _ => false,
            };
            if !right {
                self.metrics
                    .hj212_packets
                    .with_label_values(&["bad_password"])
                    .inc();
                self.count_reject(RejectReason::Unauthorized);
                let detail = format!(
                    "MN {}: {} password (PW); not acknowledged",
                    p.mn,
                    if p.pw.is_some() { "wrong" } else { "no" }
                );
                self.dead
                    .write(
                        "hj212",
                        RejectReason::Unauthorized,
                        &detail,
                        peer,
                        &redact_pw(data.as_bytes()),
                    )
                    .await;
                return Verdict::Refused;
            }
        }
        let device = &cfg.registry.devices[dev as usize].id;
        let accept = cfg
            .service
            .hj212
            .as_ref()
            .map_or_else(|| vec!['N', 'T'], |h| h.accept_flags.clone());
        let now = now_ms();
        let src = self.source_hj212;
        let mut rejected: Vec<(RejectReason, String)> = Vec::new();
        // in a cluster the readings go to the Kafka partition of their site
        let clustered = self.cluster.is_some();
        let mut passed: Vec<(crate::time::Ts, String, f64)> = Vec::new();
        let engine = &mut self.engine;
        let latest = &mut self.latest;
        let archive = &mut self.archive;
        let res =
            decode::hj212::decode(&p, device, cfg.settings.timezone, &accept, &mut |mut r| {
                if clustered {
                    passed.push((r.ts, r.metric.to_string(), r.value));
                    return;
                }
                r.arrival = now;
                r.source = src;
                if let Err(reason) = feed(engine, latest, archive, &r, "hj212") {
                    rejected.push((reason, format!("{} {} at {}", r.device, r.metric, r.ts)));
                }
            });
        match res {
            Ok(d) => {
                let result = if d.not_data { "not_data" } else { "ok" };
                self.metrics
                    .hj212_packets
                    .with_label_values(&[result])
                    .inc();
                // left out by the decoder, so not counted by the engine
                for s in d.skipped {
                    self.count_reject(s.reason);
                    rejected.push((s.reason, s.detail));
                }
            }
            Err(e) => {
                self.metrics
                    .hj212_packets
                    .with_label_values(&["malformed"])
                    .inc();
                self.count_reject(e.reason);
                rejected.push((e.reason, e.detail));
            }
        }
        if clustered && !passed.is_empty() {
            let site = cfg.registry.sites[cfg.registry.devices[dev as usize].site as usize]
                .id
                .clone();
            if !self.pass_on(&site, device, &passed, "hj212").await {
                // not acknowledged: the monitor sends it again
                self.dead_letter_all("hj212", rejected, peer, &redact_pw(data.as_bytes()))
                    .await;
                return Verdict::Again;
            }
        }
        self.dead_letter_all("hj212", rejected, peer, &redact_pw(data.as_bytes()))
            .await;
        Verdict::Taken
    }

    /// A Kafka message: a reading (JSON line with `site` and `device`, keyed by site id) or a
    /// 12345 ticket, by its topic.
    /// A batch of Kafka messages, counted once.
    pub(super) async fn on_kafka(&mut self, batch: &[yujing_connectors::kafka::KafkaMessage]) {
        let before = self.counts();
        for m in batch {
            self.kafka_message(m).await;
        }
        self.attribute("kafka", before);
    }

    async fn kafka_message(&mut self, m: &yujing_connectors::kafka::KafkaMessage) {
        let cfg = self.engine.config.clone();
        let tz = cfg.settings.timezone;
        let now = now_ms();
        let key = m.key.as_deref().map(String::from_utf8_lossy);
        let tickets = cfg
            .service
            .kafka
            .as_ref()
            .and_then(|k| k.tickets_topic.as_deref())
            == Some(&*m.topic);
        if m.payload.len() > 1 << 20 {
            self.count_reject(RejectReason::Oversize);
            let detail = format!("{} bytes, the limit is 1 MiB", m.payload.len());
            self.dead
                .write(
                    "kafka",
                    RejectReason::Oversize,
                    &detail,
                    &m.topic,
                    &m.payload,
                )
                .await;
        } else if tickets {
            let parsed: Result<crate::hotline::TicketIn, _> = serde_json::from_slice(&m.payload);
            let taken = match parsed {
                Err(e) => Err(e.to_string()),
                Ok(t) => {
                    match crate::hotline::prepare(&self.store, &cfg.registry, tz, t, now).await {
                        Err(e) => Err(e.to_string()),
                        Ok(t) => self
                            .store_ticket(m, &t, now)
                            .await
                            .map_err(|e| e.to_string()),
                    }
                }
            };
            match taken {
                Ok((row, counted)) => {
                    let outcome = if row.updates == 0 { "new" } else { "updated" };
                    self.metrics.tickets.with_label_values(&[outcome]).inc();
                    if !row.problems.is_empty() {
                        self.metrics.tickets.with_label_values(&["flagged"]).inc();
                    }
                    if let (true, Some(site), Some(at)) = (counted, &row.site, row.received_at) {
                        self.on_ticket(site, &row.concern, at).await;
                    }
                }
                Err(why) => {
                    self.count_reject(RejectReason::Malformed);
                    self.dead
                        .write(
                            "kafka",
                            RejectReason::Malformed,
                            &format!("not a ticket: {why}"),
                            &m.topic,
                            &m.payload,
                        )
                        .await;
                }
            }
        } else {
            let src = self.kafka_source(&m.topic, m.partition);
            let engine = &mut self.engine;
            let latest = &mut self.latest;
            let archive = &mut self.archive;
            let mut rejected: Vec<(RejectReason, String)> = Vec::new();
            let res = decode::json::decode(&m.payload, key.as_deref(), None, tz, &mut |mut r| {
                r.arrival = now;
                r.source = src;
                if let Err(reason) = feed(engine, latest, archive, &r, "kafka") {
                    rejected.push((reason, format!("{} {} at {}", r.device, r.metric, r.ts)));
                }
            });
            if let Err(e) = res {
                self.count_reject(e.reason);
                rejected.push((e.reason, e.detail));
            }
            self.dead_letter_all("kafka", rejected, &m.topic, &m.payload)
                .await;
            if !self.engine.transitions.is_empty() {
                self.flush(now).await;
            }
        }
    }

    /// A matched ticket: one reading of the site's ticket device.
    pub(super) async fn on_ticket(&mut self, site: &str, concern: &str, received_at: Ts) {
        let before = self.counts();
        let now = now_ms();
        let device = crate::event::device_of(site);
        let metric = format!("tickets.{concern}");
        // tickets reach yujing late (the hotline centre forwards them): one received before
        // the windows still open counts in the newest of them instead of being lost as late
        let received_at = received_at.max(self.engine.watermark());
        let r = crate::event::ReadingRef {
            site: Some(site),
            device: &device,
            metric: &metric,
            value: 1.0,
            ts: received_at,
            arrival: now,
            source: self.source_hotline,
        };
        if let Err(reason) = feed(
            &mut self.engine,
            &mut self.latest,
            &mut self.archive,
            &r,
            "hotline",
        ) {
            if reason == RejectReason::Late {
                self.metrics.late.inc();
            }
            let detail = format!("{device} {metric} at {received_at}");
            self.dead
                .write("hotline", reason, &detail, site, metric.as_bytes())
                .await;
        }
        self.deferred("hotline", site, b"").await;
        if !self.engine.transitions.is_empty() {
            self.flush(now).await;
        }
        self.attribute("hotline", before);
    }

    /// A camera's stream state, health, or metadata document.
    pub(super) async fn on_camera(&mut self, item: CameraItem) {
        let before = self.counts();
        let cfg = self.engine.config.clone();
        let now = now_ms();
        match item {
            CameraItem::Link { camera, up, error } => {
                let Some(dev) = cfg.registry.device(&camera) else {
                    return;
                };
                let was = self.streams.get(&dev).is_some_and(|s| s.0);
                if was && !up {
                    self.metrics.camera_reconnects.inc();
                }
                if was != up || !self.streams.contains_key(&dev) {
                    self.streams.insert(dev, (up, now, error));
                } else if let Some(s) = self.streams.get_mut(&dev) {
                    s.2 = error;
                }
                let playing = self.streams.values().filter(|s| s.0).count();
                self.metrics.cameras_up.set(playing as i64);
            }
            CameraItem::Health { camera, at, health } => {
                let values = [
                    ("fps", health.fps),
                    ("bitrate_kbps", health.bitrate_kbps),
                    ("frame_gap_ms", health.frame_gap_ms),
                    ("stalled", if health.stalled { 1.0 } else { 0.0 }),
                ];
                for (metric, value) in values {
                    self.camera_reading(&camera, metric, value, at, now).await;
                }
                let held = cfg
                    .registry
                    .device(&camera)
                    .and_then(|d| self.states.get(&d))
                    .cloned()
                    .unwrap_or_default();
                for (metric, value) in held {
                    self.camera_reading(&camera, &metric, value, at, now).await;
                }
            }
            CameraItem::Metadata { camera, at, xml } => {
                match decode::onvif::parse(&xml) {
                    Ok(m) => {
                        let dev = cfg.registry.device(&camera);
                        let declared: Vec<String> = dev
                            .map(|d| {
                                cfg.registry.devices[d as usize]
                                    .metrics
                                    .iter()
                                    .filter(|m| m.ends_with("_count"))
                                    .cloned()
                                    .collect()
                            })
                            .unwrap_or_default();
                        for f in m.frames {
                            self.metrics
                                .camera_events
                                .with_label_values(&["frame"])
                                .inc();
                            let ts = f.utc.unwrap_or(at);
                            // a class the camera counts but does not see now is a count of 0
                            for d in &declared {
                                if !f.counts.iter().any(|(m, _)| m == d) {
                                    self.camera_reading(&camera, d, 0.0, ts, now).await;
                                }
                            }
                            for (metric, n) in &f.counts {
                                self.camera_reading(&camera, metric, f64::from(*n), ts, now)
                                    .await;
                            }
                        }
                        for e in m.events {
                            self.metrics
                                .camera_events
                                .with_label_values(&["event"])
                                .inc();
                            let ts = e.utc.unwrap_or(at);
                            let metric = e.metric();
                            let value = e.value();
                            self.camera_reading(&camera, &metric, value, ts, now).await;
                            if let Some(d) = dev {
                                let st = self.states.entry(d).or_default();
                                st.retain(|(m, _)| *m != metric);
                                // a property event holds a state; a pulse (no operation) does not
                                if matches!(
                                    e.operation.as_deref(),
                                    Some("Initialized") | Some("Changed")
                                ) {
                                    st.push((metric.clone(), value));
                                }
                            }
                            let mut props = serde_json::Map::new();
                            for (k, v) in e.source.iter().chain(&e.data) {
                                props.insert(k.clone(), serde_json::Value::String(v.clone()));
                            }
                            self.remember(
                                &camera,
                                ts,
                                EventView {
                                    topic: e.topic,
                                    metric,
                                    value,
                                    ts: format_ts(ts, cfg.settings.timezone),
                                    source: "onvif",
                                    properties: props,
                                },
                            );
                        }
                    }
                    Err(e) => {
                        self.count_reject(e.reason);
                        self.dead
                            .write("camera", e.reason, &e.detail, &camera, &xml)
                            .await;
                    }
                }
            }
        }
        if !self.engine.transitions.is_empty() {
            self.flush(now).await;
        }
        self.attribute("camera", before);
    }

    /// Feed one camera reading to the engine (source `camera`).
    async fn camera_reading(&mut self, camera: &str, metric: &str, value: f64, ts: Ts, now: Ts) {
        // in a cluster every instance watches every camera; the one that has the camera's site
        // counts its readings (they are not in Kafka: a takeover loses at most the readings
        // since the site's last checkpoint, and the new owner is watching already)
        if self.cluster.is_some() {
            let reg = &self.engine.config.registry;
            let site = reg.device(camera).map(|d| reg.devices[d as usize].site);
            if site.is_some_and(|s| !self.engine.owns(s)) {
                return;
            }
        }
        let r = crate::event::ReadingRef {
            site: None,
            device: camera,
            metric,
            value,
            ts,
            arrival: now,
            source: self.source_camera,
        };
        if let Err(reason) = feed(
            &mut self.engine,
            &mut self.latest,
            &mut self.archive,
            &r,
            "camera",
        ) {
            if reason == RejectReason::Late {
                self.metrics.late.inc();
            }
            let detail = format!("{camera} {metric} at {ts}");
            self.dead
                .write(
                    "camera",
                    reason,
                    &detail,
                    camera,
                    format!("{metric}={value}").as_bytes(),
                )
                .await;
        }
        self.deferred("camera", camera, b"").await;
    }

    /// Keep a camera event for the site view.
    fn remember(&mut self, camera: &str, ts: Ts, e: EventView) {
        let Some(dev) = self.engine.config.registry.device(camera) else {
            return;
        };
        let q = self.recent.entry(dev).or_default();
        q.push_back((ts, e));
        while q.len() > RECENT_EVENTS {
            q.pop_front();
        }
    }

    /// An edge AI box's event on `.../cameras/{camera}/events`.
    async fn on_edge_event(&mut self, camera: &str, m: &Message) -> bool {
        let cfg = self.engine.config.clone();
        if cfg.registry.device(camera).is_none() {
            self.reject(
                RejectReason::UnknownDevice,
                &format!("camera `{camera}` is not bound to any site in sites.yaml"),
                m,
            )
            .await;
            return true;
        }
        let tz = cfg.settings.timezone;
        let (e, ts) = match decode::onvif::EdgeEvent::parse(&m.payload, tz) {
            Ok(x) => x,
            Err(e) => {
                self.reject(e.reason, &e.detail, m).await;
                return true;
            }
        };
        let now = now_ms();
        self.metrics
            .camera_events
            .with_label_values(&["edge"])
            .inc();
        let src = self.source;
        let mut readings: Vec<(String, f64)> = Vec::new();
        if let Some(ev) = &e.event {
            readings.push((decode::onvif::event_metric(ev), e.value.unwrap_or(1.0)));
        }
        for (class, n) in e.counts.iter().flatten() {
            readings.push((decode::onvif::class_metric(class), *n));
        }
        if self.cluster.is_some() {
            // to the Kafka partition of the camera's site, like any reading in a cluster
            let dev = cfg.registry.device(camera).unwrap_or(0) as usize;
            let site = &cfg.registry.sites[cfg.registry.devices[dev].site as usize].id;
            let passed: Vec<(Ts, String, f64)> =
                readings.into_iter().map(|(m, v)| (ts, m, v)).collect();
            return self.pass_on(site, camera, &passed, "mqtt").await;
        }
        for (metric, value) in &readings {
            let r = crate::event::ReadingRef {
                site: None,
                device: camera,
                metric,
                value: *value,
                ts,
                arrival: now,
                source: src,
            };
            if let Err(reason) = feed(
                &mut self.engine,
                &mut self.latest,
                &mut self.archive,
                &r,
                "mqtt",
            ) {
                if reason == RejectReason::Late {
                    self.metrics.late.inc();
                }
                let detail = format!("{camera} {metric} at {ts}");
                self.dead
                    .write("mqtt", reason, &detail, &m.topic, &m.payload)
                    .await;
            }
        }
        self.deferred("mqtt", &m.topic.clone(), &m.payload.clone())
            .await;
        if let (Some(ev), Some((metric, value))) = (&e.event, readings.first()) {
            self.remember(
                camera,
                ts,
                EventView {
                    topic: ev.clone(),
                    metric: metric.clone(),
                    value: *value,
                    ts: format_ts(ts, tz),
                    source: "edge",
                    properties: e.properties.clone(),
                },
            );
        }
        if !self.engine.transitions.is_empty() {
            self.flush(now).await;
        }
        true
    }
}

/// An HJ 212 packet or data segment with the value of its `PW=` field replaced by `***`: dead
/// letters (file, MQTT and Kafka topics) never carry a monitor's password.
pub(crate) fn redact_pw(data: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    // every one: a packet may repeat the field, and a password change (CN 1072) carries
    // `NewPW=` in its CP
    if memchr::memmem::find(data, b"PW=").is_none() {
        return std::borrow::Cow::Borrowed(data);
    }
    let mut out = Vec::with_capacity(data.len());
    let mut rest = data;
    while let Some(at) = memchr::memmem::find(rest, b"PW=") {
        let from = at + 3;
        out.extend_from_slice(&rest[..from]);
        out.extend_from_slice(b"***");
        let to = rest[from..]
            .iter()
            .position(|b| matches!(b, b';' | b'&' | b',' | b'\r' | b'\n'))
            .map_or(rest.len(), |n| from + n);
        rest = &rest[to..];
    }
    out.extend_from_slice(rest);
    std::borrow::Cow::Owned(out)
}

/// Compare two secrets in time that does not depend on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_dead_letters() {
        let p = b"##0101QN=1;ST=32;CN=2011;PW=123456;MN=ABC;Flag=5;CP=&&a=1&&1C80\r\n";
        let r = redact_pw(p);
        assert_eq!(
            &*r,
            &b"##0101QN=1;ST=32;CN=2011;PW=***;MN=ABC;Flag=5;CP=&&a=1&&1C80\r\n"[..]
        );
        assert_eq!(&*redact_pw(b"no password here"), b"no password here");
        assert_eq!(&*redact_pw(b"PW=secret"), b"PW=***");
        assert_eq!(
            &*redact_pw(b"PW=1;MN=A;PW=2;CN=1072;CP=&&NewPW=654321&&"),
            b"PW=***;MN=A;PW=***;CN=1072;CP=&&NewPW=***&&"
        );
    }

    #[test]
    fn secrets_compare_equal_only_when_equal() {
        assert!(constant_time_eq(b"123456", b"123456"));
        assert!(!constant_time_eq(b"123456", b"123457"));
        assert!(!constant_time_eq(b"123456", b"1234567"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
