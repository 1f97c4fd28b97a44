//! Arbitrary bytes as an ONVIF metadata document (from a camera's RTSP stream) and as an edge
//! box's JSON event: parsing must never panic, and counts must be sane.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yujing::decode::onvif::{parse, EdgeEvent};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = parse(data) {
        for f in &m.frames {
            for (metric, n) in &f.counts {
                assert!(metric.ends_with("_count"));
                assert!(*n > 0);
            }
        }
        for e in &m.events {
            assert!(!e.topic.is_empty());
            assert!(!e.metric().is_empty());
            assert!(e.value().is_finite());
        }
    }
    let _ = EdgeEvent::parse(data, chrono_tz::Asia::Shanghai);
});
