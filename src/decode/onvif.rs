//! ONVIF metadata (`application/vnd.onvif.metadata`, `tt:MetadataStream` documents) into object
//! counts and camera events; and edge AI boxes' JSON events (`yujing/cameras/{camera}/events`).
//!
//! A `tt:Frame` lists the objects the camera's analytics see; each object's class
//! (`tt:Class/tt:Type`, the most likely one, or the older `tt:ClassCandidate`) is counted:
//! `Human`/`Person`/`Face` as `people_count`, `Vehicle`/`Car`/`Bus`/`Truck`/`Bike` as
//! `vehicle_count`, any other class as `<class>_count`. A `wsnt:NotificationMessage` is an event:
//! its topic (`tns1:RuleEngine/CellMotionDetector/Motion`), time, property operation and the
//! `SimpleItem`s of its source and data. Element prefixes are ignored (vendors choose their own).

use super::DecodeError;
use crate::event::RejectReason;
use crate::time::{parse_ts, Ts};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use serde::Deserialize;

/// Objects seen in one analytics frame, by class.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FrameCounts {
    pub utc: Option<Ts>,
    /// (metric, count), in the order classes first appear.
    pub counts: Vec<(String, u32)>,
}

/// A notification from the camera's event service, carried in the metadata stream.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Notification {
    pub topic: String,
    pub utc: Option<Ts>,
    /// `Initialized`, `Changed` or `Deleted`.
    pub operation: Option<String>,
    pub source: Vec<(String, String)>,
    pub data: Vec<(String, String)>,
}

impl Notification {
    /// The metric an event feeds rules as: the topic's last part in snake case, with ONVIF's
    /// common topics named plainly (`motion`, `tamper`, `line_crossing`, `field_detection`).
    pub fn metric(&self) -> String {
        event_metric(&self.topic)
    }

    /// Its value: the first data item that is a boolean (1/0) or a number; 1 when none is.
    pub fn value(&self) -> f64 {
        for (_, v) in &self.data {
            match v.as_str() {
                "true" | "True" | "TRUE" => return 1.0,
                "false" | "False" | "FALSE" => return 0.0,
                _ => {
                    if let Ok(n) = v.parse::<f64>() {
                        if n.is_finite() {
                            return n;
                        }
                    }
                }
            }
        }
        1.0
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metadata {
    pub frames: Vec<FrameCounts>,
    pub events: Vec<Notification>,
}

/// The metric of an event topic or an edge box's event type.
pub fn event_metric(topic: &str) -> String {
    let last = topic.rsplit(['/', ':']).next().unwrap_or(topic).trim();
    let lower = topic.to_ascii_lowercase();
    if lower.contains("globalscenechange") || lower.contains("tamper") {
        return "tamper".into();
    }
    if lower.contains("linedetector") {
        return "line_crossing".into();
    }
    if lower.contains("fielddetector") {
        return "field_detection".into();
    }
    snake(last)
}

/// The count metric of an object class.
pub fn class_metric(class: &str) -> String {
    match class.to_ascii_lowercase().as_str() {
        "human" | "person" | "people" | "face" | "pedestrian" => "people_count".into(),
        "vehicle" | "car" | "bus" | "truck" | "bike" | "bicycle" | "motorcycle"
        | "licenseplate" => "vehicle_count".into(),
        _ => format!("{}_count", snake(class)),
    }
}

/// `HelmetViolation` -> `helmet_violation`; anything not a letter or digit becomes `_`.
fn snake(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    let mut prev_lower = false;
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            if prev_lower && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
            prev_lower = true;
        } else {
            if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
            prev_lower = false;
        }
    }
    let t = out.trim_matches('_');
    if t.is_empty() {
        "event".into()
    } else {
        t.to_string()
    }
}

fn local(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

fn attr(e: &BytesStart<'_>, key: &str) -> Option<String> {
    e.attributes().flatten().find_map(|a| {
        (local(a.key.0) == key).then(|| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_or_else(|_| a.value.to_string(), |v| v.into_owned())
        })
    })
}

fn utc(v: Option<String>) -> Option<Ts> {
    v.and_then(|s| parse_ts(&s, chrono_tz::UTC).ok())
}

/// Parse one metadata document.
pub fn parse(xml: &[u8]) -> Result<Metadata, DecodeError> {
    #[derive(PartialEq)]
    enum In {
        Nothing,
        Type,
        Topic,
    }
    let bad = |e: String| DecodeError::new(RejectReason::Malformed, format!("ONVIF metadata: {e}"));
    let mut r = Reader::from_reader(xml);
    r.config_mut().trim_text(true);
    let mut out = Metadata::default();
    let mut buf = Vec::new();
    let mut seen_root = false;
    // the frame being read, the current object's best class and its likelihood
    let mut frame: Option<FrameCounts> = None;
    let mut object: Option<(Option<String>, f64)> = None;
    let mut type_likelihood = 0.0;
    let mut event: Option<Notification> = None;
    // inside tt:Source or tt:Data of an event message
    let mut items: Option<bool> = None;
    let mut text_of = In::Nothing;
    loop {
        let ev = r
            .read_event_into(&mut buf)
            .map_err(|e| bad(format!("{e} at byte {}", r.error_position())))?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                let name = e.name();
                match local(name.0) {
                    "MetadataStream" => seen_root = true,
                    "Frame" => {
                        frame = Some(FrameCounts {
                            utc: utc(attr(e, "UtcTime")),
                            counts: Vec::new(),
                        });
                        if empty {
                            if let Some(f) = frame.take() {
                                out.frames.push(f);
                            }
                        }
                    }
                    "Object" if frame.is_some() => {
                        object = Some((None, f64::MIN));
                        if empty {
                            count(&mut frame, object.take());
                        }
                    }
                    "Type" if object.is_some() && !empty => {
                        type_likelihood = attr(e, "Likelihood")
                            .and_then(|l| l.parse().ok())
                            .unwrap_or(0.0);
                        text_of = In::Type;
                    }
                    "NotificationMessage" => event = Some(Notification::default()),
                    "Topic" if event.is_some() && !empty => text_of = In::Topic,
                    "Message" if event.is_some() => {
                        if let Some(ev) = &mut event {
                            if let Some(t) = attr(e, "UtcTime") {
                                ev.utc = utc(Some(t));
                            }
                            if let Some(op) = attr(e, "PropertyOperation") {
                                ev.operation = Some(op);
                            }
                        }
                    }
                    "Source" if event.is_some() && !empty => items = Some(false),
                    "Data" if event.is_some() && !empty => items = Some(true),
                    "SimpleItem" => {
                        if let (Some(ev), Some(is_data)) = (&mut event, items) {
                            let n = attr(e, "Name").unwrap_or_default();
                            let v = attr(e, "Value").unwrap_or_default();
                            if is_data {
                                ev.data.push((n, v));
                            } else {
                                ev.source.push((n, v));
                            }
                        }
                    }
                    _ => {}
                }
            }
            Event::Text(t) => {
                let s = t.xml10_content().trim().to_string();
                match text_of {
                    In::Type => {
                        if let Some(o) = &mut object {
                            if type_likelihood > o.1 || o.0.is_none() {
                                *o = (Some(s), type_likelihood);
                            }
                        }
                    }
                    In::Topic => {
                        if let Some(ev) = &mut event {
                            ev.topic.push_str(&s);
                        }
                    }
                    In::Nothing => {}
                }
            }
            Event::End(ref e) => match local(e.name().0) {
                "Type" | "Topic" => text_of = In::Nothing,
                "Object" => count(&mut frame, object.take()),
                "Frame" => {
                    if let Some(f) = frame.take() {
                        out.frames.push(f);
                    }
                }
                "Source" | "Data" => items = None,
                "NotificationMessage" => {
                    if let Some(ev) = event.take() {
                        if ev.topic.is_empty() {
                            return Err(bad("a NotificationMessage without a Topic".into()));
                        }
                        out.events.push(ev);
                    }
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !seen_root {
        return Err(bad("not a tt:MetadataStream document".into()));
    }
    Ok(out)
}

fn count(frame: &mut Option<FrameCounts>, object: Option<(Option<String>, f64)>) {
    let (Some(f), Some((class, _))) = (frame, object) else {
        return;
    };
    let metric = class.map_or_else(|| "object_count".to_string(), |c| class_metric(&c));
    match f.counts.iter_mut().find(|(m, _)| *m == metric) {
        Some((_, n)) => *n += 1,
        None => f.counts.push((metric, 1)),
    }
}

/// An edge AI box's event, as JSON on `yujing/cameras/{camera}/events`:
/// `{"ts": ..., "event": "helmet_violation", "value": 2, "properties": {...}}` and/or
/// `{"ts": ..., "counts": {"person": 120, "vehicle": 3}}`.
#[derive(Debug, Deserialize)]
pub struct EdgeEvent {
    pub ts: serde_json::Value,
    #[serde(default, alias = "type", alias = "topic")]
    pub event: Option<String>,
    #[serde(default, alias = "count")]
    pub value: Option<f64>,
    #[serde(default)]
    pub counts: Option<std::collections::BTreeMap<String, f64>>,
    #[serde(default)]
    pub properties: serde_json::Map<String, serde_json::Value>,
}

impl EdgeEvent {
    pub fn parse(bytes: &[u8], tz: chrono_tz::Tz) -> Result<(EdgeEvent, Ts), DecodeError> {
        let e: EdgeEvent = serde_json::from_slice(bytes)
            .map_err(|e| DecodeError::new(RejectReason::Malformed, format!("bad JSON: {e}")))?;
        let ts = match &e.ts {
            serde_json::Value::Number(n) => n.as_i64().ok_or_else(|| {
                DecodeError::new(RejectReason::BadTimestamp, "`ts` is not epoch milliseconds")
            })?,
            serde_json::Value::String(s) => {
                parse_ts(s, tz).map_err(|e| DecodeError::new(RejectReason::BadTimestamp, e))?
            }
            serde_json::Value::Null => {
                return Err(DecodeError::new(RejectReason::MissingField, "missing `ts`"))
            }
            _ => {
                return Err(DecodeError::new(
                    RejectReason::BadTimestamp,
                    "`ts` is neither text nor a number",
                ))
            }
        };
        if e.event.is_none() && e.counts.is_none() {
            return Err(DecodeError::new(
                RejectReason::MissingField,
                "an event needs `event` (its type) or `counts`",
            ));
        }
        if e.value.is_some_and(|v| !v.is_finite())
            || e.counts
                .as_ref()
                .is_some_and(|c| c.values().any(|v| !v.is_finite()))
        {
            return Err(DecodeError::new(
                RejectReason::NonFinite,
                "a value is not finite",
            ));
        }
        Ok((e, ts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the test camera (GStreamer + ../shared/testpeers/camera.py) sends, and what ONVIF
    /// Profile M cameras send in the same shape.
    const FRAME: &str = r#"<?xml version="1.0" encoding="UTF-8"?><tt:MetadataStream xmlns:tt="http://www.onvif.org/ver10/schema"><tt:VideoAnalytics><tt:Frame UtcTime="2026-11-28T12:23:05.829Z"><tt:Object ObjectId="1"><tt:Appearance><tt:Shape><tt:BoundingBox left="0.400" top="0.150" right="0.600" bottom="-0.150"/><tt:CenterOfGravity x="0.500" y="0.000"/></tt:Shape><tt:Class><tt:Type Likelihood="0.9">Human</tt:Type></tt:Class></tt:Appearance></tt:Object><tt:Object ObjectId="2"><tt:Appearance><tt:Class><tt:Type Likelihood="0.3">Vehicle</tt:Type><tt:Type Likelihood="0.6">Human</tt:Type></tt:Class></tt:Appearance></tt:Object><tt:Object ObjectId="3"><tt:Appearance><tt:Class><tt:Type Likelihood="0.8">Car</tt:Type></tt:Class></tt:Appearance></tt:Object></tt:Frame></tt:VideoAnalytics></tt:MetadataStream>"#;

    const MOTION: &str = r#"<?xml version="1.0" encoding="UTF-8"?><tt:MetadataStream xmlns:tt="http://www.onvif.org/ver10/schema"><tt:Event><wsnt:NotificationMessage xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2" xmlns:tns1="http://www.onvif.org/ver10/topics"><wsnt:Topic Dialect="http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet">tns1:RuleEngine/CellMotionDetector/Motion</wsnt:Topic><wsnt:Message><tt:Message UtcTime="2026-11-28T12:23:06.000Z" PropertyOperation="Changed"><tt:Source><tt:SimpleItem Name="VideoSourceConfigurationToken" Value="VideoSourceToken"/><tt:SimpleItem Name="Rule" Value="MyMotionDetectorRule"/></tt:Source><tt:Data><tt:SimpleItem Name="IsMotion" Value="true"/></tt:Data></tt:Message></wsnt:Message></wsnt:NotificationMessage></tt:Event></tt:MetadataStream>"#;

    #[test]
    fn counts_objects_by_their_likeliest_class() {
        let m = parse(FRAME.as_bytes()).unwrap();
        assert_eq!(m.frames.len(), 1);
        let f = &m.frames[0];
        assert_eq!(
            f.utc,
            Some(parse_ts("2026-11-28T12:23:05.829Z", chrono_tz::UTC).unwrap())
        );
        assert_eq!(
            f.counts,
            vec![("people_count".into(), 2), ("vehicle_count".into(), 1)]
        );
        assert!(m.events.is_empty());
    }

    #[test]
    fn reads_a_motion_notification() {
        let m = parse(MOTION.as_bytes()).unwrap();
        assert!(m.frames.is_empty());
        let e = &m.events[0];
        assert_eq!(e.topic, "tns1:RuleEngine/CellMotionDetector/Motion");
        assert_eq!(e.operation.as_deref(), Some("Changed"));
        assert_eq!(e.source[1], ("Rule".into(), "MyMotionDetectorRule".into()));
        assert_eq!(e.data, vec![("IsMotion".into(), "true".into())]);
        assert_eq!(e.metric(), "motion");
        assert_eq!(e.value(), 1.0);
    }

    #[test]
    fn event_topics_become_metrics() {
        assert_eq!(
            event_metric("tns1:VideoSource/GlobalSceneChange/ImagingService"),
            "tamper"
        );
        assert_eq!(
            event_metric("tns1:RuleEngine/LineDetector/Crossed"),
            "line_crossing"
        );
        assert_eq!(
            event_metric("tns1:RuleEngine/FieldDetector/ObjectsInside"),
            "field_detection"
        );
        assert_eq!(
            event_metric("tns1:RuleEngine/MyRuleDetector/HelmetViolation"),
            "helmet_violation"
        );
        assert_eq!(event_metric("helmet_violation"), "helmet_violation");
        assert_eq!(event_metric("Smoke Detected"), "smoke_detected");
        assert_eq!(class_metric("Person"), "people_count");
        assert_eq!(class_metric("Dog"), "dog_count");
    }

    #[test]
    fn empty_frames_and_objects_without_class() {
        let doc = r#"<MetadataStream><VideoAnalytics><Frame UtcTime="2026-11-28T00:00:00Z"/><Frame UtcTime="2026-11-28T00:00:01Z"><Object ObjectId="1"/></Frame></VideoAnalytics></MetadataStream>"#;
        let m = parse(doc.as_bytes()).unwrap();
        assert_eq!(m.frames.len(), 2);
        assert!(m.frames[0].counts.is_empty());
        assert_eq!(m.frames[1].counts, vec![("object_count".into(), 1)]);
    }

    #[test]
    fn broken_documents_are_malformed() {
        for doc in [
            "<tt:MetadataStream><tt:Frame></tt:Object></tt:MetadataStream>",
            "not xml at all",
            "<other/>",
            "<MetadataStream><Event><NotificationMessage><Message/></NotificationMessage></Event></MetadataStream>",
        ] {
            let e = parse(doc.as_bytes()).unwrap_err();
            assert_eq!(e.reason, RejectReason::Malformed, "{doc}");
        }
    }

    #[test]
    fn edge_box_events() {
        let tz = chrono_tz::Asia::Shanghai;
        let (e, ts) = EdgeEvent::parse(
            br#"{"ts":"2026-11-28T09:00:00+08:00","event":"helmet_violation","value":2,"properties":{"zone":"north gate"}}"#,
            tz,
        )
        .unwrap();
        assert_eq!(e.event.as_deref(), Some("helmet_violation"));
        assert_eq!(e.value, Some(2.0));
        assert_eq!(ts, parse_ts("2026-11-28T01:00:00Z", tz).unwrap());
        let (e, _) =
            EdgeEvent::parse(br#"{"ts":1795833000000,"counts":{"person":120}}"#, tz).unwrap();
        assert_eq!(e.counts.unwrap()["person"], 120.0);
        for bad in [
            &br#"{"event":"x"}"#[..],
            br#"{"ts":"yesterday","event":"x"}"#,
            br#"{"ts":1795833000000}"#,
            br#"{"ts":1795833000000,"event":"x","value":"a"}"#,
            b"{",
        ] {
            assert!(
                EdgeEvent::parse(bad, tz).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
