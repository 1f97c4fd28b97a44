//! Arbitrary bytes from a monitor connection: framing, length and CRC checks, field splitting
//! and decoding into readings must never panic, and what they accept must be consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yujing_connectors::hj212::{frame, unframe, Framer, Packet};

fuzz_target!(|data: &[u8]| {
    let mut framer = Framer::default();
    // feed in two pieces, as TCP may split them
    let cut = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    framer.push(&data[..cut]);
    framer.push(&data[cut..]);
    while let Some(p) = framer.next_packet() {
        let Ok(segment) = unframe(&p) else { continue };
        // a segment that passed its checks frames back to the same bytes
        let again = frame(segment);
        assert_eq!(unframe(again.as_bytes()).ok(), Some(segment));
        if let Ok(packet) = Packet::parse(segment) {
            let _ = packet.data_ack();
            let mut n = 0usize;
            let _ = yujing::decode::hj212::decode(
                &packet,
                "fuzz-device",
                chrono_tz::Asia::Shanghai,
                &['N', 'T'],
                &mut |r| {
                    assert!(r.value.is_finite());
                    n += 1;
                },
            );
        }
    }
    // the segment parser also takes text that never had a frame
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(p) = Packet::parse(s) {
            for item in p.items() {
                let _ = item;
            }
        }
    }
});
