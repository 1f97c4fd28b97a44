//! The running service as the API sees it, and the only way the API reaches it: the requests it
//! sends the pipeline (which owns the engine), the views the pipeline answers with, the live
//! events it streams, the last reload's result, whether the inputs are ready, and where a ticket
//! goes that another instance counts. The API and the pipeline both import this module; neither
//! imports the other, and the API never holds a connector.

use crate::config::sites::Site;
use crate::event::Level;
use crate::time::Ts;
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::oneshot;

/// A change the live stream (SSE) reports: a transition or a department's action.
#[derive(Clone, Debug)]
pub struct LiveEvent {
    /// `transition` or `update`.
    pub kind: &'static str,
    pub id: String,
    pub departments: Vec<String>,
    /// The JSON sent to clients.
    pub data: String,
}

/// The result of the last configuration (re)load.
#[derive(Clone, Debug, Serialize)]
pub struct ReloadResult {
    pub at: String,
    pub ok: bool,
    pub errors: Vec<String>,
    /// Rules that kept their window and warning state, and rules that started afresh.
    pub kept: usize,
    pub reset: usize,
    pub trigger: String,
}

impl ReloadResult {
    /// The load at start: every rule starts afresh.
    pub fn started(at: String, rules: usize) -> ReloadResult {
        ReloadResult {
            at,
            ok: true,
            errors: Vec::new(),
            kept: 0,
            reset: rules,
            trigger: "start".into(),
        }
    }
}

/// What the API asks of the engine.
pub enum Request {
    /// Every site's view, with up to this many minutes of history per series.
    Sites(usize, oneshot::Sender<Vec<SiteView>>),
    /// A 12345 ticket now matched to a site: it counts in the rules (`tickets.<concern>`).
    Ticket {
        site: String,
        concern: String,
        received_at: Ts,
        done: oneshot::Sender<()>,
    },
    Reload(String, oneshot::Sender<ReloadResult>),
}

#[derive(Clone, Debug, Serialize)]
pub struct LatestReading {
    pub metric: String,
    pub value: f64,
    pub ts: String,
    /// The connector it came through: mqtt, hj212 or camera.
    pub via: &'static str,
    /// The last minutes, one point per minute: (minute start in epoch ms, its latest value).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub points: Vec<(Ts, f64)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DeviceView {
    pub id: String,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hj212_mn: Option<String>,
    pub metrics: Vec<String>,
    /// online | offline (an absence warning is open) | unseen (nothing since start)
    pub status: &'static str,
    pub last_seen: Option<String>,
    pub readings: Vec<LatestReading>,
    /// Cameras: the RTSP stream's state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamView>,
    /// Cameras: the latest analytics events (ONVIF notifications, edge-box events), newest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventView>,
}

#[derive(Clone, Debug, Serialize)]
pub struct StreamView {
    /// playing | lost | connecting
    pub state: &'static str,
    pub since: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EventView {
    pub topic: String,
    pub metric: String,
    pub value: f64,
    pub ts: String,
    /// onvif | edge
    pub source: &'static str,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub properties: serde_json::Map<String, serde_json::Value>,
}

/// Minutes of history kept per device and metric (one point per minute: the minute's last value).
pub const HISTORY_MINUTES: usize = 120;

#[derive(Clone, Debug, Serialize)]
pub struct SiteView {
    /// The site as sites.yaml has it (its devices are below, with their state).
    #[serde(flatten)]
    pub site: Site,
    /// Warnings firing now: (rule, level).
    pub firing: Vec<(String, Level)>,
    pub devices: Vec<DeviceView>,
}

impl std::ops::Deref for SiteView {
    type Target = Site;
    fn deref(&self) -> &Site {
        &self.site
    }
}

/// Whether an input is ready (`/readyz`): `Err` says why not, e.g. "MQTT is Down".
pub type Readiness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Where a ticket taken here goes when another instance counts it (in a cluster: the tickets
/// topic, keyed by site, so the instance that has the site's partition counts it).
pub trait TicketSink: Send + Sync {
    /// Send `payload` (the ticket as the hotline system sent it) keyed by `site`.
    fn send<'a>(
        &'a self,
        site: &'a str,
        payload: &'a [u8],
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
}
