//! Time on the event-time axis: timestamps are milliseconds since the Unix epoch (UTC), durations
//! are milliseconds. Parsing of the human forms used in files (`15m`, `1h30m`, ISO-8601, epoch-ms).

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

/// Event time in milliseconds since the Unix epoch.
pub type Ts = i64;
/// A span of time in milliseconds.
pub type Millis = i64;

pub const SECOND: Millis = 1_000;
pub const MINUTE: Millis = 60 * SECOND;
pub const HOUR: Millis = 60 * MINUTE;
pub const DAY: Millis = 24 * HOUR;

/// Parse a duration such as `30s`, `15m`, `1h30m`, `2d`, `500ms`. A bare `0` is zero.
pub fn parse_duration(s: &str) -> Result<Millis, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total: Millis = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(format!(
                "bad duration `{s}`: expected a number before a unit (ms, s, m, h, d, w)"
            ));
        }
        let n: i64 = s[start..i]
            .parse()
            .map_err(|_| format!("bad duration `{s}`: number too large"))?;
        let ustart = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = match &s[ustart..i] {
            "ms" => 1,
            "s" => SECOND,
            "m" => MINUTE,
            "h" => HOUR,
            "d" => DAY,
            "w" => 7 * DAY,
            "" => {
                return Err(format!(
                    "bad duration `{s}`: missing unit (ms, s, m, h, d, w)"
                ))
            }
            u => {
                return Err(format!(
                    "bad duration `{s}`: unknown unit `{u}` (ms, s, m, h, d, w)"
                ))
            }
        };
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("bad duration `{s}`: too large"))?;
    }
    Ok(total)
}

/// Format a duration the way files write it (`1h30m`, `45s`, `0`).
pub fn format_duration(mut d: Millis) -> String {
    if d == 0 {
        return "0".into();
    }
    let mut out = String::new();
    if d < 0 {
        out.push('-');
        d = -d;
    }
    for (unit, name) in [
        (DAY, "d"),
        (HOUR, "h"),
        (MINUTE, "m"),
        (SECOND, "s"),
        (1, "ms"),
    ] {
        if d >= unit {
            out.push_str(&format!("{}{}", d / unit, name));
            d %= unit;
        }
    }
    out
}

/// Parse a timestamp: epoch milliseconds (an integer), RFC 3339 / ISO-8601 with an offset, or a
/// naive `YYYY-MM-DD[T ]HH:MM[:SS]` read in the given local time zone.
pub fn parse_ts(s: &str, tz: Tz) -> Result<Ts, String> {
    let s = s.trim_ascii();
    // the common case first: epoch milliseconds, digits only
    if let Some(ms) = parse_digits(s.as_bytes()) {
        return Ok(ms as i64);
    }
    if let Ok(dt) = DateTime::<FixedOffset>::parse_from_rfc3339(s) {
        return Ok(dt.timestamp_millis());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%z",
    ] {
        if let Ok(dt) = DateTime::parse_from_str(s, fmt) {
            return Ok(dt.timestamp_millis());
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, fmt) {
            return local_to_ts(naive, tz)
                .ok_or_else(|| format!("timestamp `{s}` does not exist in time zone {tz}"));
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        if let Some(naive) = d.and_hms_opt(0, 0, 0) {
            return local_to_ts(naive, tz)
                .ok_or_else(|| format!("timestamp `{s}` does not exist in time zone {tz}"));
        }
    }
    Err(format!(
        "bad timestamp `{s}`: expected epoch milliseconds or ISO-8601 such as 2026-11-28T08:30:00+08:00"
    ))
}

/// An unsigned decimal of 1 to 18 digits, eight digits at a time (SWAR: each step checks eight
/// bytes are digits and folds them with three multiplications).
#[inline]
pub fn parse_digits(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 18 {
        return None;
    }
    let mut v: u64 = 0;
    let mut chunks = b.chunks_exact(8);
    for chunk in &mut chunks {
        let w = u64::from_le_bytes(<[u8; 8]>::try_from(chunk).ok()?);
        let d = w.wrapping_sub(0x3030_3030_3030_3030);
        // every byte in '0'..='9': no byte below '0' (borrow) and none above after adding 0x76
        if (w & 0xf0f0_f0f0_f0f0_f0f0) != 0x3030_3030_3030_3030
            || (d.wrapping_add(0x7676_7676_7676_7676) & 0x8080_8080_8080_8080) != 0
        {
            return None;
        }
        let d = (d.wrapping_mul(10) + (d >> 8)) & 0x00ff_00ff_00ff_00ff;
        let d = (d.wrapping_mul(100) + (d >> 16)) & 0x0000_ffff_0000_ffff;
        let d = (d.wrapping_mul(10_000) + (d >> 32)) & 0x0000_0000_ffff_ffff;
        v = v * 100_000_000 + d;
    }
    for &c in chunks.remainder() {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u64;
    }
    Some(v)
}

/// A local wall-clock time to event time (the earlier instant when ambiguous).
pub fn local_to_ts(naive: NaiveDateTime, tz: Tz) -> Option<Ts> {
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|d| d.timestamp_millis())
}

/// RFC 3339 in the given zone, to the second (or millisecond when needed).
pub fn format_ts(ts: Ts, tz: Tz) -> String {
    match tz.timestamp_millis_opt(ts).single() {
        Some(dt) => dt.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false),
        None => ts.to_string(),
    }
}

/// Minutes after local midnight of an instant.
pub fn local_minute_of_day(ts: Ts, tz: Tz) -> u32 {
    use chrono::Timelike;
    match tz.timestamp_millis_opt(ts).single() {
        Some(dt) => dt.hour() * 60 + dt.minute(),
        None => 0,
    }
}

/// The local calendar day of an instant, as days since 1970-01-01 in that zone.
pub fn local_day(ts: Ts, tz: Tz) -> i64 {
    use chrono::Offset;
    match tz.timestamp_millis_opt(ts).single() {
        Some(dt) => {
            let off = dt.offset().fix().local_minus_utc() as i64 * 1000;
            (ts + off).div_euclid(DAY)
        }
        None => ts.div_euclid(DAY),
    }
}

/// Parse `HH:MM` into minutes after midnight.
pub fn parse_clock(s: &str) -> Result<u32, String> {
    let (h, m) = s
        .split_once(':')
        .ok_or_else(|| format!("bad time of day `{s}`: expected HH:MM"))?;
    let h: u32 = h.parse().map_err(|_| format!("bad hour in `{s}`"))?;
    let m: u32 = m.parse().map_err(|_| format!("bad minute in `{s}`"))?;
    if h > 24 || m > 59 || (h == 24 && m != 0) {
        return Err(format!("time of day `{s}` out of range 00:00-24:00"));
    }
    Ok(h * 60 + m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_format() {
        assert_eq!(parse_duration("15m"), Ok(15 * MINUTE));
        assert_eq!(parse_duration("1h30m"), Ok(90 * MINUTE));
        assert_eq!(parse_duration("500ms"), Ok(500));
        assert_eq!(parse_duration("2d"), Ok(2 * DAY));
        assert!(parse_duration("15").is_err());
        assert!(parse_duration("15x").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("m").is_err());
        assert_eq!(format_duration(90 * MINUTE), "1h30m");
    }

    #[test]
    fn timestamps_parse_in_all_forms() {
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        let t = parse_ts("2026-11-28T08:30:00+08:00", tz).unwrap();
        assert_eq!(t, 1_795_825_800_000);
        assert_eq!(parse_ts("1795825800000", tz).unwrap(), t);
        assert_eq!(parse_ts("2026-11-28 08:30:00", tz).unwrap(), t);
        assert_eq!(parse_ts("2026-11-28T00:30:00Z", tz).unwrap(), t);
        assert!(parse_ts("yesterday", tz).is_err());
        assert_eq!(format_ts(t, tz), "2026-11-28T08:30:00+08:00");
        assert_eq!(local_minute_of_day(t, tz), 8 * 60 + 30);
    }

    proptest::proptest! {
        #[test]
        fn digits_parse_like_the_standard_parser(s in "[0-9]{1,18}|[0-9:/ a-z.-]{0,20}") {
            let want = if s.bytes().all(|b| b.is_ascii_digit()) { s.parse::<u64>().ok() } else { None };
            proptest::prop_assert_eq!(parse_digits(s.as_bytes()), want);
        }
    }

    #[test]
    fn clock_times() {
        assert_eq!(parse_clock("22:00"), Ok(22 * 60));
        assert!(parse_clock("25:00").is_err());
    }
}
