//! Rejected input, as JSON lines in a file (rotated by size) and optionally on an MQTT topic;
//! bad Kafka messages also go back to Kafka's dead-letter topic with the reason in headers.
//!
//! Every rejection is counted (`yujing_input_rejected_total`, by the caller). What reaches the
//! file and the MQTT topic is limited per peer (an HJ 212 address, an MQTT topic, a camera): a
//! burst of [`BURST`] records, then [`PER_SECOND`] a second; and per connector, whatever the
//! peers (a sender can make up MQTT topics): [`CONNECTOR_BURST`], then [`CONNECTOR_PER_SECOND`].
//! The records left out are counted (`yujing_dead_letters_suppressed_total`) and the peer's
//! next record says how many of its own there were. So garbage sent as fast as it can be costs
//! a bounded number of lines a second, and the file's size is bounded by its rotation. Log
//! lines about rejections are rate-limited too (one per reason per 10 s).

use crate::event::RejectReason;
use crate::store::now_ms;
use rustc_hash::FxHashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use yujing_connectors::mqtt::Publisher;

/// Records a peer may write at once.
pub const BURST: f64 = 50.0;
/// Records a peer may write a second, after its burst.
pub const PER_SECOND: f64 = 5.0;
/// Records a connector may write at once, whatever the peers, and a second after that.
pub const CONNECTOR_BURST: f64 = 500.0;
pub const CONNECTOR_PER_SECOND: f64 = 50.0;
/// Peers whose budgets are remembered; beyond, the quiet ones are forgotten, and then new peers
/// share one budget.
const MAX_PEERS: usize = 4096;
/// A peer quiet this long is forgotten when room is needed (its count of records left out
/// with it: they are in the metric).
const QUIET: Duration = Duration::from_secs(60);

/// One peer's budget of records.
struct Budget {
    tokens: f64,
    at: Instant,
    /// Records left out since its last one written.
    suppressed: u64,
}

impl Budget {
    fn full(burst: f64, now: Instant) -> Budget {
        Budget {
            tokens: burst,
            at: now,
            suppressed: 0,
        }
    }

    /// Take one record's worth, refilled at `rate` a second up to `burst`.
    fn take(&mut self, burst: f64, rate: f64, now: Instant) -> bool {
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub struct DeadLetter {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    /// Bytes in the current file.
    written: u64,
    max_bytes: u64,
    keep: u32,
    topic: Option<(Publisher, String)>,
    /// Kafka's dead-letter topic: bad Kafka messages go back to Kafka, the reason in headers.
    pub kafka: Option<(yujing_connectors::kafka::KafkaProducer, String)>,
    /// Counts the records the per-peer limit left out, by connector.
    pub suppressed: Option<prometheus::IntCounterVec>,
    budgets: FxHashMap<String, Budget>,
    connectors: FxHashMap<String, Budget>,
    last_log: FxHashMap<&'static str, Instant>,
    /// When rotating last failed (retried after a minute, logged once then).
    rotate_failed: Option<Instant>,
}

impl DeadLetter {
    /// Open (append to) the dead-letter file at `path`, rotated at `max_bytes` keeping `keep`
    /// older files (`path.1` the newest).
    pub fn open(
        path: &Path,
        max_bytes: u64,
        keep: u32,
        topic: Option<(Publisher, String)>,
    ) -> std::io::Result<DeadLetter> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let written = f.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(DeadLetter {
            path: path.to_path_buf(),
            file: std::io::BufWriter::new(f),
            written,
            max_bytes: max_bytes.max(4096),
            keep,
            topic,
            kafka: None,
            suppressed: None,
            budgets: FxHashMap::default(),
            connectors: FxHashMap::default(),
            last_log: FxHashMap::default(),
            rotate_failed: None,
        })
    }

    /// Whether `peer` of `connector` may write a record now; if so, how many of its own were
    /// left out before.
    fn admit(&mut self, connector: &str, peer: &str, now: Instant) -> Option<u64> {
        if !self.budgets.contains_key(peer) && self.budgets.len() >= MAX_PEERS {
            // forget the quiet peers
            self.budgets.retain(|_, b| {
                let quiet = now.duration_since(b.at);
                quiet < QUIET && b.tokens + quiet.as_secs_f64() * PER_SECOND < BURST
            });
        }
        // beyond that, the new peers of a connector share one budget
        let key = if self.budgets.contains_key(peer) || self.budgets.len() < MAX_PEERS {
            peer.to_string()
        } else {
            format!("*{connector}")
        };
        let b = self
            .budgets
            .entry(key)
            .or_insert_with(|| Budget::full(BURST, now));
        if !b.take(BURST, PER_SECOND, now) {
            b.suppressed += 1;
            return None;
        }
        let c = self
            .connectors
            .entry(connector.to_string())
            .or_insert_with(|| Budget::full(CONNECTOR_BURST, now));
        if !c.take(CONNECTOR_BURST, CONNECTOR_PER_SECOND, now) {
            b.suppressed += 1;
            return None;
        }
        Some(std::mem::take(&mut b.suppressed))
    }

    /// Record one rejected input (`topic`: where it came from: an MQTT topic, an HJ 212
    /// monitor's address, a camera, a Kafka topic).
    pub async fn write(
        &mut self,
        connector: &str,
        reason: RejectReason,
        detail: &str,
        topic: &str,
        payload: &[u8],
    ) {
        if connector == "kafka" {
            if let Some((p, t)) = &self.kafka {
                let headers = [
                    ("yujing-reason", reason.as_str()),
                    ("yujing-detail", detail),
                    ("yujing-source-topic", topic),
                ];
                if let Err(e) = p.send(t, topic, payload, &headers).await {
                    tracing::error!(error = %e, "cannot write to the Kafka dead-letter topic");
                }
            }
        }
        let now = Instant::now();
        let Some(before) = self.admit(connector, topic, now) else {
            if let Some(c) = &self.suppressed {
                c.with_label_values(&[connector]).inc();
            }
            return;
        };
        let shown = &payload[..payload.len().min(4096)];
        let mut line = serde_json::json!({
            "at": now_ms(),
            "connector": connector,
            "reason": reason.as_str(),
            "detail": detail,
            "topic": topic,
            "payload": String::from_utf8_lossy(shown),
            "payload_bytes": payload.len(),
        });
        if before > 0 {
            line["suppressed_before"] = before.into();
        }
        let line = line.to_string();
        self.append(&line);
        if let Some((p, t)) = &self.topic {
            let _ = p.publish(t, line.into_bytes()).await;
        }
        let due = self
            .last_log
            .get(reason.as_str())
            .is_none_or(|t| now.duration_since(*t) >= Duration::from_secs(10));
        if due {
            self.last_log.insert(reason.as_str(), now);
            tracing::warn!(connector, reason = reason.as_str(), detail, topic, "input rejected (dead-lettered; further ones for this reason are counted, logged at most every 10 s)");
        }
    }

    /// One line, flushed (what /metrics counts is already in the file), the file rotated first
    /// if the line would take it past its size.
    fn append(&mut self, line: &str) {
        let n = line.len() as u64 + 1;
        let retry = self
            .rotate_failed
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(60));
        if self.written > 0 && self.written + n > self.max_bytes && retry {
            match self.rotate() {
                Ok(()) => self.rotate_failed = None,
                Err(e) => {
                    // logged once a minute at most; the file goes on growing meanwhile
                    self.rotate_failed = Some(Instant::now());
                    tracing::error!(error = %e, path = %self.path.display(), "cannot rotate the dead-letter file (tried again in a minute)");
                }
            }
        }
        match writeln!(self.file, "{line}").and_then(|()| self.file.flush()) {
            Ok(()) => self.written += n,
            Err(e) => tracing::error!(error = %e, "cannot write the dead-letter file"),
        }
    }

    /// `path` becomes `path.1`, `path.1` becomes `path.2`, ...; the oldest beyond `keep` goes.
    /// Whatever happens, writing goes on in a file opened anew at `path`.
    fn rotate(&mut self) -> std::io::Result<()> {
        let _ = self.file.flush();
        let moved = self.shift();
        // a new file at `path` (also when it was moved away by someone else)
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.written = f.metadata().map(|m| m.len()).unwrap_or(0);
        self.file = std::io::BufWriter::new(f);
        moved
    }

    fn shift(&self) -> std::io::Result<()> {
        let numbered = |k: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{k}"));
            PathBuf::from(p)
        };
        if !self.path.exists() {
            return Ok(());
        }
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(numbered(self.keep));
            for k in (1..self.keep).rev() {
                let from = numbered(k);
                if from.exists() {
                    std::fs::rename(&from, numbered(k + 1))?;
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        Ok(())
    }

    pub fn flush(&mut self) {
        if let Err(e) = self.file.flush() {
            tracing::error!(error = %e, "cannot write the dead-letter file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(p: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    #[tokio::test]
    async fn a_flooding_peer_gets_a_burst_then_a_trickle_and_the_count_of_the_rest() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("dl.jsonl");
        let mut d = DeadLetter::open(&path, 64 << 20, 2, None).expect("open");
        let c = prometheus::IntCounterVec::new(prometheus::Opts::new("s", "s"), &["connector"])
            .expect("counter");
        d.suppressed = Some(c.clone());
        for _ in 0..1_000 {
            d.write("hj212", RejectReason::Malformed, "x", "10.0.0.66", b"#")
                .await;
        }
        // another peer is not held back by the first
        d.write("hj212", RejectReason::Malformed, "x", "10.0.0.7", b"ok")
            .await;
        let l = lines(&path);
        assert!(l.len() <= BURST as usize + 20, "{}", l.len());
        assert_eq!(l.last().expect("line")["topic"], "10.0.0.7");
        let written_flood = l.len() as u64 - 1;
        assert_eq!(
            c.with_label_values(&["hj212"]).get() + written_flood,
            1_000,
            "every record is written or counted"
        );
        // once its budget refills, its next record says how many were left out
        for b in d.budgets.values_mut() {
            b.at -= Duration::from_secs(1);
        }
        d.write("hj212", RejectReason::Malformed, "x", "10.0.0.66", b"#")
            .await;
        let last = lines(&path).pop().expect("line");
        assert_eq!(
            last["suppressed_before"].as_u64(),
            Some(c.with_label_values(&["hj212"]).get())
        );
    }

    #[tokio::test]
    async fn made_up_peers_share_their_connectors_budget() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("dl.jsonl");
        let mut d = DeadLetter::open(&path, 64 << 20, 2, None).expect("open");
        for i in 0..5_000 {
            d.write(
                "mqtt",
                RejectReason::UnknownDevice,
                "x",
                &format!("yujing/sensors/s/made-up-{i}"),
                b"{}",
            )
            .await;
        }
        let n = lines(&path).len();
        assert!(
            n <= CONNECTOR_BURST as usize + 100,
            "{n} lines for 5,000 made-up topics"
        );
        // another connector has its own
        d.write("hj212", RejectReason::Malformed, "x", "10.0.0.1", b"#")
            .await;
        assert_eq!(lines(&path).len(), n + 1);
    }

    #[tokio::test]
    async fn a_file_moved_away_is_made_anew_and_rotation_goes_on() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("dl.jsonl");
        let mut d = DeadLetter::open(&path, 4096, 2, None).expect("open");
        d.write("mqtt", RejectReason::Malformed, "x", "t/0", &[b'a'; 100])
            .await;
        // logrotate, or an administrator, moved it
        std::fs::rename(&path, dir.path().join("elsewhere.jsonl")).expect("move");
        for i in 1..100 {
            d.write(
                "mqtt",
                RejectReason::Malformed,
                "x",
                &format!("t/{i}"),
                &[b'a'; 100],
            )
            .await;
        }
        assert!(path.exists(), "a new file where the old one was");
        assert!(std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) <= 4096);
        assert_eq!(lines(&path).pop().expect("line")["topic"], "t/99");
    }

    #[tokio::test]
    async fn the_file_is_rotated_by_size_keeping_so_many() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("dl.jsonl");
        let mut d = DeadLetter::open(&path, 4096, 2, None).expect("open");
        for i in 0..300 {
            // distinct peers: no rate limit in the way
            d.write(
                "mqtt",
                RejectReason::Malformed,
                "x",
                &format!("t/{i}"),
                &[b'a'; 100],
            )
            .await;
        }
        d.flush();
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert!(size(&path) <= 4096);
        let one = PathBuf::from(format!("{}.1", path.display()));
        let two = PathBuf::from(format!("{}.2", path.display()));
        let three = PathBuf::from(format!("{}.3", path.display()));
        assert!(size(&one) > 3000 && size(&one) <= 4096);
        assert!(size(&two) > 3000);
        assert!(!three.exists(), "only two older files are kept");
        // the newest record is in the current file
        let last = lines(&path).pop().expect("line");
        assert_eq!(last["topic"], "t/299");
    }
}
