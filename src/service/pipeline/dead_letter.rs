//! Rejected input, as JSON lines in a file (rotated by size) and optionally on an MQTT topic;
//! bad Kafka messages also go back to Kafka's dead-letter topic with the reason in headers.
//!
//! Every rejection is counted (`yujing_input_rejected_total`, by the caller). What reaches the
//! file and the MQTT topic is limited per peer (an HJ 212 address, an MQTT topic, a camera): a
//! burst of [`BURST`] records, then [`PER_SECOND`] a second; the records left out are counted
//! (`yujing_dead_letters_suppressed_total`) and the peer's next record says how many there were.
//! So a peer sending garbage as fast as it can costs a bounded number of lines, and the file's
//! size is bounded by its rotation. Log lines about rejections are rate-limited too (one per
//! reason per 10 s).

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
/// Peers whose budgets are remembered; beyond, those with a full budget are forgotten, and
/// then new peers share one budget.
const MAX_PEERS: usize = 4096;

/// One peer's budget of records.
struct Budget {
    tokens: f64,
    at: Instant,
    /// Records left out since its last one written.
    suppressed: u64,
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
    last_log: FxHashMap<&'static str, Instant>,
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
            last_log: FxHashMap::default(),
        })
    }

    /// Whether `peer` may write a record now; if so, how many it was denied before.
    fn admit(&mut self, peer: &str, now: Instant) -> Option<u64> {
        if !self.budgets.contains_key(peer) && self.budgets.len() >= MAX_PEERS {
            // forget the peers whose budget has refilled: they are quiet
            self.budgets.retain(|_, b| {
                b.suppressed > 0
                    || b.tokens + now.duration_since(b.at).as_secs_f64() * PER_SECOND < BURST
            });
        }
        let key = if self.budgets.contains_key(peer) || self.budgets.len() < MAX_PEERS {
            peer
        } else {
            "*"
        };
        let b = self.budgets.entry(key.to_string()).or_insert(Budget {
            tokens: BURST,
            at: now,
            suppressed: 0,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * PER_SECOND).min(BURST);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Some(std::mem::take(&mut b.suppressed))
        } else {
            b.suppressed += 1;
            None
        }
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
        let Some(before) = self.admit(topic, now) else {
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
        if self.written > 0 && self.written + n > self.max_bytes {
            if let Err(e) = self.rotate() {
                tracing::error!(error = %e, path = %self.path.display(), "cannot rotate the dead-letter file");
            }
        }
        match writeln!(self.file, "{line}").and_then(|()| self.file.flush()) {
            Ok(()) => self.written += n,
            Err(e) => tracing::error!(error = %e, "cannot write the dead-letter file"),
        }
    }

    /// `path` becomes `path.1`, `path.1` becomes `path.2`, ...; the oldest beyond `keep` goes.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        let numbered = |k: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{k}"));
            PathBuf::from(p)
        };
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
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.file = std::io::BufWriter::new(f);
        self.written = 0;
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
        assert!(l.len() <= BURST as usize + 3, "{}", l.len());
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
