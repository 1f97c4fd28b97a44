//! JSON readings, as MQTT payloads carry them and JSON-lines files record them:
//! `{"ts": "2026-11-28T08:30:00+08:00" | 1795833000000, "metric": "pm10", "value": 88.1, "unit": "ug/m3"}`
//! or `{"ts": ..., "values": {"pm10": 88.1, "pm2_5": 40.2}}`; recorded lines add `"site"` and
//! `"device"`, which MQTT takes from the topic instead.

use super::DecodeError;
use crate::event::{ReadingRef, RejectReason};
use crate::time::parse_ts;
use chrono_tz::Tz;
use serde::Deserialize;
use std::borrow::Cow;

#[derive(Deserialize)]
#[serde(untagged)]
enum TsField<'a> {
    Int(i64),
    Float(f64),
    #[serde(borrow)]
    Text(Cow<'a, str>),
}

#[derive(Deserialize)]
struct Payload<'a> {
    #[serde(borrow, default)]
    ts: Option<TsField<'a>>,
    #[serde(borrow, default)]
    site: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    device: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    metric: Option<Cow<'a, str>>,
    #[serde(default)]
    value: Option<serde_json::Value>,
    #[serde(default)]
    values: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(borrow, default)]
    #[allow(dead_code)]
    unit: Option<Cow<'a, str>>,
}

/// Decode one JSON reading (or several, for `values`). `site`/`device` from outside (an MQTT
/// topic) take precedence over fields in the payload. Returns the number of readings emitted;
/// with several values, bad ones are reported after the good ones are emitted.
pub fn decode(
    bytes: &[u8],
    site: Option<&str>,
    device: Option<&str>,
    tz: Tz,
    emit: &mut dyn FnMut(ReadingRef<'_>),
) -> Result<usize, DecodeError> {
    let p: Payload = serde_json::from_slice(bytes)
        .map_err(|e| DecodeError::new(RejectReason::Malformed, format!("bad JSON: {e}")))?;
    let ts = match &p.ts {
        None => return Err(DecodeError::new(RejectReason::MissingField, "missing `ts`")),
        Some(TsField::Int(ms)) => *ms,
        Some(TsField::Float(f)) if f.is_finite() => *f as i64,
        Some(TsField::Float(_)) => {
            return Err(DecodeError::new(
                RejectReason::BadTimestamp,
                "`ts` is not finite",
            ))
        }
        Some(TsField::Text(s)) => {
            parse_ts(s, tz).map_err(|e| DecodeError::new(RejectReason::BadTimestamp, e))?
        }
    };
    let site = site.or(p.site.as_deref());
    let device = device
        .or(p.device.as_deref())
        .ok_or_else(|| DecodeError::new(RejectReason::MissingField, "missing `device`"))?;
    let number = |metric: &str, v: &serde_json::Value| -> Result<f64, DecodeError> {
        match v {
            serde_json::Value::Number(n) => n.as_f64().ok_or_else(|| {
                DecodeError::new(
                    RejectReason::Malformed,
                    format!("`{metric}` is not a number"),
                )
            }),
            serde_json::Value::String(s)
                if matches!(
                    s.as_str(),
                    "NaN" | "nan" | "Infinity" | "-Infinity" | "inf" | "-inf"
                ) =>
            {
                Err(DecodeError::new(
                    RejectReason::NonFinite,
                    format!("`{metric}` is {s}"),
                ))
            }
            serde_json::Value::Null => Err(DecodeError::new(
                RejectReason::MissingField,
                format!("`{metric}` is null"),
            )),
            other => Err(DecodeError::new(
                RejectReason::Malformed,
                format!("`{metric}` is not a number: {other}"),
            )),
        }
    };
    match (&p.metric, &p.value, &p.values) {
        (Some(metric), Some(v), None) => {
            let value = number(metric, v)?;
            emit(ReadingRef {
                site,
                device,
                metric,
                value,
                ts,
                arrival: ts,
                source: 0,
            });
            Ok(1)
        }
        (None, None, Some(values)) => {
            if values.is_empty() {
                return Err(DecodeError::new(
                    RejectReason::MissingField,
                    "`values` is empty",
                ));
            }
            let mut n = 0;
            let mut first_err = None;
            for (metric, v) in values {
                match number(metric, v) {
                    Ok(value) => {
                        emit(ReadingRef {
                            site,
                            device,
                            metric,
                            value,
                            ts,
                            arrival: ts,
                            source: 0,
                        });
                        n += 1;
                    }
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            match first_err {
                Some(e) => Err(e),
                None => Ok(n),
            }
        }
        (Some(_), None, None) => Err(DecodeError::new(
            RejectReason::MissingField,
            "missing `value`",
        )),
        (None, Some(_), None) => Err(DecodeError::new(
            RejectReason::MissingField,
            "missing `metric`",
        )),
        (None, None, None) => Err(DecodeError::new(
            RejectReason::MissingField,
            "missing `metric`/`value` or `values`",
        )),
        _ => Err(DecodeError::new(
            RejectReason::Malformed,
            "use either `metric` + `value` or `values`, not both",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Got = (String, String, f64, i64);

    fn run(s: &str) -> (Vec<Got>, Result<usize, RejectReason>) {
        let mut got = Vec::new();
        let r = decode(
            s.as_bytes(),
            None,
            None,
            chrono_tz::Asia::Shanghai,
            &mut |r| got.push((r.device.to_string(), r.metric.to_string(), r.value, r.ts)),
        );
        (got, r.map_err(|e| e.reason))
    }

    #[test]
    fn single_and_multi_value() {
        let (g, r) = run(
            r#"{"ts":"2026-11-28T08:30:00+08:00","site":"s","device":"d","metric":"pm10","value":88.1,"unit":"ug/m3"}"#,
        );
        assert_eq!(r, Ok(1));
        assert_eq!(g[0], ("d".into(), "pm10".into(), 88.1, 1_795_825_800_000));
        let (g, r) =
            run(r#"{"ts":1795833000000,"device":"d","values":{"pm10":88.1,"pm2_5":40.2}}"#);
        assert_eq!(r, Ok(2));
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn bad_payloads_have_reasons() {
        assert_eq!(run("{not json").1, Err(RejectReason::Malformed));
        assert_eq!(
            run(r#"{"device":"d","metric":"m","value":1}"#).1,
            Err(RejectReason::MissingField)
        );
        assert_eq!(
            run(r#"{"ts":"soon","device":"d","metric":"m","value":1}"#).1,
            Err(RejectReason::BadTimestamp)
        );
        assert_eq!(
            run(r#"{"ts":1,"device":"d","metric":"m","value":"NaN"}"#).1,
            Err(RejectReason::NonFinite)
        );
        assert_eq!(
            run(r#"{"ts":1,"device":"d","metric":"m","value":"x"}"#).1,
            Err(RejectReason::Malformed)
        );
        assert_eq!(
            run(r#"{"ts":1,"metric":"m","value":1}"#).1,
            Err(RejectReason::MissingField)
        );
    }
}
