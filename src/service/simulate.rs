//! The live simulator of `yujing demo`: every device of the sample county reports as a real one
//! would. Sensors publish over MQTT (`yujing/sensors/{site}/{device}`, JSON, some with one value
//! per message, some with several, timestamps as ISO-8601 or epoch ms); monitors with an HJ 212
//! MN code connect to the HJ 212 listener over TCP and send real-time uploads (CN 2011) that ask
//! for an acknowledgement; cameras report their stream health as readings and their analytics as
//! an edge AI box would (`yujing/cameras/{camera}/events`: people counts, helmet violations,
//! motion). The sample day's diurnal patterns and scripted incidents play out: a dust episode
//! (over HJ 212), night noise, air pollution, a river rising, a holiday crowd, a crowded viewing
//! platform, helmet violations, a gauge going silent, a site camera dark for an hour of work.
//!
//! Simulated time starts at local midnight yesterday and runs `speed` times faster than the
//! clock until it catches up with now; from then on it runs in real time, so the incidents of
//! yesterday show within minutes and the service keeps receiving live data afterwards.

use crate::config::sites::SiteKind;
use crate::config::Config;
use crate::sim::{hour_of, ramp, value, Rng, DAY_START};
use crate::store::now_ms;
use crate::time::{format_ts, local_day, Ts, DAY, MINUTE};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use yujing_connectors::mqtt::Publisher;

/// What the simulated devices send at one instant.
#[derive(Debug, PartialEq)]
pub(crate) enum Out {
    /// An MQTT message: topic, payload.
    Mqtt(String, Vec<u8>),
    /// An HJ 212 packet from the monitor with this MN.
    Hj212(String, String),
}

/// The local hour of the sample day's shapes at `t`.
fn sample_hour(config: &Config, t: Ts) -> f64 {
    let tz = config.settings.timezone;
    let day0 = local_day(DAY_START, tz);
    let shifted = t - (local_day(t, tz) - day0) * DAY;
    hour_of(shifted)
}

/// Every device's messages at one instant.
pub(crate) fn messages_at(config: &Config, rng: &mut Rng, t: Ts) -> Vec<Out> {
    let tz = config.settings.timezone;
    let h = sample_hour(config, t);
    let mut out = Vec::new();
    for site in &config.registry.sites {
        for &d in &site.devices {
            let dev = &config.registry.devices[d as usize];
            if dev.is_camera() || dev.is_hotline() {
                continue;
            }
            let mut values = Vec::new();
            // model outputs are computed from the readings, not measured
            for metric in dev.metrics.iter().filter(|m| !config.is_model_output(m)) {
                let step = match metric.as_str() {
                    "rainfall" => 5 * MINUTE,
                    _ if site.kind == SiteKind::Environment => 5 * MINUTE,
                    _ => MINUTE,
                };
                if t.rem_euclid(step) != 0 {
                    continue;
                }
                if let Some(v) = value(rng, &site.id, &site.params, metric, h) {
                    values.push((metric.as_str(), v));
                }
            }
            if values.is_empty() {
                continue;
            }
            if let Some(mn) = &dev.hj212_mn {
                // the password sites.yaml gives the monitor, as a real one is set up with
                let pw = dev
                    .hj212_pw
                    .as_ref()
                    .and_then(|p| p.resolve(&config.service.secrets))
                    .unwrap_or("123456");
                out.push(Out::Hj212(mn.clone(), hj212_upload(mn, pw, &values, t, tz)));
                continue;
            }
            let topic = format!("yujing/sensors/{}/{}", site.id, dev.id);
            // half the devices stamp ISO-8601 local time, half epoch milliseconds
            let ts = if d % 2 == 0 {
                serde_json::json!(format_ts(t, tz))
            } else {
                serde_json::json!(t)
            };
            let payload = if values.len() == 1 {
                serde_json::json!({"ts": ts, "metric": values[0].0, "value": values[0].1})
            } else {
                let m: serde_json::Map<String, serde_json::Value> = values
                    .iter()
                    .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
                    .collect();
                serde_json::json!({"ts": ts, "values": m})
            };
            out.push(Out::Mqtt(topic, payload.to_string().into_bytes()));
        }
    }
    out
}

/// A real-time upload (CN 2011) asking for an acknowledgement (Flag=5), framed.
fn hj212_upload(mn: &str, pw: &str, values: &[(&str, f64)], t: Ts, tz: chrono_tz::Tz) -> String {
    use chrono::TimeZone;
    let local = tz
        .timestamp_millis_opt(t)
        .single()
        .map(|d| d.format("%Y%m%d%H%M%S").to_string())
        .unwrap_or_default();
    let mut cp = format!("DataTime={local}");
    for (metric, v) in values {
        let code = crate::decode::hj212::CODES
            .iter()
            .find(|(_, m)| m == metric)
            .map_or(*metric, |(c, _)| c);
        cp.push_str(&format!(";{code}-Rtd={v:.1},{code}-Flag=N"));
    }
    let data = format!("QN={local}000;ST=22;CN=2011;PW={pw};MN={mn};Flag=5;CP=&&{cp}&&");
    yujing_connectors::hj212::frame(&data)
}

/// The cameras' messages at one instant (their own generator: the sensors' values do not move).
pub(crate) fn camera_messages_at(config: &Config, rng: &mut Rng, t: Ts) -> Vec<Out> {
    let tz = config.settings.timezone;
    let h = sample_hour(config, t);
    let mut out = Vec::new();
    for site in &config.registry.sites {
        for &d in &site.devices {
            let dev = &config.registry.devices[d as usize];
            if !dev.is_camera() {
                continue;
            }
            // the scripted outage: cs-02's camera is dark from 14:00 to 15:00
            if dev.id == "cs-02-cam1" && (14.0..15.0).contains(&h) {
                continue;
            }
            let ts = format_ts(t, tz);
            let m = (h * 60.0).round() as i64;
            let mut health = serde_json::json!({"ts": ts, "values": {
                "fps": (25.0 + 0.3 * rng.normal()).clamp(20.0, 25.0),
                "bitrate_kbps": (2048.0 + 120.0 * rng.normal()).round(),
                "frame_gap_ms": (45.0 + 8.0 * rng.normal().abs()).round(),
                "stalled": 0,
            }});
            // a state the camera's analytics hold (as yujing keeps ONVIF property states):
            // someone on the dam crest at night, 23:20-23:26
            if dev.metrics.iter().any(|x| x == "motion") {
                let on = (23 * 60 + 20..23 * 60 + 26).contains(&m);
                health["values"]["motion"] = serde_json::json!(u8::from(on));
            }
            out.push(Out::Mqtt(
                format!("yujing/sensors/{}/{}", site.id, dev.id),
                health.to_string().into_bytes(),
            ));
            let events = format!("yujing/cameras/{}/events", dev.id);
            let mut event = |e: serde_json::Value| {
                out.push(Out::Mqtt(events.clone(), e.to_string().into_bytes()))
            };
            if dev.metrics.iter().any(|m| m == "people_count") {
                let n = match site.kind {
                    // a midday crowd on the viewing platform
                    SiteKind::Tourism => {
                        let cap = site
                            .params
                            .get("platform_capacity")
                            .copied()
                            .unwrap_or(400.0);
                        0.3 * cap * ramp(h, 7.5, 9.0, 17.0, 18.5)
                            + 0.85 * cap * ramp(h, 11.0, 12.0, 12.75, 13.5)
                            + 8.0 * rng.normal()
                    }
                    _ => 12.0 * ramp(h, 6.5, 7.5, 17.5, 18.5) + 3.0 * rng.normal(),
                };
                event(serde_json::json!({"ts": ts, "counts": {"person": n.max(0.0).round()}}));
            }
            // helmet violations seen at cs-01 in the morning
            if dev.id == "cs-01-cam1"
                && [9 * 60 + 10, 9 * 60 + 25, 9 * 60 + 40, 10 * 60 + 5].contains(&m)
            {
                event(
                    serde_json::json!({"ts": ts, "event": "helmet_violation", "value": 1,
                    "properties": {"zone": "塔吊北侧", "confidence": 0.93}}),
                );
            }
            // someone on the dam crest at night
            if dev.metrics.iter().any(|x| x == "motion") && (m == 23 * 60 + 20 || m == 23 * 60 + 26)
            {
                event(
                    serde_json::json!({"ts": ts, "event": "tns1:RuleEngine/CellMotionDetector/Motion",
                    "value": if m == 23 * 60 + 20 { 1 } else { 0 }}),
                );
            }
        }
    }
    out
}

/// The 12345 tickets the simulated hotline centre forwards at one instant (JSON bodies): noise
/// complaints about cs-03's night work (matched by its street, 滨江路), a dust complaint about
/// cs-02's contractor (matched by credit code), and one about an address no site is known by
/// (for an operator to assign).
pub(crate) fn tickets_at(config: &Config, t: Ts) -> Vec<serde_json::Value> {
    let h = sample_hour(config, t);
    let m = (h * 60.0).round() as i64;
    let local = format_ts(t, config.settings.timezone);
    let number = |tag: &str| {
        format!(
            "SIM-{}-{tag}",
            local.get(..10).unwrap_or("").replace('-', "")
        )
    };
    let mut out = Vec::new();
    for (minute, tag) in [
        (22 * 60 + 50, "N1"),
        (23 * 60 + 5, "N2"),
        (23 * 60 + 20, "N3"),
    ] {
        if m == minute {
            out.push(serde_json::json!({
                "number": number(tag), "channel": "phone", "category": "夜间施工噪声",
                "received_at": t, "address": "滨江路与江滨北路交叉口",
                "content": "滨江花园工地深夜还在施工，噪音很大，影响休息", "status": "受理",
            }));
        }
    }
    if m == 9 * 60 + 30 {
        out.push(serde_json::json!({
            "number": number("D1"), "channel": "app", "category": "建筑工地扬尘",
            "received_at": t, "credit_code": "91331002MA2209458P", "enterprise": "宁溪第2建设工程有限公司",
            "industry": "建筑业", "department": "zjj", "content": "宁溪大道改造工地灰尘很大，没有洒水", "status": "受理",
        }));
    }
    if m == 10 * 60 + 15 {
        out.push(serde_json::json!({
            "number": number("U1"), "channel": "web", "category": "噪声扰民",
            "received_at": t, "address": "老街菜市场旁", "content": "附近有机器夜间作业", "status": "受理",
        }));
    }
    out
}

/// Local midnight of yesterday.
pub fn start_of_yesterday(config: &Config, now: Ts) -> Ts {
    let tz = config.settings.timezone;
    let day0 = local_day(DAY_START, tz);
    DAY_START + (local_day(now, tz) - 1 - day0) * DAY
}

/// The simulated HJ 212 monitors: one TCP connection each, every upload acknowledged.
struct Monitors {
    addr: Option<String>,
    conns: HashMap<String, BufReader<TcpStream>>,
    warned: bool,
}

impl Monitors {
    async fn send(&mut self, mn: &str, packet: &str) {
        let Some(addr) = &self.addr else { return };
        let r: std::io::Result<()> = async {
            if !self.conns.contains_key(mn) {
                let s = TcpStream::connect(addr).await?;
                self.conns.insert(mn.to_string(), BufReader::new(s));
            }
            let Some(c) = self.conns.get_mut(mn) else {
                return Ok(());
            };
            c.get_mut().write_all(packet.as_bytes()).await?;
            // wait for the 9014 acknowledgement, as a monitor does before its next upload
            let mut line = String::new();
            match tokio::time::timeout(Duration::from_secs(10), c.read_line(&mut line)).await {
                Ok(Ok(n)) if n > 0 && line.contains("CN=9014") => Ok(()),
                Ok(Ok(_)) => Err(std::io::Error::other(
                    "connection closed before the acknowledgement",
                )),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(std::io::Error::other("no acknowledgement within 10 s")),
            }
        }
        .await;
        if let Err(e) = r {
            self.conns.remove(mn);
            if !self.warned {
                self.warned = true;
                tracing::warn!(error = %e, mn, "simulated HJ 212 monitor: upload failed; it reconnects");
            }
        }
    }
}

/// Publish until `cancel`: fast until simulated time reaches the clock, then in real time.
/// `hotline`: the API's base URL and a token, for the simulated 12345 centre's tickets.
pub async fn run(
    config: Arc<Config>,
    publisher: Publisher,
    speed: f64,
    hotline: Option<(String, String)>,
    cancel: CancellationToken,
) {
    let http = yujing_connectors::http::HttpOut::new(Duration::from_secs(10)).ok();
    let mut rng = Rng(0x5EED_11FE_2026);
    let mut cam_rng = Rng(0xCA3E_2026);
    let mut monitors = Monitors {
        addr: config.service.hj212.as_ref().map(|h| h.listen.clone()),
        conns: HashMap::new(),
        warned: false,
    };
    let wall0 = now_ms();
    let sim0 = start_of_yesterday(&config, wall0);
    let mut t = sim0;
    let mut caught_up = false;
    let speed = speed.max(1.0);
    loop {
        let now = now_ms();
        let elapsed = (now - wall0) as f64;
        let target = if caught_up {
            now
        } else {
            let x = sim0 + (elapsed * speed) as Ts;
            if x >= now {
                caught_up = true;
                println!("  simulator: caught up with the clock; feeds continue in real time");
            }
            x.min(now)
        };
        while t + MINUTE <= target {
            t += MINUTE;
            if let (Some((base, token)), Some(http)) = (&hotline, &http) {
                for ticket in tickets_at(&config, t) {
                    let auth = [("authorization", format!("Bearer {token}"))];
                    let url = format!("{base}/api/v1/hotline/tickets");
                    if let Err(e) = http
                        .post_json(&url, &auth, ticket.to_string().into_bytes())
                        .await
                    {
                        tracing::warn!(error = %e, "simulated hotline cannot post a ticket");
                    }
                }
            }
            let mut outs = messages_at(&config, &mut rng, t);
            outs.extend(camera_messages_at(&config, &mut cam_rng, t));
            for o in outs {
                match o {
                    Out::Mqtt(topic, payload) => {
                        if let Err(e) = publisher.publish(&topic, payload).await {
                            tracing::warn!(error = %e, "simulator cannot publish");
                        }
                    }
                    Out::Hj212(mn, packet) => monitors.send(&mn, &packet).await,
                }
            }
            if cancel.is_cancelled() {
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = cancel.cancelled() => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use yujing_connectors::hj212::{unframe, Packet};

    #[test]
    fn every_device_reports_on_its_schedule() {
        let cfg = Config::load(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("sample config");
        let mut rng = Rng(1);
        let t = start_of_yesterday(&cfg, DAY_START + 3 * DAY) + 10 * 60 * MINUTE; // 10:00
        let msgs = messages_at(&cfg, &mut rng, t);
        // at a multiple of 5 minutes every sensor is due (cameras report on their own)
        let devices = cfg
            .registry
            .devices
            .iter()
            .filter(|d| !d.metrics.is_empty() && !d.is_camera() && !d.is_hotline())
            .count();
        assert_eq!(msgs.len(), devices);
        let Out::Mqtt(topic, payload) = &msgs[0] else {
            panic!("the first sample device speaks MQTT")
        };
        assert!(topic.starts_with("yujing/sensors/"));
        let v: serde_json::Value = serde_json::from_slice(payload).expect("json");
        assert!(v["ts"].is_string() || v["ts"].is_i64());
        // HJ 212 monitors send checked packets that ask for an acknowledgement
        let packets: Vec<_> = msgs
            .iter()
            .filter_map(|o| match o {
                Out::Hj212(mn, p) => Some((mn, p)),
                Out::Mqtt(..) => None,
            })
            .collect();
        assert_eq!(packets.len(), 3);
        for (mn, p) in packets {
            let data = unframe(p.as_bytes()).expect("valid packet");
            let packet = Packet::parse(data).expect("fields");
            assert_eq!(packet.mn, mn);
            assert!(packet.wants_ack());
            assert!(packet.cp.contains("a34002-Rtd="), "{}", packet.cp);
        }
        // a minute later only the per-minute devices (construction, water, tourism) report
        let later = messages_at(&cfg, &mut rng, t + MINUTE);
        assert!(!later.is_empty() && later.len() < msgs.len());
    }

    #[test]
    fn the_hotline_centre_forwards_its_tickets() {
        let cfg = Config::load(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("sample config");
        let day = start_of_yesterday(&cfg, DAY_START + 3 * DAY);
        let all: Vec<serde_json::Value> = (0..24 * 60)
            .flat_map(|m| tickets_at(&cfg, day + m * MINUTE))
            .collect();
        assert_eq!(all.len(), 5);
        let reg = &cfg.registry;
        let checked: Vec<_> = all
            .into_iter()
            .map(|j| {
                let t: crate::hotline::TicketIn = serde_json::from_value(j).expect("ticket");
                crate::hotline::check(t, reg, cfg.settings.timezone, day + 2 * DAY).expect("kept")
            })
            .collect();
        let sites: Vec<Option<&str>> = checked.iter().map(|t| t.site.as_deref()).collect();
        assert_eq!(
            sites,
            vec![
                Some("cs-02"),
                None,
                Some("cs-03"),
                Some("cs-03"),
                Some("cs-03")
            ]
        );
        assert!(checked.iter().all(|t| t.problems.is_empty()), "{checked:?}");
    }

    #[test]
    fn cameras_report_health_and_analytics() {
        let cfg = Config::load(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("sample config");
        let mut rng = Rng(2);
        let day = start_of_yesterday(&cfg, DAY_START + 3 * DAY);
        let at = |h: i64, m: i64| day + (h * 60 + m) * MINUTE;
        let topics = |outs: Vec<Out>| -> Vec<String> {
            outs.into_iter()
                .map(|o| match o {
                    Out::Mqtt(t, p) => format!("{t} {}", String::from_utf8_lossy(&p)),
                    Out::Hj212(mn, _) => mn,
                })
                .collect()
        };
        let noon = topics(camera_messages_at(&cfg, &mut rng, at(12, 30)));
        assert!(noon
            .iter()
            .any(|m| m.starts_with("yujing/sensors/sa-01/sa-01-cam1 ") && m.contains("fps")));
        assert!(noon
            .iter()
            .any(|m| m.starts_with("yujing/cameras/sa-01-cam1/events ") && m.contains("person")));
        let helmet = topics(camera_messages_at(&cfg, &mut rng, at(9, 10)));
        assert!(helmet.iter().any(|m| m.contains("helmet_violation")));
        // the outage
        let dark = topics(camera_messages_at(&cfg, &mut rng, at(14, 30)));
        assert!(!dark.iter().any(|m| m.contains("cs-02-cam1")));
        assert!(dark.iter().any(|m| m.contains("cs-01-cam1")));
    }
}
