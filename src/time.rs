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

/// Eight ASCII `0`s, one per byte of a word.
pub(crate) const ZEROS: u64 = 0x3030_3030_3030_3030;

/// Eight ASCII digits read as a little-endian word (the first digit in the low byte) as their
/// value; `None` when any byte is not a digit.
#[inline(always)]
pub(crate) fn eight_digits(w: u64) -> Option<u64> {
    let d = w.wrapping_sub(ZEROS);
    // every byte in '0'..='9': no byte below '0' (borrow) and none above after adding 0x76
    if (w & 0xf0f0_f0f0_f0f0_f0f0) != ZEROS
        || (d.wrapping_add(0x7676_7676_7676_7676) & 0x8080_8080_8080_8080) != 0
    {
        return None;
    }
    let d = (d.wrapping_mul(10) + (d >> 8)) & 0x00ff_00ff_00ff_00ff;
    let d = (d.wrapping_mul(100) + (d >> 16)) & 0x0000_ffff_0000_ffff;
    Some((d.wrapping_mul(10_000) + (d >> 32)) & 0x0000_0000_ffff_ffff)
}

/// An unsigned decimal of 1 to 18 digits, eight digits at a time (SWAR: each step checks eight
/// bytes are digits and folds them with three multiplications). The digits after the last full
/// eight are read as the last eight bytes, those already read set to `0`, so a 13-digit epoch
/// millisecond takes two steps and no loop. Always inlined: every reading's time goes through it.
#[inline(always)]
pub fn parse_digits(b: &[u8]) -> Option<u64> {
    let n = b.len();
    if n == 0 || n > 18 {
        return None;
    }
    if n < 8 {
        let mut v: u64 = 0;
        for &c in b {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + (c - b'0') as u64;
        }
        return Some(v);
    }
    let (words, rest) = b.as_chunks::<8>();
    let mut v: u64 = 0;
    for w in words {
        v = v * 100_000_000 + eight_digits(u64::from_le_bytes(*w))?;
    }
    let r = rest.len();
    if r > 0 {
        let last: [u8; 8] = b[n - 8..].try_into().ok()?;
        // the last r bytes are the high ones; the others were digits already read
        let keep = u64::MAX << (8 * (8 - r));
        const SCALE: [u64; 8] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000];
        v = v * SCALE[r] + eight_digits((u64::from_le_bytes(last) & keep) | (ZEROS & !keep))?;
    }
    Some(v)
}

/// A local wall-clock time to event time (the earlier instant when ambiguous).
pub fn local_to_ts(naive: NaiveDateTime, tz: Tz) -> Option<Ts> {
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|d| d.timestamp_millis())
}

/// RFC 3339 in the given zone, to the second (or millisecond when needed), as chrono's
/// `to_rfc3339_opts(SecondsFormat::AutoSi, false)` writes it. Warnings carry four or more
/// timestamps each, so years 0000-9999 in whole-minute zones are written directly; anything
/// else goes through chrono.
pub fn format_ts(ts: Ts, tz: Tz) -> String {
    const MIN: Ts = -62_167_219_200_000; // 0000-01-01T00:00:00Z
    const MAX: Ts = 253_402_300_800_000; // 10000-01-01T00:00:00Z
    let direct = utc_offset_ms(ts, tz)
        .filter(|off| off % MINUTE == 0 && (MIN + DAY..MAX - DAY).contains(&ts));
    if let Some(off) = direct {
        let local = ts + off;
        let (y, m, d) = civil_from_days(local.div_euclid(DAY));
        let ms = local.rem_euclid(DAY);
        let (hh, mm, ss, frac) = (ms / HOUR, ms / MINUTE % 60, ms / SECOND % 60, ms % SECOND);
        let mut b = [0u8; 29];
        let put = |b: &mut [u8], v: i64, at: usize, n: usize| {
            let mut v = v;
            for k in (at..at + n).rev() {
                b[k] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(&mut b, y, 0, 4);
        b[4] = b'-';
        put(&mut b, m, 5, 2);
        b[7] = b'-';
        put(&mut b, d, 8, 2);
        b[10] = b'T';
        put(&mut b, hh, 11, 2);
        b[13] = b':';
        put(&mut b, mm, 14, 2);
        b[16] = b':';
        put(&mut b, ss, 17, 2);
        let mut n = 19;
        if frac != 0 {
            b[19] = b'.';
            put(&mut b, frac, 20, 3);
            n = 23;
        }
        b[n] = if off < 0 { b'-' } else { b'+' };
        let oa = off.abs() / MINUTE;
        put(&mut b, oa / 60, n + 1, 2);
        b[n + 3] = b':';
        put(&mut b, oa % 60, n + 4, 2);
        // every byte written above is ASCII, so this never fails
        if let Ok(text) = std::str::from_utf8(&b[..n + 6]) {
            return text.to_string();
        }
    }
    match tz.timestamp_millis_opt(ts).single() {
        Some(dt) => dt.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false),
        None => ts.to_string(),
    }
}

/// The zone's offset from UTC at an instant, in milliseconds (`None` outside chrono's range).
fn utc_offset_ms(ts: Ts, tz: Tz) -> Option<Millis> {
    use chrono::Offset;
    if tz == Tz::UTC {
        return Some(0);
    }
    let utc = DateTime::from_timestamp_millis(ts)?.naive_utc();
    Some(tz.offset_from_utc_datetime(&utc).fix().local_minus_utc() as Millis * SECOND)
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), after Howard Hinnant's
/// `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Minutes after local midnight of an instant.
pub fn local_minute_of_day(ts: Ts, tz: Tz) -> u32 {
    match utc_offset_ms(ts, tz) {
        Some(off) => ((ts + off).rem_euclid(DAY) / MINUTE) as u32,
        None => 0,
    }
}

/// The local calendar day of an instant, as days since 1970-01-01 in that zone.
pub fn local_day(ts: Ts, tz: Tz) -> i64 {
    (ts + utc_offset_ms(ts, tz).unwrap_or(0)).div_euclid(DAY)
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
        fn timestamps_format_like_chrono(
            ts in proptest::prop_oneof![
                -62_200_000_000_000i64..253_500_000_000_000,
                1_500_000_000_000i64..2_000_000_000_000,
                proptest::strategy::Strategy::prop_map(0i64..100_000, |s| 1_700_000_000_000 + s * 1000),
            ],
            zone in 0usize..6,
        ) {
            let tz: Tz = ["UTC", "Asia/Shanghai", "America/New_York", "Asia/Kolkata",
                "Asia/Kathmandu", "America/St_Johns"][zone].parse().unwrap();
            let want = match tz.timestamp_millis_opt(ts).single() {
                Some(dt) => dt.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false),
                None => ts.to_string(),
            };
            proptest::prop_assert_eq!(format_ts(ts, tz), want);
            let minute = match tz.timestamp_millis_opt(ts).single() {
                Some(dt) => { use chrono::Timelike; dt.hour() * 60 + dt.minute() }
                None => 0,
            };
            proptest::prop_assert_eq!(local_minute_of_day(ts, tz), minute);
        }

        #[test]
        fn digits_parse_like_the_standard_parser(s in "[0-9]{1,18}|[0-9:/ a-z.-]{0,20}|[0-9]{8,15}[:/ a-z.-][0-9]{0,2}") {
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
