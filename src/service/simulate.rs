//! The live simulator of `yujing demo`: every device of the sample county publishes over MQTT
//! as a real one would (`yujing/sensors/{site}/{device}`, JSON, some with one value per message,
//! some with several, timestamps as ISO-8601 or epoch ms), with the sample day's diurnal patterns
//! and scripted incidents (dust episode, night noise, air pollution, a river rising, a holiday
//! crowd, a gauge going silent).
//!
//! Simulated time starts at local midnight yesterday and runs `speed` times faster than the
//! clock until it catches up with now; from then on it runs in real time, so the incidents of
//! yesterday show within minutes and the service keeps receiving live data afterwards.

use crate::config::sites::SiteKind;
use crate::config::Config;
use crate::sim::{hour_of, value, Rng, DAY_START};
use crate::store::now_ms;
use crate::time::{format_ts, local_day, Ts, DAY, MINUTE};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use yujing_connectors::mqtt::Publisher;

/// One device's message at one instant: (topic, payload).
pub(crate) fn messages_at(config: &Config, rng: &mut Rng, t: Ts) -> Vec<(String, Vec<u8>)> {
    let tz = config.settings.timezone;
    // the sample day's shapes by local hour of day
    let day0 = local_day(DAY_START, tz);
    let shifted = t - (local_day(t, tz) - day0) * DAY;
    let h = hour_of(shifted);
    let mut out = Vec::new();
    for site in &config.registry.sites {
        for &d in &site.devices {
            let dev = &config.registry.devices[d as usize];
            let mut values = Vec::new();
            for metric in &dev.metrics {
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
            out.push((topic, payload.to_string().into_bytes()));
        }
    }
    out
}

/// Local midnight of yesterday.
pub fn start_of_yesterday(config: &Config, now: Ts) -> Ts {
    let tz = config.settings.timezone;
    let day0 = local_day(DAY_START, tz);
    DAY_START + (local_day(now, tz) - 1 - day0) * DAY
}

/// Publish until `cancel`: fast until simulated time reaches the clock, then in real time.
pub async fn run(config: Arc<Config>, publisher: Publisher, speed: f64, cancel: CancellationToken) {
    let mut rng = Rng(0x5EED_11FE_2026);
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
            for (topic, payload) in messages_at(&config, &mut rng, t) {
                if let Err(e) = publisher.publish(&topic, payload).await {
                    tracing::warn!(error = %e, "simulator cannot publish");
                }
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

    #[test]
    fn every_device_publishes_on_its_schedule() {
        let cfg = Config::load(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("sample config");
        let mut rng = Rng(1);
        let t = start_of_yesterday(&cfg, DAY_START + 3 * DAY) + 10 * 60 * MINUTE; // 10:00
        let msgs = messages_at(&cfg, &mut rng, t);
        // at a multiple of 5 minutes every device with metrics is due
        let devices = cfg
            .registry
            .devices
            .iter()
            .filter(|d| !d.metrics.is_empty())
            .count();
        assert_eq!(msgs.len(), devices);
        let (topic, payload) = &msgs[0];
        assert!(topic.starts_with("yujing/sensors/"));
        let v: serde_json::Value = serde_json::from_slice(payload).expect("json");
        assert!(v["ts"].is_string() || v["ts"].is_i64());
        // a minute later only the per-minute devices (construction, water, tourism) publish
        let later = messages_at(&cfg, &mut rng, t + MINUTE);
        assert!(!later.is_empty() && later.len() < msgs.len());
    }
}
