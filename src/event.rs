//! The event model: what flows from decoders into the engine. Leaf types, no I/O.

use crate::time::Ts;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// Warning levels, rising: 蓝色 blue (IV), 黄色 yellow (III), 橙色 orange (II), 红色 red (I).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Blue,
    Yellow,
    Orange,
    Red,
}

impl Level {
    pub const ALL: [Level; 4] = [Level::Blue, Level::Yellow, Level::Orange, Level::Red];

    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "blue" => Some(Level::Blue),
            "yellow" => Some(Level::Yellow),
            "orange" => Some(Level::Orange),
            "red" => Some(Level::Red),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Blue => "blue",
            Level::Yellow => "yellow",
            Level::Orange => "orange",
            Level::Red => "red",
        }
    }
    /// The Chinese name used in messages: 蓝色 / 黄色 / 橙色 / 红色.
    pub fn zh(self) -> &'static str {
        match self {
            Level::Blue => "蓝色",
            Level::Yellow => "黄色",
            Level::Orange => "橙色",
            Level::Red => "红色",
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One sensor reading, after decoding and before the engine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub site: String,
    pub device: String,
    pub metric: String,
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// When it was measured (event time).
    pub ts: Ts,
    /// When it reached yujing (processing time); equal to `ts` in tests unless set.
    pub arrival: Ts,
    /// Which input it came from (`mqtt`, `file`, `hj212`, ...); rules may scope on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// What tickets are about, as rules name them (`tickets.noise`, ...).
pub const CONCERNS: [&str; 8] = [
    "noise", "dust", "water", "crowding", "smoke", "odor", "safety", "other",
];

/// The concern of a category (Chinese or English words in it).
pub fn concern_of(category: &str) -> &'static str {
    let c = category.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| c.contains(w));
    if has(&["噪", "noise", "施工扰民", "夜间施工"]) {
        "noise"
    } else if has(&["扬尘", "粉尘", "灰尘", "dust"]) {
        "dust"
    } else if has(&["污水", "排污", "水质", "水位", "河道", "water", "sewage"]) {
        "water"
    } else if has(&["拥挤", "人多", "客流", "排队", "crowd"]) {
        "crowding"
    } else if has(&["油烟", "烟", "焚烧", "smoke"]) {
        "smoke"
    } else if has(&["异味", "臭", "odor", "odour", "smell"]) {
        "odor"
    } else if has(&["安全", "隐患", "safety"]) {
        "safety"
    } else {
        "other"
    }
}

/// A checked ticket, ready to store (and, with what the store adds, `store::TicketRow`).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Ticket {
    pub number: String,
    pub channel: Option<String>,
    pub category: Option<String>,
    /// One of [`CONCERNS`] (as stored: any text).
    pub concern: Cow<'static, str>,
    pub received_at: Option<Ts>,
    pub credit_code: Option<String>,
    pub enterprise: Option<String>,
    pub industry: Option<String>,
    pub department: Option<String>,
    pub address: Option<String>,
    pub content: Option<String>,
    pub status: Option<String>,
    pub result: Option<String>,
    pub site: Option<String>,
    /// credit_code, site, keyword; None: unmatched.
    pub matched_by: Option<Cow<'static, str>>,
    /// What is wrong with it (kept and flagged).
    pub problems: Vec<String>,
}

/// The virtual device through which a site's tickets reach the rules.
pub fn device_of(site: &str) -> String {
    format!("{site}.hotline")
}

/// What a warning went through: raised, escalated, de-escalated or cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransitionKind {
    Raise,
    Escalate,
    DeEscalate,
    Clear,
}

impl TransitionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransitionKind::Raise => "raise",
            TransitionKind::Escalate => "escalate",
            TransitionKind::DeEscalate => "de-escalate",
            TransitionKind::Clear => "clear",
        }
    }
    pub fn parse(s: &str) -> Option<TransitionKind> {
        Some(match s {
            "raise" => TransitionKind::Raise,
            "escalate" => TransitionKind::Escalate,
            "de-escalate" | "deescalate" => TransitionKind::DeEscalate,
            "clear" => TransitionKind::Clear,
            _ => return None,
        })
    }
    /// The Chinese word in messages: 发布 / 升级 / 降级 / 解除.
    pub fn zh(self) -> &'static str {
        match self {
            TransitionKind::Raise => "发布",
            TransitionKind::Escalate => "升级",
            TransitionKind::DeEscalate => "降级",
            TransitionKind::Clear => "解除",
        }
    }
}

/// Why an input record was not processed. Every rejection is counted by reason and kept in a
/// dead-letter place; none is dropped silently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Not parseable: broken JSON, wrong number of CSV columns, bad number.
    Malformed,
    /// A required field is missing.
    MissingField,
    /// The value is NaN or infinite.
    NonFinite,
    /// The timestamp is unparseable or absurdly far from the stream's time.
    BadTimestamp,
    /// The device is not bound to any site in sites.yaml.
    UnknownDevice,
    /// The device is bound to another site than the one the reading names.
    SiteMismatch,
    /// The record is larger than the configured limit.
    Oversize,
    /// Arrived after its windows were final (beyond allowed lateness).
    Late,
    /// The instrument marked the value as not normal (HJ 212 data flag: maintenance,
    /// calibration, fault, ...); kept out of rules.
    Flagged,
    /// The device does not declare this metric in sites.yaml (`metrics`): a device may not
    /// make up series.
    UnknownMetric,
    /// The sender did not prove who it is (an HJ 212 packet with a wrong or missing `PW`).
    Unauthorized,
}

impl RejectReason {
    pub const ALL: [RejectReason; 11] = [
        RejectReason::Malformed,
        RejectReason::MissingField,
        RejectReason::NonFinite,
        RejectReason::BadTimestamp,
        RejectReason::UnknownDevice,
        RejectReason::SiteMismatch,
        RejectReason::Oversize,
        RejectReason::Late,
        RejectReason::Flagged,
        RejectReason::UnknownMetric,
        RejectReason::Unauthorized,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::MissingField => "missing_field",
            RejectReason::NonFinite => "non_finite",
            RejectReason::BadTimestamp => "bad_timestamp",
            RejectReason::UnknownDevice => "unknown_device",
            RejectReason::SiteMismatch => "site_mismatch",
            RejectReason::Oversize => "oversize",
            RejectReason::Late => "late",
            RejectReason::Flagged => "flagged",
            RejectReason::UnknownMetric => "unknown_metric",
            RejectReason::Unauthorized => "unauthorized",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reading borrowed from a decoder's buffer: what decoders emit and the engine takes, without
/// allocating per reading.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReadingRef<'a> {
    /// The site the input names, if any (checked against the device's site).
    pub site: Option<&'a str>,
    pub device: &'a str,
    pub metric: &'a str,
    pub value: f64,
    pub ts: Ts,
    /// Processing time; decoders set it to `ts` and live sources to the clock.
    pub arrival: Ts,
    /// Source index from `Engine::source` (0 until the caller sets it).
    pub source: usize,
}

#[cfg(test)]
impl ReadingRef<'_> {
    /// Site, device, metric, value and time as owned values: what decoder tests collect and
    /// compare.
    pub(crate) fn owned(&self) -> (Option<String>, String, String, f64, Ts) {
        (
            self.site.map(str::to_string),
            self.device.to_string(),
            self.metric.to_string(),
            self.value,
            self.ts,
        )
    }
}
