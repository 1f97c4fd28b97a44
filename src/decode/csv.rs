//! Narrow CSV readings: `ts,site,device,metric,value[,unit]`. A header row (recognised by a `ts`
//! column) may reorder the columns; without one the order above is assumed. Timestamps are epoch
//! milliseconds or ISO-8601. Lines are split on commas directly; quoted fields go through the
//! `csv` crate.

use super::DecodeError;
use crate::event::{ReadingRef, RejectReason};
use crate::time::parse_ts;
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
    started: bool,
    quoted: Vec<String>,
}

impl CsvDecoder {
    pub fn new(tz: Tz) -> CsvDecoder {
        CsvDecoder {
            tz,
            cols: [0, 1, 2, 3, 4],
            started: false,
            quoted: Vec::new(),
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
        let mut n = 0;
        for i in memchr::memchr2_iter(b',', b'"', line) {
            if line[i] == b'"' {
                return self.decode_quoted(line, emit);
            }
            n += 1;
            if n >= MAX_FIELDS {
                return Err(DecodeError::new(
                    RejectReason::Malformed,
                    "too many columns",
                ));
            }
            bounds[n] = i + 1;
        }
        n += 1;
        bounds[n] = line.len() + 1;
        // one UTF-8 check for the line; commas are ASCII, so every field is a valid slice
        let text = std::str::from_utf8(line)
            .map_err(|_| DecodeError::new(RejectReason::Malformed, "not UTF-8"))?;
        let mut fields: [&str; MAX_FIELDS] = [""; MAX_FIELDS];
        for (k, f) in fields.iter_mut().enumerate().take(n) {
            *f = &text[bounds[k]..bounds[k + 1] - 1];
        }
        if !self.started {
            self.started = true;
            let raw: Vec<&[u8]> = fields[..n].iter().map(|f| f.as_bytes()).collect();
            if self.try_header(&raw)? {
                return Ok(false);
            }
        }
        let f = |c: usize| -> Result<&str, DecodeError> {
            if c < n {
                Ok(fields[c])
            } else {
                Err(DecodeError::new(
                    RejectReason::Malformed,
                    format!("expected at least {} columns, got {n}", c + 1),
                ))
            }
        };
        self.emit_row(f, emit)
    }

    /// Build the reading from a row's fields (by column index) and hand it on.
    fn emit_row<'a>(
        &self,
        f: impl Fn(usize) -> Result<&'a str, DecodeError>,
        emit: &mut dyn FnMut(ReadingRef<'_>),
    ) -> Result<bool, DecodeError> {
        let c = &self.cols;
        let r = reading(
            f(c[TS])?,
            opt(&f, c[SITE])?,
            f(c[DEVICE])?,
            f(c[METRIC])?,
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
        self.quoted = rec.iter().map(|s| s.to_string()).collect();
        let q = std::mem::take(&mut self.quoted);
        if !self.started {
            self.started = true;
            let bytes: Vec<&[u8]> = q.iter().map(|s| s.as_bytes()).collect();
            if self.try_header(&bytes)? {
                return Ok(false);
            }
        }
        let f = |c: usize| -> Result<&str, DecodeError> {
            q.get(c).map(|s| s.as_str()).ok_or_else(|| {
                DecodeError::new(
                    RejectReason::Malformed,
                    format!("expected at least {} columns, got {}", c + 1, q.len()),
                )
            })
        };
        self.emit_row(f, emit)
    }
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

/// Build a reading from text fields, with precise reasons for what is wrong.
pub fn reading<'a>(
    ts: &'a str,
    site: Option<&'a str>,
    device: &'a str,
    metric: &'a str,
    value: &'a str,
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
    let v: f64 = value.parse().map_err(|_| {
        DecodeError::new(
            RejectReason::Malformed,
            format!("value `{value}` is not a number"),
        )
    })?;
    if !v.is_finite() {
        return Err(DecodeError::new(
            RejectReason::NonFinite,
            format!("value `{value}` is not finite"),
        ));
    }
    let ts = parse_ts(ts, tz).map_err(|e| DecodeError::new(RejectReason::BadTimestamp, e))?;
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
