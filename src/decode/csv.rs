//! Narrow CSV readings: `ts,site,device,metric,value[,unit]`. A header row (recognised by a `ts`
//! column) may reorder the columns; without one the order above is assumed. Timestamps are epoch
//! milliseconds or ISO-8601. Lines are split on commas directly; quoted fields go through the
//! `csv` crate.

use super::DecodeError;
use crate::event::{ReadingRef, RejectReason};
use crate::time::{parse_digits, parse_ts};
use chrono_tz::Tz;

const TS: usize = 0;
const SITE: usize = 1;
const DEVICE: usize = 2;
const METRIC: usize = 3;
const VALUE: usize = 4;
const MAX_FIELDS: usize = 16;

pub struct CsvDecoder {
    tz: Tz,
    /// Field index of ts, site, device, metric, value (usize::MAX = absent).
    cols: [usize; 5],
    /// The highest field index of `cols` that is present: a row with more fields has them all.
    last_col: usize,
    started: bool,
}

impl CsvDecoder {
    pub fn new(tz: Tz) -> CsvDecoder {
        CsvDecoder {
            tz,
            cols: [0, 1, 2, 3, 4],
            last_col: 4,
            started: false,
        }
    }

    /// Decode one line. A header line returns `Ok(false)`; a reading `Ok(true)` after `emit`.
    #[inline]
    pub fn decode<'a>(
        &'a mut self,
        line: &'a [u8],
        emit: &mut dyn FnMut(ReadingRef<'_>),
    ) -> Result<bool, DecodeError> {
        // split on commas in one pass; a quote sends the line to the full CSV parser
        let mut bounds = [0usize; MAX_FIELDS + 1];
        let (n, ascii) = match split_commas(line, &mut bounds) {
            Split::Fields { n, ascii } => (n, ascii),
            Split::Quoted => return self.decode_quoted(line, emit),
            Split::TooMany => {
                return Err(DecodeError::new(
                    RejectReason::Malformed,
                    "too many columns",
                ))
            }
        };
        // fields stay bytes: the time and the value are parsed from bytes, and only the names
        // (site, device, metric) are checked as UTF-8, in one call over the span that holds them
        let field = |k: usize| &line[bounds[k]..bounds[k + 1] - 1];
        if !self.started {
            self.started = true;
            let raw: Vec<&[u8]> = (0..n).map(field).collect();
            if self.try_header(&raw)? {
                return Ok(false);
            }
        }
        if ascii && n > self.last_col {
            // the common case: every column there and the line plain ASCII (so any byte range
            // of it is text); no per-field checks or error paths
            let c = &self.cols;
            // SAFETY: `ascii` says every byte of the line is below 0x80
            let name = |k: usize| unsafe { ascii_str(field(k)) };
            let site = match c[SITE] {
                usize::MAX => None,
                k => Some(name(k)).filter(|s| !s.is_empty()),
            };
            let r = reading(
                field(c[TS]),
                site,
                name(c[DEVICE]),
                name(c[METRIC]),
                field(c[VALUE]),
                self.tz,
            )?;
            emit(r);
            return Ok(true);
        }
        let missing = |c: usize| {
            DecodeError::new(
                RejectReason::Malformed,
                format!("expected at least {} columns, got {n}", c + 1),
            )
        };
        let f = |c: usize| if c < n { Ok(field(c)) } else { Err(missing(c)) };
        let (mut lo, mut hi) = (line.len(), 0);
        for c in [self.cols[SITE], self.cols[DEVICE], self.cols[METRIC]] {
            if c < n {
                lo = lo.min(bounds[c]);
                hi = hi.max(bounds[c + 1] - 1);
            }
        }
        let names = match &line[lo.min(hi)..hi] {
            [] => "",
            // SAFETY: `ascii` says every byte of the line is below 0x80
            span if ascii => unsafe { ascii_str(span) },
            span => utf8(span)?,
        };
        let g = |c: usize| {
            if c < n {
                Ok(names
                    .get(bounds[c] - lo..bounds[c + 1] - 1 - lo)
                    .unwrap_or_default())
            } else {
                Err(missing(c))
            }
        };
        self.emit_row(f, g, emit)
    }

    /// Build the reading from a row's fields (by column index) and hand it on.
    #[inline]
    /// `f` gives a field's bytes, `g` a name field (site, device, metric) as text.
    fn emit_row<'a>(
        &self,
        f: impl Fn(usize) -> Result<&'a [u8], DecodeError>,
        g: impl Fn(usize) -> Result<&'a str, DecodeError>,
        emit: &mut dyn FnMut(ReadingRef<'_>),
    ) -> Result<bool, DecodeError> {
        let c = &self.cols;
        let r = reading(
            f(c[TS])?,
            opt(&g, c[SITE])?,
            g(c[DEVICE])?,
            g(c[METRIC])?,
            f(c[VALUE])?,
            self.tz,
        )?;
        emit(r);
        Ok(true)
    }

    fn try_header(&mut self, fields: &[&[u8]]) -> Result<bool, DecodeError> {
        let names: Vec<String> = fields
            .iter()
            .map(|f| String::from_utf8_lossy(f).trim().to_ascii_lowercase())
            .collect();
        if !names
            .iter()
            .any(|n| matches!(n.as_str(), "ts" | "timestamp" | "time"))
        {
            return Ok(false);
        }
        let find = |alts: &[&str]| {
            names
                .iter()
                .position(|n| alts.contains(&n.as_str()))
                .unwrap_or(usize::MAX)
        };
        self.cols = [
            find(&["ts", "timestamp", "time"]),
            find(&["site", "site_id"]),
            find(&["device", "device_id", "sensor", "sensor_id"]),
            find(&["metric"]),
            find(&["value"]),
        ];
        self.last_col = self
            .cols
            .iter()
            .copied()
            .filter(|&c| c != usize::MAX)
            .max()
            .unwrap_or(0);
        for (i, name) in ["device", "metric", "value"].iter().enumerate() {
            if self.cols[DEVICE + i] == usize::MAX {
                return Err(DecodeError::new(
                    RejectReason::MissingField,
                    format!("the header has no `{name}` column"),
                ));
            }
        }
        Ok(true)
    }

    fn decode_quoted(
        &mut self,
        line: &[u8],
        emit: &mut dyn FnMut(ReadingRef<'_>),
    ) -> Result<bool, DecodeError> {
        let rec = super::csv_record(line)?;
        let q: Vec<String> = rec.iter().map(|s| s.to_string()).collect();
        if !self.started {
            self.started = true;
            let bytes: Vec<&[u8]> = q.iter().map(|s| s.as_bytes()).collect();
            if self.try_header(&bytes)? {
                return Ok(false);
            }
        }
        let g = |c: usize| -> Result<&str, DecodeError> {
            q.get(c).map(|s| s.as_str()).ok_or_else(|| {
                DecodeError::new(
                    RejectReason::Malformed,
                    format!("expected at least {} columns, got {}", c + 1, q.len()),
                )
            })
        };
        self.emit_row(|c| g(c).map(str::as_bytes), g, emit)
    }
}

/// Bytes already known to be ASCII as text, without validating them again: the comma scan saw
/// every byte of the line, and std's check costs more than the rest of a short line's decoding.
///
/// # Safety
/// Every byte of `b` must be below 0x80 (ASCII, hence valid UTF-8).
#[inline]
unsafe fn ascii_str(b: &[u8]) -> &str {
    debug_assert!(b.is_ascii());
    // SAFETY: the caller guarantees ASCII, and ASCII is valid UTF-8
    unsafe { std::str::from_utf8_unchecked(b) }
}

#[inline]
fn utf8(b: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(b).map_err(|_| DecodeError::new(RejectReason::Malformed, "not UTF-8"))
}

fn opt<'a>(
    f: &impl Fn(usize) -> Result<&'a str, DecodeError>,
    c: usize,
) -> Result<Option<&'a str>, DecodeError> {
    if c == usize::MAX {
        return Ok(None);
    }
    f(c).map(|s| if s.is_empty() { None } else { Some(s) })
}

enum Split {
    /// Number of fields; `bounds[k]..bounds[k + 1] - 1` is field k. `ascii`: every byte of the
    /// line is below 0x80.
    Fields {
        n: usize,
        ascii: bool,
    },
    Quoted,
    TooMany,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// The high bit of each byte of `w` that equals `b`, exactly (no false positives).
#[inline]
fn bytes_equal(w: u64, b: u8) -> u64 {
    let x = w ^ (ONES * b as u64);
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// Find the commas of a line eight bytes at a time (lines are short: a call per comma to a
/// general search routine costs more than the line).
#[inline]
fn split_commas(line: &[u8], bounds: &mut [usize; MAX_FIELDS + 1]) -> Split {
    let mut n = 0;
    let mut comma = |i: usize, n: &mut usize| -> bool {
        *n += 1;
        if *n >= MAX_FIELDS {
            return false;
        }
        bounds[*n] = i + 1;
        true
    };
    let mut chunks = line.chunks_exact(8);
    let mut base = 0;
    let mut high = 0u64;
    for chunk in &mut chunks {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
            continue;
        };
        let w = u64::from_le_bytes(bytes);
        high |= w;
        if bytes_equal(w, b'"') != 0 {
            return Split::Quoted;
        }
        let mut m = bytes_equal(w, b',');
        while m != 0 {
            if !comma(base + (m.trailing_zeros() / 8) as usize, &mut n) {
                return Split::TooMany;
            }
            m &= m - 1;
        }
        base += 8;
    }
    for (k, &b) in chunks.remainder().iter().enumerate() {
        high |= b as u64;
        if b == b'"' {
            return Split::Quoted;
        }
        if b == b',' && !comma(base + k, &mut n) {
            return Split::TooMany;
        }
    }
    n += 1;
    bounds[n] = line.len() + 1;
    Split::Fields {
        n,
        ascii: high & (ONES << 7) == 0,
    }
}

/// Powers of ten that are exact in an f64.
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// Plain decimals (`-12.34`, at most 15 digits) the fast way: the digits and the power of ten are
/// both exact in an f64 and IEEE division rounds correctly, so the result equals `str::parse`.
/// Anything else (exponents, signs, long numbers, NaN) returns `None` for the general parser.
#[inline]
fn parse_decimal(b: &[u8]) -> Option<f64> {
    let (neg, digits) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        _ => (false, b),
    };
    let (mut m, mut count, mut frac, mut dot) = (0u64, 0usize, 0usize, false);
    for &c in digits {
        match c {
            b'0'..=b'9' => {
                m = m * 10 + (c - b'0') as u64;
                count += 1;
                frac += usize::from(dot);
            }
            b'.' if !dot => dot = true,
            _ => return None,
        }
    }
    if count == 0 || count > 15 {
        return None;
    }
    let v = m as f64 / POW10[frac];
    Some(if neg { -v } else { v })
}

/// Build a reading from its fields (time and value as the raw bytes), with precise reasons for
/// what is wrong.
#[inline]
pub fn reading<'a>(
    ts: &[u8],
    site: Option<&'a str>,
    device: &'a str,
    metric: &'a str,
    value: &[u8],
    tz: Tz,
) -> Result<ReadingRef<'a>, DecodeError> {
    if device.is_empty() {
        return Err(DecodeError::new(RejectReason::MissingField, "empty device"));
    }
    if metric.is_empty() {
        return Err(DecodeError::new(RejectReason::MissingField, "empty metric"));
    }
    let value = value.trim_ascii();
    if value.is_empty() {
        return Err(DecodeError::new(RejectReason::MissingField, "empty value"));
    }
    let v: f64 = match parse_decimal(value) {
        Some(v) => v,
        None => {
            let text = String::from_utf8_lossy(value);
            let v: f64 = text.parse().map_err(|_| {
                DecodeError::new(
                    RejectReason::Malformed,
                    format!("value `{text}` is not a number"),
                )
            })?;
            if !v.is_finite() {
                return Err(DecodeError::new(
                    RejectReason::NonFinite,
                    format!("value `{text}` is not finite"),
                ));
            }
            v
        }
    };
    // the common case first: epoch milliseconds, digits only
    let ts = match parse_digits(ts) {
        Some(ms) => ms as i64,
        None => parse_ts(&String::from_utf8_lossy(ts), tz)
            .map_err(|e| DecodeError::new(RejectReason::BadTimestamp, e))?,
    };
    Ok(ReadingRef {
        site,
        device,
        metric,
        value: v,
        ts,
        arrival: ts,
        source: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Got = (String, String, f64, i64);

    fn run(lines: &[&str]) -> Vec<Result<Option<Got>, RejectReason>> {
        let mut d = CsvDecoder::new(chrono_tz::Asia::Shanghai);
        lines
            .iter()
            .map(|l| {
                let mut got = None;
                match d.decode(l.as_bytes(), &mut |r| {
                    got = Some((r.device.to_string(), r.metric.to_string(), r.value, r.ts))
                }) {
                    Ok(_) => Ok(got),
                    Err(e) => Err(e.reason),
                }
            })
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn fast_decimals_equal_the_standard_parser(m in 0u64..1_000_000_000_000_000, frac in 0usize..16, neg: bool) {
            let digits = m.to_string();
            let s = if frac == 0 || frac >= digits.len() { digits.clone() } else { format!("{}.{}", &digits[..digits.len() - frac], &digits[digits.len() - frac..]) };
            let s = if neg { format!("-{s}") } else { s };
            if let Some(v) = parse_decimal(s.as_bytes()) {
                proptest::prop_assert_eq!(v.to_bits(), s.parse::<f64>().unwrap_or(f64::NAN).to_bits(), "{}", s);
            }
        }

        /// The direct path (ASCII rows with every column) decides exactly as the general one,
        /// which a non-ASCII byte in a sixth column forces.
        #[test]
        fn the_direct_path_agrees_with_the_general_one(
            ts in "17[0-9]{11}|[0-9]{0,3}|x1|2026-11-28T08:00:00Z",
            site in "[a-z0-9]{0,3}",
            device in "[a-z0-9]{1,4}|",
            metric in "pm10|noise_db|",
            value in "-?[0-9]{1,4}(\\.[0-9]{1,3})?|NaN|abc|1e3|",
            header: bool,
        ) {
            let decide = |line: String| {
                let mut d = CsvDecoder::new(chrono_tz::Asia::Shanghai);
                if header {
                    let mut skip = |_: ReadingRef<'_>| {};
                    let _ = d.decode(b"device,ts,value,site,metric,unit", &mut skip);
                }
                let mut got = None;
                let res = d.decode(line.as_bytes(), &mut |r| {
                    got = Some((r.site.map(str::to_string), r.device.to_string(), r.metric.to_string(), r.value.to_bits(), r.ts))
                });
                res.map(|_| got).map_err(|e| e.reason)
            };
            let row = if header {
                format!("{device},{ts},{value},{site},{metric}")
            } else {
                format!("{ts},{site},{device},{metric},{value}")
            };
            let direct = decide(row.clone());
            let general = decide(format!("{row},µg/m³"));
            proptest::prop_assert_eq!(direct, general);
        }

        #[test]
        fn commas_are_found_like_a_plain_split(line in "[a-z0-9,.]{0,60}|[a-z0-9,.é監]{0,30}") {
            let mut bounds = [0usize; MAX_FIELDS + 1];
            let want: Vec<&str> = line.split(',').collect();
            match split_commas(line.as_bytes(), &mut bounds) {
                Split::Fields { n, ascii } => {
                    let got: Vec<&str> = (0..n).map(|k| &line[bounds[k]..bounds[k + 1] - 1]).collect();
                    proptest::prop_assert_eq!(got, want);
                    proptest::prop_assert_eq!(ascii, line.is_ascii());
                }
                Split::TooMany => proptest::prop_assert!(want.len() >= MAX_FIELDS),
                Split::Quoted => proptest::prop_assert!(false, "no quotes here"),
            }
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_get_a_reason() {
        let mut d = CsvDecoder::new(chrono_tz::Asia::Shanghai);
        let mut reason = |line: &[u8]| d.decode(line, &mut |_| {}).err().map(|e| e.reason);
        assert_eq!(
            reason(b"1700000000000,1,d\xff,pm10,1"),
            Some(RejectReason::Malformed)
        );
        assert_eq!(
            reason(b"1700000000000,1,d1,pm\xc3,1"),
            Some(RejectReason::Malformed)
        );
        assert_eq!(
            reason(b"1700000000000,1,d1,pm10,1\xff"),
            Some(RejectReason::Malformed)
        );
        assert_eq!(
            reason(b"17000\xff,1,d1,pm10,1"),
            Some(RejectReason::BadTimestamp)
        );
        assert_eq!(reason(b"1700000000000,1,\xe9\xa3\x8e,pm10,1"), None);
    }

    #[test]
    fn headerless_and_header_forms() {
        let r = run(&[
            "1700000000000,1,12,pm10,55.5",
            "1700000000001,1,12,pm10,NaN",
            "1700000000002,1,12,pm10,abc",
            "x,1,12,pm10,1",
            "1700000000003,1",
        ]);
        assert_eq!(
            r[0],
            Ok(Some(("12".into(), "pm10".into(), 55.5, 1_700_000_000_000)))
        );
        assert_eq!(r[1], Err(RejectReason::NonFinite));
        assert_eq!(r[2], Err(RejectReason::Malformed));
        assert_eq!(r[3], Err(RejectReason::BadTimestamp));
        assert_eq!(r[4], Err(RejectReason::Malformed));
        let r = run(&[
            "metric,value,device,ts",
            "pm10,3,d1,2026-11-28T08:00:00+08:00",
            "\"pm10\",\"4\",\"d,2\",1795824000000",
        ]);
        assert_eq!(r[0], Ok(None));
        assert_eq!(
            r[1],
            Ok(Some(("d1".into(), "pm10".into(), 3.0, 1_795_824_000_000)))
        );
        assert_eq!(
            r[2],
            Ok(Some(("d,2".into(), "pm10".into(), 4.0, 1_795_824_000_000)))
        );
    }
}
