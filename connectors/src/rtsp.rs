//! RTSP cameras (retina): keep a session to each camera, measure its video stream's health and
//! pass on its ONVIF metadata track. No video is decoded.
//!
//! Per camera: DESCRIBE, SETUP of the H.264 video stream and of the ONVIF metadata stream
//! (`application/vnd.onvif.metadata`) if it has one, PLAY; then every `health_every` a health
//! report (frame rate, bitrate, the longest gap between frames, lost packets, whether the stream
//! stalled) and each metadata document as it arrives. A stream that delivers nothing for
//! `stall_timeout` is torn down and reconnected, like a refused or closed connection, with
//! backoff. While a camera is down it sends no health reports: silence is what absence rules
//! watch. Credentials never appear in logs (the URL is logged without them).

use crate::Backoff;
use futures_util::StreamExt;
use retina::client::{
    Credentials, InitialTimestampPolicy, PlayOptions, SessionGroup, SessionOptions, SetupOptions,
    TcpTransportOptions, TeardownPolicy, Transport, UdpTransportOptions,
};
use retina::codec::CodecItem;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Clone, PartialEq)]
pub struct CameraConfig {
    pub id: String,
    /// `rtsp://host:port/path`, without credentials.
    pub url: url::Url,
    pub username: Option<String>,
    pub password: Option<String>,
    /// RTP over the RTSP connection (default) or over UDP.
    pub udp: bool,
    pub health_every: Duration,
    pub stall_timeout: Duration,
}

impl std::fmt::Debug for CameraConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraConfig")
            .field("id", &self.id)
            .field("url", &redact(&self.url).as_str())
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<secret>"))
            .field("udp", &self.udp)
            .field("health_every", &self.health_every)
            .field("stall_timeout", &self.stall_timeout)
            .finish()
    }
}

/// Health of a camera's video stream over one reporting period.
#[derive(Clone, Debug, PartialEq)]
pub struct Health {
    pub fps: f64,
    pub bitrate_kbps: f64,
    /// The longest time between two frames, in milliseconds.
    pub frame_gap_ms: f64,
    pub lost_packets: u64,
    /// Whether the stream stalled (a gap longer than the stall timeout) in this period.
    pub stalled: bool,
}

#[derive(Debug)]
pub enum CameraItem {
    /// The session is playing (`true`) or was lost (`false`, with why).
    Link {
        camera: Arc<str>,
        up: bool,
        error: Option<String>,
    },
    Health {
        camera: Arc<str>,
        /// Wall-clock time of the report (epoch ms).
        at: i64,
        health: Health,
    },
    /// One ONVIF metadata document (a `tt:MetadataStream`).
    Metadata {
        camera: Arc<str>,
        at: i64,
        xml: Vec<u8>,
    },
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Keep one camera's session until `stop`, reconnecting with backoff.
pub async fn run(cfg: CameraConfig, tx: mpsc::Sender<CameraItem>, stop: CancellationToken) {
    let camera: Arc<str> = cfg.id.as_str().into();
    let group = Arc::new(SessionGroup::default());
    let mut backoff = Backoff(0);
    let mut was_up = false;
    loop {
        let started = Instant::now();
        let res = tokio::select! {
            r = session(&cfg, &camera, &group, &tx) => r,
            _ = stop.cancelled() => break,
        };
        let error = match res {
            Ok(()) => "the camera ended the stream".to_string(),
            Err(e) => e,
        };
        if was_up || started.elapsed() > Duration::from_secs(10) {
            backoff = Backoff(0);
        }
        tracing::warn!(camera = %camera, url = %cfg.url, error = %error, "camera stream lost; reconnecting");
        let _ = tx
            .send(CameraItem::Link {
                camera: camera.clone(),
                up: false,
                error: Some(error),
            })
            .await;
        was_up = false;
        tokio::select! {
            _ = tokio::time::sleep(backoff.next().min(cfg.stall_timeout.max(Duration::from_secs(1)))) => {}
            _ = stop.cancelled() => break,
        }
    }
    // a clean TEARDOWN, if the camera still answers
    let _ = tokio::time::timeout(Duration::from_secs(2), group.await_teardown()).await;
}

async fn session(
    cfg: &CameraConfig,
    camera: &Arc<str>,
    group: &Arc<SessionGroup>,
    tx: &mpsc::Sender<CameraItem>,
) -> Result<(), String> {
    let limit = cfg.stall_timeout;
    let timed = |what: &'static str| move |_| format!("{what} timed out after {limit:?}");
    let creds = cfg.username.clone().map(|username| Credentials {
        username,
        password: cfg.password.clone().unwrap_or_default(),
    });
    let opts = SessionOptions::default()
        .creds(creds)
        .user_agent(format!("yujing/{}", env!("CARGO_PKG_VERSION")))
        .session_group(group.clone())
        .teardown(TeardownPolicy::Auto);
    let mut s = tokio::time::timeout(
        limit,
        retina::client::Session::describe(cfg.url.clone(), opts),
    )
    .await
    .map_err(timed("DESCRIBE"))?
    .map_err(|e| e.to_string())?;
    let video = s
        .streams()
        .iter()
        .position(|st| st.media() == "video")
        .ok_or("the camera offers no video stream")?;
    let meta = s.streams().iter().position(|st| {
        st.media() == "application" && st.encoding_name().starts_with("vnd.onvif.metadata")
    });
    for i in std::iter::once(video).chain(meta) {
        let transport = if cfg.udp {
            Transport::Udp(UdpTransportOptions::default())
        } else {
            Transport::Tcp(TcpTransportOptions::default())
        };
        tokio::time::timeout(
            limit,
            s.setup(i, SetupOptions::default().transport(transport)),
        )
        .await
        .map_err(timed("SETUP"))?
        .map_err(|e| e.to_string())?;
    }
    let playing = tokio::time::timeout(
        limit,
        s.play(PlayOptions::default().initial_timestamp(InitialTimestampPolicy::Permissive)),
    )
    .await
    .map_err(timed("PLAY"))?
    .map_err(|e| e.to_string())?;
    let mut demuxed = playing.demuxed().map_err(|e| e.to_string())?;
    tracing::info!(camera = %camera, url = %cfg.url, metadata = meta.is_some(), "camera stream playing");
    let _ = tx
        .send(CameraItem::Link {
            camera: camera.clone(),
            up: true,
            error: None,
        })
        .await;

    let mut period = Period::new();
    let mut report = tokio::time::interval(cfg.health_every);
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    report.tick().await;
    let mut last_item = Instant::now();
    loop {
        let item = tokio::select! {
            i = demuxed.next() => i,
            _ = report.tick() => {
                if last_item.elapsed() >= limit {
                    return Err(format!("stalled: nothing for {limit:?}"));
                }
                if period.frames > 0 {
                    let health = period.take();
                    if tx.send(CameraItem::Health { camera: camera.clone(), at: now_ms(), health }).await.is_err() {
                        return Ok(());
                    }
                } else {
                    // connected but no video: not healthy, and no report (absence notices)
                    period.stalled = true;
                }
                continue;
            }
        };
        let item = match item {
            None => return Err("the camera closed the connection".into()),
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(i)) => i,
        };
        last_item = Instant::now();
        match item {
            CodecItem::VideoFrame(f) if f.stream_id() == video => {
                period.frame(f.data().len(), u64::from(f.loss() as u32), limit);
            }
            CodecItem::MessageFrame(m) if Some(m.stream_id()) == meta => {
                let xml = m.data().to_vec();
                if tx
                    .send(CameraItem::Metadata {
                        camera: camera.clone(),
                        at: now_ms(),
                        xml,
                    })
                    .await
                    .is_err()
                {
                    return Ok(());
                }
            }
            _ => {}
        }
    }
}

/// Frame statistics of one reporting period.
struct Period {
    start: Instant,
    frames: u64,
    bytes: u64,
    lost: u64,
    max_gap: Duration,
    last_frame: Option<Instant>,
    stalled: bool,
}

impl Period {
    fn new() -> Period {
        Period {
            start: Instant::now(),
            frames: 0,
            bytes: 0,
            lost: 0,
            max_gap: Duration::ZERO,
            last_frame: None,
            stalled: false,
        }
    }

    fn frame(&mut self, bytes: usize, lost: u64, stall: Duration) {
        let now = Instant::now();
        if let Some(prev) = self.last_frame {
            let gap = now - prev;
            self.max_gap = self.max_gap.max(gap);
            if gap >= stall {
                self.stalled = true;
            }
        }
        self.last_frame = Some(now);
        self.frames += 1;
        self.bytes += bytes as u64;
        self.lost += lost;
    }

    /// The period's health; the next period starts now.
    fn take(&mut self) -> Health {
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        let h = Health {
            fps: self.frames as f64 / secs,
            bitrate_kbps: self.bytes as f64 * 8.0 / secs / 1000.0,
            frame_gap_ms: self.max_gap.as_secs_f64() * 1000.0,
            lost_packets: self.lost,
            stalled: self.stalled,
        };
        let last = self.last_frame;
        *self = Period::new();
        self.last_frame = last;
        h
    }
}

/// The URL as it may be logged: without user and password.
pub fn redact(url: &url::Url) -> url::Url {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn period_statistics() {
        let mut p = Period::new();
        for _ in 0..10 {
            p.frame(1000, 0, Duration::from_secs(5));
        }
        p.frame(1000, 3, Duration::from_secs(5));
        let h = p.take();
        assert_eq!(h.lost_packets, 3);
        assert!(h.fps > 0.0 && h.bitrate_kbps > 0.0);
        assert!(!h.stalled);
        assert_eq!(p.frames, 0);
        assert!(
            p.last_frame.is_some(),
            "the gap to the next frame spans periods"
        );
    }

    #[test]
    fn credentials_are_not_logged() {
        let u = url::Url::parse("rtsp://admin:secret@10.0.0.5:554/Streaming/Channels/101").unwrap();
        assert_eq!(
            redact(&u).as_str(),
            "rtsp://10.0.0.5:554/Streaming/Channels/101"
        );
    }
}
