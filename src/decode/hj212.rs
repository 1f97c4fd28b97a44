//! HJ 212-2017 uploads into readings: pollutant codes to metrics, data flags, upload kinds.
//!
//! | CN | upload | value field | metric |
//! |---|---|---|---|
//! | 2011 | real-time data | `<code>-Rtd` | `pm10` |
//! | 2051 | minute data | `<code>-Avg` | `pm10_min` |
//! | 2061 | hourly data | `<code>-Avg` | `pm10_hour` |
//! | 2031 | daily data | `<code>-Avg` | `pm10_day` |
//!
//! Interval uploads carry their own suffix so that a monitor sending both real-time and minute
//! data does not count the same dust twice in a rule's window. The reading's time is the
//! packet's `DataTime` (local time of the configured time zone). A value whose `-Flag` is not
//! accepted (default: `N` normal and `T` above the instrument's range) is not fed to rules: it
//! is reported as `flagged` with its flag, so maintenance (`M`), calibration (`C`), fault (`D`)
//! and the like never raise warnings. Other commands (parameters, logins, ...) carry no readings.

use super::DecodeError;
use crate::event::{ReadingRef, RejectReason};
use crate::time::Ts;
use chrono::TimeZone;
use chrono_tz::Tz;
use yujing_connectors::hj212::Packet;

/// Pollutant and parameter codes of HJ 212-2017 (appendix B) with the metric names rules use.
/// Codes not listed keep their code as the metric name (`a99051`), so nothing is lost.
pub const CODES: &[(&str, &str)] = &[
    // air, dust (扬尘) and noise
    ("a34001", "tsp"),
    ("a34002", "pm10"),
    ("a34004", "pm2_5"),
    ("a34005", "pm1"),
    ("LA", "noise"),
    ("B03", "noise"),
    ("a21026", "so2"),
    ("a21004", "no2"),
    ("a21002", "nox"),
    ("a21003", "no"),
    ("a21005", "co"),
    ("a05024", "o3"),
    ("a24088", "nmhc"),
    ("a25002", "benzene"),
    ("a99054", "vocs"),
    ("a01001", "temperature"),
    ("a01002", "humidity"),
    ("a01006", "pressure"),
    ("a01007", "wind_speed"),
    ("a01008", "wind_direction"),
    ("a01020", "visibility"),
    // flue gas at pollution sources
    ("a00000", "flue_flow"),
    ("a01011", "flue_velocity"),
    ("a01012", "flue_temperature"),
    ("a01013", "flue_pressure"),
    ("a01014", "flue_humidity"),
    ("a19001", "o2"),
    // water
    ("w00000", "flow"),
    ("w01001", "ph"),
    ("w01003", "turbidity"),
    ("w01009", "dissolved_oxygen"),
    ("w01010", "water_temperature"),
    ("w01014", "conductivity"),
    ("w01018", "cod"),
    ("w01019", "permanganate_index"),
    ("w21001", "total_nitrogen"),
    ("w21003", "ammonia_nitrogen"),
    ("w21011", "total_phosphorus"),
    ("w20111", "mercury"),
    ("w20115", "cadmium"),
    ("w20117", "chromium_vi"),
    ("w20119", "lead"),
    ("w20141", "arsenic"),
];

/// The metric name of a pollutant code.
pub fn metric_of(code: &str) -> &str {
    // a match compiles to a length switch and a few comparisons: this runs per value
    match code {
        "a34001" => "tsp",
        "a34002" => "pm10",
        "a34004" => "pm2_5",
        "a34005" => "pm1",
        "LA" => "noise",
        "B03" => "noise",
        "a21026" => "so2",
        "a21004" => "no2",
        "a21002" => "nox",
        "a21003" => "no",
        "a21005" => "co",
        "a05024" => "o3",
        "a24088" => "nmhc",
        "a25002" => "benzene",
        "a99054" => "vocs",
        "a01001" => "temperature",
        "a01002" => "humidity",
        "a01006" => "pressure",
        "a01007" => "wind_speed",
        "a01008" => "wind_direction",
        "a01020" => "visibility",
        "a00000" => "flue_flow",
        "a01011" => "flue_velocity",
        "a01012" => "flue_temperature",
        "a01013" => "flue_pressure",
        "a01014" => "flue_humidity",
        "a19001" => "o2",
        "w00000" => "flow",
        "w01001" => "ph",
        "w01003" => "turbidity",
        "w01009" => "dissolved_oxygen",
        "w01010" => "water_temperature",
        "w01014" => "conductivity",
        "w01018" => "cod",
        "w01019" => "permanganate_index",
        "w21001" => "total_nitrogen",
        "w21003" => "ammonia_nitrogen",
        "w21011" => "total_phosphorus",
        "w20111" => "mercury",
        "w20115" => "cadmium",
        "w20117" => "chromium_vi",
        "w20119" => "lead",
        "w20141" => "arsenic",
        _ => code,
    }
}

/// What kind of upload a command code is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upload {
    Realtime,
    Minute,
    Hourly,
    Daily,
}

impl Upload {
    pub fn of(cn: &str) -> Option<Upload> {
        match cn {
            "2011" => Some(Upload::Realtime),
            "2051" => Some(Upload::Minute),
            "2061" => Some(Upload::Hourly),
            "2031" => Some(Upload::Daily),
            _ => None,
        }
    }
    fn field(self) -> &'static str {
        match self {
            Upload::Realtime => "Rtd",
            _ => "Avg",
        }
    }
    fn suffix(self) -> &'static str {
        match self {
            Upload::Realtime => "",
            Upload::Minute => "_min",
            Upload::Hourly => "_hour",
            Upload::Daily => "_day",
        }
    }
}

/// A value left out of the readings, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Skipped {
    pub reason: RejectReason,
    pub detail: String,
}

/// The outcome of one packet.
#[derive(Debug, Default, PartialEq)]
pub struct Decoded {
    /// Readings emitted.
    pub readings: usize,
    /// Values not emitted (flagged, unparseable, not finite), each with its reason.
    pub skipped: Vec<Skipped>,
    /// The command carries no readings (not an upload of data).
    pub not_data: bool,
}

/// Decode one packet from `device`. `accept` lists the data flags whose values feed rules.
pub fn decode(
    p: &Packet<'_>,
    device: &str,
    tz: Tz,
    accept: &[char],
    emit: &mut dyn FnMut(ReadingRef<'_>),
) -> Result<Decoded, DecodeError> {
    let Some(upload) = Upload::of(p.cn) else {
        return Ok(Decoded {
            not_data: true,
            ..Decoded::default()
        });
    };
    let mut ts: Option<Ts> = None;
    // (code, value, flag) per pollutant, in packet order; packets hold a few dozen at most
    let mut groups: Vec<(&str, Option<&str>, Option<&str>)> = Vec::with_capacity(8);
    for item in p.items() {
        let (k, v) = item.map_err(|e| DecodeError::new(RejectReason::Malformed, e.to_string()))?;
        if k == "DataTime" {
            ts = Some(data_time(v, tz)?);
            continue;
        }
        let Some((code, field)) = k.rsplit_once('-') else {
            continue;
        };
        let slot = match groups.iter().position(|g| g.0 == code) {
            Some(i) => i,
            None => {
                groups.push((code, None, None));
                groups.len() - 1
            }
        };
        if field == upload.field() {
            groups[slot].1 = Some(v);
        } else if field == "Flag" {
            groups[slot].2 = Some(v);
        }
    }
    let ts = ts.ok_or_else(|| {
        DecodeError::new(
            RejectReason::MissingField,
            format!("CN={} upload without `DataTime`", p.cn),
        )
    })?;
    let mut out = Decoded::default();
    let mut name = String::new();
    for (code, value, flag) in groups {
        let Some(value) = value else {
            continue;
        };
        name.clear();
        name.push_str(metric_of(code));
        name.push_str(upload.suffix());
        if let Some(f) = flag {
            let ok = f.len() == 1 && f.chars().next().is_some_and(|c| accept.contains(&c));
            if !ok {
                out.skipped.push(Skipped {
                    reason: RejectReason::Flagged,
                    detail: format!("{code} ({name}) = {value} with data flag {f}"),
                });
                continue;
            }
        }
        let v = match value.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => v,
            Ok(_) => {
                out.skipped.push(Skipped {
                    reason: RejectReason::NonFinite,
                    detail: format!("{code} ({name}) = {value}"),
                });
                continue;
            }
            Err(_) => {
                out.skipped.push(Skipped {
                    reason: RejectReason::Malformed,
                    detail: format!("{code}-{} = `{value}` is not a number", upload.field()),
                });
                continue;
            }
        };
        emit(ReadingRef {
            site: None,
            device,
            metric: &name,
            value: v,
            ts,
            arrival: ts,
            source: 0,
        });
        out.readings += 1;
    }
    Ok(out)
}

/// `YYYYMMDDhhmmss` in the local time zone.
fn data_time(v: &str, tz: Tz) -> Result<Ts, DecodeError> {
    let bad = || {
        DecodeError::new(
            RejectReason::BadTimestamp,
            format!("DataTime `{v}` is not YYYYMMDDhhmmss"),
        )
    };
    let b = v.as_bytes();
    if b.len() != 14 || !b.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let n = |r: std::ops::Range<usize>| {
        b[r].iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
    };
    let naive = chrono::NaiveDate::from_ymd_opt(n(0..4) as i32, n(4..6), n(6..8))
        .and_then(|d| d.and_hms_opt(n(8..10), n(10..12), n(12..14)))
        .ok_or_else(bad)?;
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp_millis())
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use yujing_connectors::hj212::{frame, unframe};

    type Got = Vec<(String, f64, Ts)>;

    fn run(data: &str) -> (Result<Decoded, DecodeError>, Got) {
        let p = Packet::parse(data).unwrap();
        let mut got = Vec::new();
        let r = decode(
            &p,
            "dev",
            chrono_tz::Asia::Shanghai,
            &['N', 'T'],
            &mut |r| got.push((r.metric.to_string(), r.value, r.ts)),
        );
        (r, got)
    }

    #[test]
    fn realtime_upload_from_a_dust_monitor() {
        // the shape of the standard's real-time upload example, with dust and weather codes
        let data = "QN=20160801085857223;ST=22;CN=2011;PW=123456;MN=010000A8900016F000169DC0;Flag=5;CP=&&DataTime=20160801085857;a34002-Rtd=88.1,a34002-Flag=N;a34004-Rtd=40.2,a34004-Flag=N;a01007-Rtd=3.4,a01007-Flag=N;LA-Rtd=62.5,LA-Flag=N&&";
        let packet = frame(data);
        let p = unframe(packet.as_bytes()).unwrap();
        let (r, got) = run(p);
        let r = r.unwrap();
        assert_eq!(r.readings, 4);
        assert!(r.skipped.is_empty());
        let ts = crate::time::parse_ts("2016-08-01T08:58:57+08:00", chrono_tz::UTC).unwrap();
        assert_eq!(
            got,
            vec![
                ("pm10".into(), 88.1, ts),
                ("pm2_5".into(), 40.2, ts),
                ("wind_speed".into(), 3.4, ts),
                ("noise".into(), 62.5, ts),
            ]
        );
    }

    #[test]
    fn interval_uploads_take_the_average_and_a_suffix() {
        for (cn, metric) in [
            ("2051", "pm10_min"),
            ("2061", "pm10_hour"),
            ("2031", "pm10_day"),
        ] {
            let data = format!("QN=20260101090000000;ST=22;CN={cn};PW=123456;MN=M1;Flag=4;CP=&&DataTime=20260101080000;a34002-Min=20.0,a34002-Avg=35.5,a34002-Max=60.1,a34002-Flag=N&&");
            let (r, got) = run(&data);
            assert_eq!(r.unwrap().readings, 1);
            assert_eq!(got[0].0, metric);
            assert_eq!(got[0].1, 35.5);
        }
    }

    #[test]
    fn flags_other_than_normal_are_kept_out_and_reported() {
        let data = "CN=2011;MN=M1;Flag=4;CP=&&DataTime=20260101080000;a34002-Rtd=900,a34002-Flag=D;a34001-Rtd=1200,a34001-Flag=T;a01001-Rtd=5,a01001-Flag=C&&";
        let (r, got) = run(data);
        let r = r.unwrap();
        assert_eq!(got.len(), 1, "T (above range) is accepted: {got:?}");
        assert_eq!(got[0].0, "tsp");
        assert_eq!(r.skipped.len(), 2);
        assert!(r.skipped.iter().all(|s| s.reason == RejectReason::Flagged));
        assert!(r.skipped[0].detail.contains("flag D"), "{:?}", r.skipped);
    }

    #[test]
    fn bad_values_are_reported_and_the_rest_kept() {
        let data =
            "CN=2011;MN=M1;CP=&&DataTime=20260101080000;a34002-Rtd=abc;a34004-Rtd=NaN;LA-Rtd=55&&";
        let (r, got) = run(data);
        let r = r.unwrap();
        assert_eq!(got, vec![("noise".into(), 55.0, got[0].2)]);
        let reasons: Vec<_> = r.skipped.iter().map(|s| s.reason).collect();
        assert_eq!(
            reasons,
            vec![RejectReason::Malformed, RejectReason::NonFinite]
        );
    }

    #[test]
    fn time_and_command_problems() {
        let (r, _) = run("CN=2011;MN=M1;CP=&&a34002-Rtd=1&&");
        assert_eq!(r.unwrap_err().reason, RejectReason::MissingField);
        let (r, _) = run("CN=2011;MN=M1;CP=&&DataTime=20261301080000;a34002-Rtd=1&&");
        assert_eq!(r.unwrap_err().reason, RejectReason::BadTimestamp);
        let (r, _) = run("CN=2011;MN=M1;CP=&&DataTime=2026;a34002-Rtd=1&&");
        assert_eq!(r.unwrap_err().reason, RejectReason::BadTimestamp);
        // a parameter command carries no readings and is no error
        let (r, got) =
            run("QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=M1;Flag=5;CP=&&RtdInterval=30&&");
        assert!(r.unwrap().not_data);
        assert!(got.is_empty());
        let (r, _) = run("CN=2011;MN=M1;CP=&&DataTime=20260101080000;broken&&");
        assert_eq!(r.unwrap_err().reason, RejectReason::Malformed);
    }

    #[test]
    fn the_code_table_and_the_match_agree() {
        for (code, metric) in CODES {
            assert_eq!(metric_of(code), *metric);
        }
    }

    #[test]
    fn unknown_codes_keep_their_code() {
        assert_eq!(metric_of("a99051"), "a99051");
        assert_eq!(metric_of("a34002"), "pm10");
    }
}
