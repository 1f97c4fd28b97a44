//! Wide CSV files (one row per time, one column per metric) through a column mapping, such as the
//! UCI Beijing air-quality files. The mapping is a small YAML file (see `mappings/`):
//!
//! ```yaml
//! timestamp: {year: year, month: month, day: day, hour: hour}   # or {column: ts}
//! timezone: Asia/Shanghai
//! site: {column: station, values: {Dongsi: bj-dongsi}}          # or {value: bj-dongsi}
//! device: {template: "{site}-aq"}                                # or {column: sensor}
//! metrics: {PM2.5: pm2_5, PM10: pm10}
//! missing: [NA, ""]
//! ```

use super::DecodeError;
use crate::config::yaml::{Ctx, Diag};
use crate::event::{ReadingRef, RejectReason};
use crate::time::{local_to_ts, parse_ts};
use chrono::NaiveDate;
use chrono_tz::Tz;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
enum TimeSpec {
    Column(String),
    Parts {
        year: String,
        month: String,
        day: String,
        hour: Option<String>,
        minute: Option<String>,
    },
}

#[derive(Clone, Debug)]
enum Naming {
    Column {
        column: String,
        values: BTreeMap<String, String>,
    },
    Value(String),
    Template(String),
}

/// A loaded column mapping.
#[derive(Clone, Debug)]
pub struct Mapping {
    time: TimeSpec,
    tz: Option<Tz>,
    site: Naming,
    device: Naming,
    metrics: Vec<(String, String)>,
    missing: Vec<String>,
}

impl Mapping {
    pub fn load(file: &str, text: &str) -> Result<Mapping, Vec<Diag>> {
        let ctx = Ctx::new(file);
        let m = read(&ctx, text);
        let d = ctx.into_diags();
        match m {
            Some(m) if d.is_empty() => Ok(m),
            _ => Err(d),
        }
    }
}

fn read(ctx: &Ctx, text: &str) -> Option<Mapping> {
    let root = ctx.parse(text)?;
    let o = ctx.obj(
        &root,
        "mapping",
        &[
            "timestamp",
            "timezone",
            "site",
            "device",
            "metrics",
            "missing",
        ],
    )?;
    let tn = o.required("timestamp")?;
    let t = ctx.obj(
        tn,
        "timestamp",
        &["column", "year", "month", "day", "hour", "minute"],
    )?;
    let time = match t.string("column") {
        Some(c) => TimeSpec::Column(c.v),
        None => TimeSpec::Parts {
            year: t.req_string("year")?.v,
            month: t.req_string("month")?.v,
            day: t.req_string("day")?.v,
            hour: t.string("hour").map(|s| s.v),
            minute: t.string("minute").map(|s| s.v),
        },
    };
    let tz = match o.string("timezone") {
        Some(s) => match s.v.parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                ctx.err(s.pos, format!("unknown time zone `{}`", s.v));
                None
            }
        },
        None => None,
    };
    let naming = |key: &str| -> Option<Naming> {
        let n = o.required(key)?;
        let no = ctx.obj(n, key, &["column", "values", "value", "template"])?;
        if let Some(c) = no.string("column") {
            let mut values = BTreeMap::new();
            if let Some(vn) = no.node("values") {
                if let Some(vo) = vn.as_mapping() {
                    for (k, v) in vo.iter() {
                        if let Some(s) = ctx.string(v, "value") {
                            values.insert(k.as_str().to_string(), s.v);
                        }
                    }
                }
            }
            Some(Naming::Column {
                column: c.v,
                values,
            })
        } else if let Some(v) = no.string("value") {
            Some(Naming::Value(v.v))
        } else if let Some(t) = no.string("template") {
            Some(Naming::Template(t.v))
        } else {
            ctx.err(
                no.pos(),
                format!("{key} needs `column`, `value` or `template`"),
            );
            None
        }
    };
    let site = naming("site")?;
    let device = naming("device")?;
    let mut metrics = Vec::new();
    if let Some(mn) = o.required("metrics") {
        match mn.as_mapping() {
            Some(map) => {
                for (k, v) in map.iter() {
                    if let Some(s) = ctx.string(v, "metric") {
                        metrics.push((k.as_str().to_string(), s.v));
                    }
                }
            }
            None => ctx.err(
                o.key_pos("metrics"),
                "metrics must map column names to metric names",
            ),
        }
    }
    let missing = if o.has("missing") {
        o.strings("missing").into_iter().map(|s| s.v).collect()
    } else {
        vec![String::new(), "NA".into()]
    };
    Some(Mapping {
        time,
        tz,
        site,
        device,
        metrics,
        missing,
    })
}

/// Decodes rows of one wide file: the first line is its header.
pub struct WideDecoder {
    map: Mapping,
    tz: Tz,
    header: Option<BTreeMap<String, usize>>,
    cols: Vec<(usize, String)>,
    /// Cells left empty or marked missing: skipped, and counted here (not errors).
    pub missing_cells: u64,
}

impl WideDecoder {
    pub fn new(map: Mapping, default_tz: Tz) -> WideDecoder {
        let tz = map.tz.unwrap_or(default_tz);
        WideDecoder {
            map,
            tz,
            header: None,
            cols: Vec::new(),
            missing_cells: 0,
        }
    }

    fn col(&self, name: &str) -> Result<usize, DecodeError> {
        self.header
            .as_ref()
            .and_then(|h| h.get(name).copied())
            .ok_or_else(|| {
                DecodeError::new(
                    RejectReason::MissingField,
                    format!("the file has no column `{name}` named in the mapping"),
                )
            })
    }

    /// Decode one line; the header returns Ok(0). Returns readings emitted.
    pub fn decode(
        &mut self,
        line: &[u8],
        emit: &mut dyn FnMut(ReadingRef<'_>),
    ) -> Result<usize, DecodeError> {
        let rec = super::csv_record(line)?;
        if self.header.is_none() {
            self.header = Some(
                rec.iter()
                    .enumerate()
                    .map(|(i, n)| (n.trim().to_string(), i))
                    .collect(),
            );
            let mut cols = Vec::new();
            for (c, m) in &self.map.metrics {
                cols.push((self.col(c)?, m.clone()));
            }
            self.cols = cols;
            return Ok(0);
        }
        let get = |i: usize| rec.get(i).unwrap_or("").trim();
        let ts = match &self.map.time {
            TimeSpec::Column(c) => parse_ts(get(self.col(c)?), self.tz)
                .map_err(|e| DecodeError::new(RejectReason::BadTimestamp, e))?,
            TimeSpec::Parts {
                year,
                month,
                day,
                hour,
                minute,
            } => {
                let num = |name: &Option<String>| -> Result<u32, DecodeError> {
                    match name {
                        None => Ok(0),
                        Some(n) => get(self.col(n)?).parse::<u32>().map_err(|_| {
                            DecodeError::new(
                                RejectReason::BadTimestamp,
                                format!("`{n}` is not a number"),
                            )
                        }),
                    }
                };
                let y = get(self.col(year)?)
                    .parse::<i32>()
                    .map_err(|_| DecodeError::new(RejectReason::BadTimestamp, "bad year"))?;
                let (mo, d) = (num(&Some(month.clone()))?, num(&Some(day.clone()))?);
                let (h, mi) = (num(hour)?, num(minute)?);
                let naive = NaiveDate::from_ymd_opt(y, mo, d)
                    .and_then(|d| d.and_hms_opt(h, mi, 0))
                    .ok_or_else(|| {
                        DecodeError::new(
                            RejectReason::BadTimestamp,
                            format!("no such time {y}-{mo}-{d} {h}:{mi}"),
                        )
                    })?;
                local_to_ts(naive, self.tz).ok_or_else(|| {
                    DecodeError::new(
                        RejectReason::BadTimestamp,
                        "time does not exist in the zone",
                    )
                })?
            }
        };
        let name = |n: &Naming, site: &str| -> Result<String, DecodeError> {
            Ok(match n {
                Naming::Column { column, values } => {
                    let raw = get(self.col(column)?);
                    values.get(raw).cloned().unwrap_or_else(|| raw.to_string())
                }
                Naming::Value(v) => v.clone(),
                Naming::Template(t) => t.replace("{site}", site),
            })
        };
        let site = name(&self.map.site, "")?;
        let device = name(&self.map.device, &site)?;
        let mut n = 0;
        let mut first_err = None;
        for (ci, metric) in &self.cols {
            let raw = get(*ci);
            if self.map.missing.iter().any(|m| m == raw) {
                self.missing_cells += 1;
                continue;
            }
            match raw.parse::<f64>() {
                Ok(v) if v.is_finite() => {
                    emit(ReadingRef {
                        site: Some(&site),
                        device: &device,
                        metric,
                        value: v,
                        ts,
                        arrival: ts,
                        source: 0,
                    });
                    n += 1;
                }
                Ok(_) => {
                    first_err.get_or_insert(DecodeError::new(
                        RejectReason::NonFinite,
                        format!("{metric} = {raw}"),
                    ));
                }
                Err(_) => {
                    first_err.get_or_insert(DecodeError::new(
                        RejectReason::Malformed,
                        format!("{metric}: `{raw}` is not a number"),
                    ));
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = "timestamp: {year: year, month: month, day: day, hour: hour}\ntimezone: Asia/Shanghai\nsite: {column: station, values: {Dongsi: bj-dongsi}}\ndevice: {template: \"{site}-aq\"}\nmetrics: {PM2.5: pm2_5, PM10: pm10}\nmissing: [NA]\n";

    #[test]
    fn beijing_rows_become_readings() {
        let m = Mapping::load("m.yaml", MAP).unwrap();
        let mut d = WideDecoder::new(m, chrono_tz::UTC);
        let mut got = Vec::new();
        let mut run = |line: &str, d: &mut WideDecoder| {
            d.decode(line.as_bytes(), &mut |r| got.push(r.owned()))
        };
        assert_eq!(
            run(
                "\"No\",\"year\",\"month\",\"day\",\"hour\",\"PM2.5\",\"PM10\",\"station\"",
                &mut d
            ),
            Ok(0)
        );
        assert_eq!(run("1,2015,12,1,8,480,NA,\"Dongsi\"", &mut d), Ok(1));
        assert_eq!(d.missing_cells, 1);
        assert_eq!(
            got[0],
            (
                Some("bj-dongsi".into()),
                "bj-dongsi-aq".into(),
                "pm2_5".into(),
                480.0,
                1_448_928_000_000
            )
        );
    }

    #[test]
    fn mapping_errors_have_positions() {
        let e = Mapping::load("m.yaml", "timestamp: {colum: ts}\n").unwrap_err();
        assert!(
            e[0].to_string()
                .starts_with("m.yaml:1:13: unknown field `colum`"),
            "{}",
            e[0]
        );
    }
}
