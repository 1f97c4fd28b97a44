//! Criterion benches of the field parsers: HJ 212-2017 packets (frame check with CRC, field
//! split, decode into readings) and ONVIF metadata documents (object counts).
//!
//!   cargo bench --bench hj212
//!
//! Throughput is in packets (documents) per second; the target is 1 M HJ 212 packets/s per core
//! for the whole path from bytes to readings.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use yujing_connectors::hj212::{crc16, frame, unframe, Framer, Packet};

/// A dust monitor's real-time upload: PM10, PM2.5, TSP, noise, temperature, humidity, wind.
fn dust_packet(i: u32) -> String {
    let data = format!(
        "QN=20261128083000{:03};ST=22;CN=2011;PW=123456;MN=33100200000000000CS02001;Flag=5;CP=&&DataTime=20261128083000;\
         a34002-Rtd={}.4,a34002-Flag=N;a34004-Rtd=41.2,a34004-Flag=N;a34001-Rtd=180.0,a34001-Flag=N;\
         LA-Rtd=62.5,LA-Flag=N;a01001-Rtd=12.3,a01001-Flag=N;a01002-Rtd=65.0,a01002-Flag=N;a01007-Rtd=2.1,a01007-Flag=N&&",
        i % 1000,
        80 + i % 50
    );
    frame(&data)
}

fn hj212(c: &mut Criterion) {
    let packets: Vec<String> = (0..1024).map(dust_packet).collect();
    let bytes: usize = packets.iter().map(String::len).sum::<usize>() / packets.len();
    let mut g = c.benchmark_group("hj212");
    g.throughput(Throughput::Elements(packets.len() as u64));
    g.bench_function(format!("crc16 ({bytes} B packets)"), |b| {
        b.iter(|| {
            let mut x = 0u16;
            for p in &packets {
                x ^= crc16(black_box(p.as_bytes()));
            }
            x
        })
    });
    g.bench_function("unframe + parse + decode to readings", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for p in &packets {
                let seg = unframe(black_box(p.as_bytes())).expect("valid");
                let packet = Packet::parse(seg).expect("fields");
                let _ = yujing::decode::hj212::decode(
                    &packet,
                    "cs-02-dust",
                    chrono_tz::Asia::Shanghai,
                    &['N', 'T'],
                    &mut |r| {
                        black_box(r.value);
                        n += 1;
                    },
                );
            }
            n
        })
    });
    // the listener's path over a stream: split, check, parse, build the acknowledgement
    let stream: Vec<u8> = packets.iter().flat_map(|p| p.bytes()).collect();
    g.bench_function("stream framing + ack", |b| {
        b.iter(|| {
            let mut f = Framer::default();
            f.push(black_box(&stream));
            let mut acks = 0usize;
            while let Some(p) = f.next_packet() {
                let seg = unframe(&p).expect("valid");
                acks += Packet::parse(seg).expect("fields").data_ack().len();
            }
            acks
        })
    });
    g.finish();
}

fn onvif(c: &mut Criterion) {
    let doc = |n: usize| {
        let mut s = String::from(
            r#"<?xml version="1.0" encoding="UTF-8"?><tt:MetadataStream xmlns:tt="http://www.onvif.org/ver10/schema"><tt:VideoAnalytics><tt:Frame UtcTime="2026-11-28T12:23:05.829Z">"#,
        );
        for i in 0..n {
            s.push_str(&format!(r#"<tt:Object ObjectId="{i}"><tt:Appearance><tt:Shape><tt:BoundingBox left="0.4" top="0.15" right="0.6" bottom="-0.15"/><tt:CenterOfGravity x="0.5" y="0.0"/></tt:Shape><tt:Class><tt:Type Likelihood="0.9">{}</tt:Type></tt:Class></tt:Appearance></tt:Object>"#, if i % 4 == 0 { "Vehicle" } else { "Human" }));
        }
        s.push_str("</tt:Frame></tt:VideoAnalytics></tt:MetadataStream>");
        s
    };
    let mut g = c.benchmark_group("onvif");
    for n in [1usize, 20] {
        let d = doc(n);
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("frame with {n} objects ({} B)", d.len()), |b| {
            b.iter(|| yujing::decode::onvif::parse(black_box(d.as_bytes())).expect("doc"))
        });
    }
    g.finish();
}

criterion_group!(benches, hj212, onvif);
criterion_main!(benches);
