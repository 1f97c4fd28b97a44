//! Every metric the service exports, defined in one place under one naming scheme:
//! `yujing_<area>_<noun>_<unit>[_total]`, with low-cardinality labels (`connector`, `reason`,
//! `rule`, `level`, `channel`, `outcome`, never a device id).

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// Readings taken from each connector.
    pub readings: IntCounterVec,
    /// Input rejected, by connector and reason (also in the dead-letter log).
    pub rejected: IntCounterVec,
    /// Readings after their windows were final (also counted under `rejected{reason="late"}`).
    pub late: IntCounter,
    /// Window series held in memory.
    pub window_series: IntGauge,
    /// Windows evaluated against their rules.
    pub evaluations: IntCounter,
    /// Warning transitions, by rule, level and kind.
    pub transitions: IntCounterVec,
    /// Deliveries by channel type and outcome (delivered, failed, dead).
    pub deliveries: IntCounterVec,
    /// From storing a transition to its delivery, by channel type.
    pub delivery_latency: HistogramVec,
    /// From a reading's arrival to its transition being stored.
    pub detect_latency: Histogram,
    /// Deliveries waiting or given up, by state.
    pub outbox: IntGaugeVec,
    /// Configuration reloads by result (ok, error).
    pub reloads: IntCounterVec,
    /// Connection state per connector (1 up, 0 down).
    pub connector_up: IntGaugeVec,
    /// API requests refused, by status.
    pub api_refused: IntCounterVec,
    /// HJ 212 packets by result (ok, not_data, crc, length, malformed, too_long, unknown_mn).
    pub hj212_packets: IntCounterVec,
    /// HJ 212 monitor connections open.
    pub hj212_connections: IntGauge,
    /// RTSP cameras streaming now, and cameras configured.
    pub cameras_up: IntGauge,
    pub cameras: IntGauge,
    /// Camera streams lost (each is reconnected with backoff).
    pub camera_reconnects: IntCounter,
    /// ONVIF metadata documents and edge-box events taken, by kind (frame, event).
    pub camera_events: IntCounterVec,
    /// 12345 tickets by outcome (new, updated, flagged).
    pub tickets: IntCounterVec,
    /// Partitions of the readings topic this instance has (`[cluster]`).
    pub cluster_partitions: IntGauge,
    /// Checkpoints of the engine's state, by result (saved, failed).
    pub checkpoints: IntCounterVec,
    /// Readings written to the archive as Parquet.
    pub archived: IntCounter,
    /// Archive failures, by stage (record, seal, export, expire).
    pub archive_errors: IntCounterVec,
    /// SQL queries of the API, by outcome (ok, refused, busy, timeout, killed, cancelled,
    /// failed).
    pub queries: IntCounterVec,
    /// SQL queries running now (their threads, whether or not their client still waits).
    pub queries_running: IntGauge,
    /// HTTP connections open.
    pub http_connections: IntGauge,
    /// Connections closed at once, by listener (http, hj212) and reason (cap, per_address,
    /// locked_out, first_packet).
    pub connections_refused: IntCounterVec,
    /// Dead-letter records not written to the file because their peer sent too many, by
    /// connector (each still counted under `rejected`).
    pub dead_letters_suppressed: IntCounterVec,
    /// Dashboard logins by outcome (ok, failed, limited).
    pub logins: IntCounterVec,
}

/// From storing a transition to its delivery, by channel type.
fn delivery_latency(registry: &Registry) -> HistogramVec {
    register(
        registry,
        HistogramVec::new(
            HistogramOpts::new(
                "yujing_dispatch_delivery_latency_seconds",
                "From storing a transition to its delivery",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
            &["channel"],
        ),
    )
}

/// From the arrival of the reading that closed a window to its transition being stored.
fn detect_latency(registry: &Registry) -> Histogram {
    register(registry, Histogram::with_opts(
            HistogramOpts::new(
                "yujing_engine_detect_latency_seconds",
                "From the arrival of the reading that closed a window to its transition being stored",
            )
            .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]),
        ))
}

/// A collector registered with the registry.
fn register<T: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    made: Result<T, prometheus::Error>,
) -> T {
    let c = must(made);
    must(registry.register(Box::new(c.clone())));
    c
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // the definitions below are static: a failure is a programming error caught by the tests
    r.expect("metric definition")
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            register(&registry, IntCounterVec::new(Opts::new(name, help), labels))
        };
        let gauge = |name: &str, help: &str| register(&registry, IntGauge::new(name, help));
        let m = Metrics {
            registry: registry.clone(),
            readings: counter_vec(
            "yujing_input_readings_total",
            "Readings taken, by connector",
            &["connector"],
        ),
            rejected: counter_vec(
            "yujing_input_rejected_total",
            "Input rejected and dead-lettered, by connector and reason",
            &["connector", "reason"],
        ),
            transitions: counter_vec(
            "yujing_warnings_transitions_total",
            "Warning transitions stored, by rule, level and kind",
            &["rule", "level", "kind"],
        ),
            deliveries: counter_vec(
            "yujing_dispatch_deliveries_total",
            "Delivery attempts by channel type and outcome",
            &["channel", "outcome"],
        ),
            reloads: counter_vec(
            "yujing_config_reloads_total",
            "Configuration reloads by result",
            &["result"],
        ),
            api_refused: counter_vec(
            "yujing_api_refused_total",
            "API requests refused, by HTTP status",
            &["status"],
        ),
            late: register(&registry, IntCounter::new(
            "yujing_engine_late_readings_total",
            "Readings that arrived after their windows were final",
        )),
            evaluations: register(&registry, IntCounter::new(
            "yujing_engine_rule_evaluations_total",
            "Final windows evaluated against their rules",
        )),
            window_series: register(&registry, IntGauge::new(
            "yujing_engine_window_series",
            "Window series held in memory",
        )),
            delivery_latency: delivery_latency(&registry),
            detect_latency: detect_latency(&registry),
            outbox: register(&registry, IntGaugeVec::new(
            Opts::new(
                "yujing_dispatch_outbox_deliveries",
                "Deliveries in the outbox, by state",
            ),
            &["state"],
        )),
            connector_up: register(&registry, IntGaugeVec::new(
            Opts::new(
                "yujing_connector_up",
                "Connection state per connector (1 up, 0 down)",
            ),
            &["connector"],
        )),
            hj212_packets: counter_vec(
            "yujing_hj212_packets_total",
            "HJ 212 packets received, by result",
            &["result"],
        ),
            hj212_connections: gauge(
            "yujing_hj212_connections",
            "HJ 212 monitor connections open",
        ),
            cameras_up: gauge("yujing_cameras_up", "RTSP cameras streaming now"),
            cameras: gauge("yujing_cameras", "RTSP cameras configured"),
            camera_reconnects: register(&registry, IntCounter::new(
            "yujing_camera_reconnects_total",
            "Camera streams lost and reconnected",
        )),
            camera_events: counter_vec(
            "yujing_camera_events_total",
            "Camera analytics taken (ONVIF frames, events; edge-box events), by kind",
            &["kind"],
        ),
            tickets: counter_vec(
            "yujing_hotline_tickets_total",
            "12345 tickets taken, by outcome (new, updated, flagged)",
            &["outcome"],
        ),
            cluster_partitions: gauge(
            "yujing_cluster_partitions",
            "Partitions of the Kafka readings topic this instance has ([cluster])",
        ),
            checkpoints: counter_vec(
            "yujing_checkpoints_total",
            "Checkpoints of the engine's window and alert state in the store, by result (saved, failed)",
            &["result"],
        ),
            archived: register(&registry, IntCounter::new(
            "yujing_archive_readings_total",
            "Readings written to the history archive as Parquet",
        )),
            archive_errors: counter_vec(
            "yujing_archive_errors_total",
            "History archive failures, by stage (record, seal, export, expire)",
            &["stage"],
        ),
            queries: counter_vec(
            "yujing_api_queries_total",
            "SQL queries over the archive through the API, by outcome (ok, refused, busy, timeout, killed, cancelled, failed)",
            &["outcome"],
        ),
            queries_running: gauge(
            "yujing_api_queries_running",
            "SQL queries of the API running now (a query's thread ends before its permit goes back)",
        ),
            http_connections: gauge("yujing_http_connections", "HTTP connections open"),
            connections_refused: counter_vec(
            "yujing_connections_refused_total",
            "Connections closed on arrival or before their first valid request or packet, by listener and reason",
            &["listener", "reason"],
        ),
            dead_letters_suppressed: counter_vec(
            "yujing_dead_letters_suppressed_total",
            "Rejected inputs not written to the dead-letter file as their peer sent too many (still counted under yujing_input_rejected_total)",
            &["connector"],
        ),
            logins: counter_vec(
            "yujing_api_logins_total",
            "Dashboard logins by outcome (ok, failed, limited)",
            &["outcome"],
        ),
        };
        for r in ["saved", "failed"] {
            m.checkpoints.with_label_values(&[r]);
        }
        for s in ["record", "seal", "export", "expire"] {
            m.archive_errors.with_label_values(&[s]);
        }
        m
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_follows_the_naming_scheme() {
        let m = Metrics::new();
        m.readings.with_label_values(&["mqtt"]).inc();
        m.rejected.with_label_values(&["mqtt", "malformed"]).inc();
        m.transitions
            .with_label_values(&["r", "red", "raise"])
            .inc();
        m.deliveries
            .with_label_values(&["webhook", "delivered"])
            .inc();
        m.delivery_latency
            .with_label_values(&["webhook"])
            .observe(0.01);
        m.outbox.with_label_values(&["pending"]).set(1);
        m.reloads.with_label_values(&["ok"]).inc();
        m.connector_up.with_label_values(&["mqtt"]).set(1);
        m.api_refused.with_label_values(&["401"]).inc();
        let text = m.render();
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let name = line.split_whitespace().nth(2).unwrap_or("");
            assert!(name.starts_with("yujing_"), "{name}");
            if line.ends_with("counter") {
                assert!(name.ends_with("_total"), "{name}");
            }
        }
        assert!(
            text.contains("yujing_input_rejected_total{connector=\"mqtt\",reason=\"malformed\"} 1")
        );
    }

    /// The Grafana dashboard and the alerting rules in deploy/ name only metrics that exist, and
    /// the dashboard shows every one.
    #[test]
    fn deploy_files_follow_the_metrics() {
        let m = Metrics::new();
        // a labelled family is exported once it has a series: give each one
        for v in [
            &m.readings,
            &m.reloads,
            &m.api_refused,
            &m.hj212_packets,
            &m.camera_events,
            &m.tickets,
            &m.queries,
            &m.dead_letters_suppressed,
            &m.logins,
        ] {
            v.with_label_values(&["x"]).inc();
        }
        m.connections_refused.with_label_values(&["x", "y"]).inc();
        m.rejected.with_label_values(&["x", "y"]).inc();
        m.deliveries.with_label_values(&["x", "y"]).inc();
        m.transitions.with_label_values(&["x", "y", "z"]).inc();
        m.delivery_latency.with_label_values(&["x"]).observe(1.0);
        m.outbox.with_label_values(&["x"]).set(1);
        m.connector_up.with_label_values(&["x"]).set(1);
        let names: std::collections::BTreeSet<String> = m
            .registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        let used = |text: &str| -> std::collections::BTreeSet<String> {
            let mut out = std::collections::BTreeSet::new();
            let mut rest = text;
            while let Some(i) = rest.find("yujing_") {
                let tail = &rest[i..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                let n = &tail[..end];
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| n.strip_suffix(s))
                    .unwrap_or(n);
                out.insert(base.to_string());
                rest = &tail[end..];
            }
            out
        };
        let dashboard = used(include_str!("../deploy/grafana-yujing.json"));
        let alerts = used(include_str!("../deploy/alerts.yml"));
        for n in dashboard.iter().chain(&alerts) {
            assert!(
                names.contains(n),
                "deploy/ names `{n}`, which yujing does not export"
            );
        }
        for n in &names {
            assert!(
                dashboard.contains(n),
                "the Grafana dashboard does not show `{n}`"
            );
        }
    }
}
