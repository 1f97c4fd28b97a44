//! JSON readings, as MQTT payloads carry them and JSON-lines files record them:
//! `{"ts": "2026-11-28T08:30:00+08:00" | 1795833000000, "metric": "pm10", "value": 88.1, "unit": "ug/m3"}`
//! or `{"ts": ..., "values": {"pm10": 88.1, "pm2_5": 40.2}}`; recorded lines add `"site"` and
//! `"device"`, which MQTT takes from the topic instead.

use super::DecodeError;
use crate::event::{ReadingRef, RejectReason};
use crate::time::parse_ts;
use chrono_tz::Tz;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// A name field (`site`, `device`, `metric`, a key of `values`): borrowed from the payload
/// unless it has escapes. (serde borrows a `Cow` only when it is the field's whole type, not
/// inside an `Option` or a map, hence the newtype.)
#[derive(Deserialize, PartialEq, Eq, PartialOrd, Ord)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// A JSON scalar as `ts` or a value holds it: a number, text (ISO-8601 for `ts`; `"NaN"` and
/// the like for a value), `null` inside `values`, or anything else, kept as JSON for the message.
enum Scalar<'a> {
    Int(i64),
    Float(f64),
    Text(Cow<'a, str>),
    Null,
    Other(serde_json::Value),
}

#[derive(Deserialize)]
struct Payload<'a> {
    #[serde(borrow, default)]
    ts: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    site: Option<Text<'a>>,
    #[serde(borrow, default)]
    device: Option<Text<'a>>,
    #[serde(borrow, default)]
    metric: Option<Text<'a>>,
    #[serde(borrow, default)]
    value: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    values: Option<BTreeMap<Text<'a>, Scalar<'a>>>,
    #[serde(borrow, default)]
    #[allow(dead_code)]
    unit: Option<Text<'a>>,
}

impl Scalar<'_> {
    /// The number it is, if it is one.
    #[inline]
    fn number(&self) -> Option<f64> {
        match self {
            Scalar::Int(i) => Some(*i as f64),
            Scalar::Float(x) => Some(*x),
            _ => None,
        }
    }
}

// whichever JSON type comes, straight from the parser (serde's `untagged` would first copy
// each field into a buffer and try the variants in turn)
impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(i64::try_from(v).map_or(Scalar::Float(v as f64), Scalar::Int))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Text(Cow::Owned(v.to_string())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Other(serde_json::Value::Bool(v)))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
                serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(a))
                    .map(Scalar::Other)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
                serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(a))
                    .map(Scalar::Other)
            }
        }
        d.deserialize_any(V)
    }
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
    parse(bytes)?.emit(site, device, tz, emit)
}

/// A payload parsed, its names borrowed from the input where they have no escapes. [`decode`]
/// is [`parse`] and [`Parsed::emit`]; a caller holding many lines (replay) parses each once,
/// takes the common case as a [`Parsed::plain`] reading borrowed from its input, and emits the
/// rest.
pub struct Parsed<'b>(Payload<'b>);

/// Parse one payload (`Malformed` when it is not the JSON of one).
pub fn parse(bytes: &[u8]) -> Result<Parsed<'_>, DecodeError> {
    serde_json::from_slice(bytes)
        .map(Parsed)
        .map_err(|e| DecodeError::new(RejectReason::Malformed, format!("bad JSON: {e}")))
}

impl<'b> Parsed<'b> {
    /// The one reading of a recorded line with `device`, `metric`, a number `value`, epoch
    /// milliseconds `ts` (and `site` or none), every name borrowed from the input. `None` for
    /// anything else (an MQTT payload, `values`, escapes, a field missing or bad), which
    /// [`Parsed::emit`] takes. What it returns is what `emit` would emit.
    #[inline]
    pub fn plain(&self) -> Option<ReadingRef<'b>> {
        let p = &self.0;
        let borrowed = |t: &Option<Text<'b>>| match t {
            Some(Text(Cow::Borrowed(s))) => Some(*s),
            _ => None,
        };
        let (Some(Scalar::Int(ts)), Some(value), None) = (&p.ts, &p.value, &p.values) else {
            return None;
        };
        let value = value.number()?;
        let site = match &p.site {
            None => None,
            some => Some(borrowed(some)?),
        };
        Some(ReadingRef {
            site,
            device: borrowed(&p.device)?,
            metric: borrowed(&p.metric)?,
            value,
            ts: *ts,
            arrival: *ts,
            source: 0,
        })
    }

    /// Its readings to `emit`, as [`decode`] describes.
    pub fn emit(
        &self,
        site: Option<&str>,
        device: Option<&str>,
        tz: Tz,
        emit: &mut dyn FnMut(ReadingRef<'_>),
    ) -> Result<usize, DecodeError> {
        let p = &self.0;
        let ts = match &p.ts {
            None | Some(Scalar::Null) => {
                return Err(DecodeError::new(RejectReason::MissingField, "missing `ts`"))
            }
            Some(Scalar::Int(ms)) => *ms,
            Some(Scalar::Float(f)) if f.is_finite() => *f as i64,
            Some(Scalar::Float(_)) => {
                return Err(DecodeError::new(
                    RejectReason::BadTimestamp,
                    "`ts` is not finite",
                ))
            }
            Some(Scalar::Text(s)) => {
                parse_ts(s, tz).map_err(|e| DecodeError::new(RejectReason::BadTimestamp, e))?
            }
            Some(Scalar::Other(v)) => {
                return Err(DecodeError::new(
                    RejectReason::Malformed,
                    format!("`ts` is not a time: {v}"),
                ))
            }
        };
        let site = site.or(p.site.as_ref().map(|t| &*t.0));
        let device = device
            .or(p.device.as_ref().map(|t| &*t.0))
            .ok_or_else(|| DecodeError::new(RejectReason::MissingField, "missing `device`"))?;
        let number = |metric: &str, v: &Scalar| -> Result<f64, DecodeError> {
            match v {
                Scalar::Int(i) => Ok(*i as f64),
                Scalar::Float(x) => Ok(*x),
                Scalar::Text(s)
                    if matches!(
                        &**s,
                        "NaN" | "nan" | "Infinity" | "-Infinity" | "inf" | "-inf"
                    ) =>
                {
                    Err(DecodeError::new(
                        RejectReason::NonFinite,
                        format!("`{metric}` is {s}"),
                    ))
                }
                Scalar::Null => Err(DecodeError::new(
                    RejectReason::MissingField,
                    format!("`{metric}` is null"),
                )),
                Scalar::Text(s) => Err(DecodeError::new(
                    RejectReason::Malformed,
                    format!(
                        "`{metric}` is not a number: {}",
                        serde_json::Value::from(&**s)
                    ),
                )),
                Scalar::Other(other) => Err(DecodeError::new(
                    RejectReason::Malformed,
                    format!("`{metric}` is not a number: {other}"),
                )),
            }
        };
        let reading = |metric, value| ReadingRef {
            site,
            device,
            metric,
            value,
            ts,
            arrival: ts,
            source: 0,
        };
        match (&p.metric, &p.value, &p.values) {
            (Some(Text(metric)), Some(v), None) => {
                emit(reading(metric, number(metric, v)?));
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
                for (Text(metric), v) in values {
                    match number(metric, v) {
                        Ok(value) => {
                            emit(reading(metric, value));
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

    /// The message of a rejected payload.
    fn detail(s: &str) -> String {
        match decode(
            s.as_bytes(),
            None,
            None,
            chrono_tz::Asia::Shanghai,
            &mut |_| {},
        ) {
            Err(e) => e.detail,
            Ok(n) => panic!("{s}: took {n} readings"),
        }
    }

    #[test]
    fn names_with_escapes_and_every_timestamp_form() {
        // escaped names are unescaped (copied), plain ones borrowed: both read the same
        let (g, r) =
            run(r#"{"ts":1795833000000.0,"device":"d\u0065v","metric":"pm\u00310","value":-3}"#);
        assert_eq!(r, Ok(1));
        assert_eq!(g[0], ("dev".into(), "pm10".into(), -3.0, 1_795_833_000_000));
        let (g, r) =
            run(r#"{"ts":"2026-11-28T08:30:00+08:00","device":"d","metric":"m","value":7}"#);
        assert_eq!((r, g[0].3), (Ok(1), 1_795_825_800_000));
        // beyond i64: kept as a float, for the engine to reject as an absurd time
        let (g, r) = run(r#"{"ts":18446744073709551615,"device":"d","metric":"m","value":1}"#);
        assert_eq!(r, Ok(1));
        assert!(g[0].3 > 4_000_000_000_000_000);
        assert_eq!(
            run(r#"{"ts":true,"device":"d","metric":"m","value":1}"#).1,
            Err(RejectReason::Malformed)
        );
        assert_eq!(
            detail(r#"{"ts":[1],"device":"d","metric":"m","value":1}"#),
            "`ts` is not a time: [1]"
        );
        assert_eq!(
            run(r#"{"ts":null,"device":"d","metric":"m","value":1}"#).1,
            Err(RejectReason::MissingField)
        );
    }

    #[test]
    fn what_stands_for_a_value_is_named() {
        let p = |v: &str| format!(r#"{{"ts":1,"device":"d","metric":"m","value":{v}}}"#);
        assert_eq!(detail(&p(r#""12.5""#)), r#"`m` is not a number: "12.5""#);
        assert_eq!(detail(&p("true")), "`m` is not a number: true");
        assert_eq!(detail(&p("[1,2]")), "`m` is not a number: [1,2]");
        assert_eq!(detail(&p(r#"{"a":1}"#)), r#"`m` is not a number: {"a":1}"#);
        assert_eq!(detail(&p(r#""-inf""#)), "`m` is -inf");
        assert_eq!(run(&p("null")).1, Err(RejectReason::MissingField));
        assert_eq!(
            run(r#"{"ts":1,"device":"d","metric":"m","value":1,"unit":5}"#).1,
            Err(RejectReason::Malformed)
        );
    }

    #[test]
    fn several_values_in_key_order_bad_ones_after() {
        let s =
            r#"{"ts":1,"device":"d","values":{"so2":1,"pm10":null,"co":2.5,"co":3,"no2":"NaN"}}"#;
        let (g, r) = run(s);
        let metrics: Vec<_> = g.iter().map(|x| (x.1.as_str(), x.2)).collect();
        // a repeated key keeps its last value
        assert_eq!(metrics, [("co", 3.0), ("so2", 1.0)]);
        // the first bad one in key order is reported
        assert_eq!(r, Err(RejectReason::NonFinite));
        assert_eq!(detail(s), "`no2` is NaN");
    }

    #[test]
    fn plain_is_what_emit_emits_or_nothing() {
        let tz = chrono_tz::Asia::Shanghai;
        let lines = [
            (
                r#"{"ts":5,"site":"s","device":"d","metric":"pm10","value":1.5}"#,
                true,
            ),
            (
                r#"{"ts":5,"device":"d","metric":"pm10","value":-2,"unit":"x"}"#,
                true,
            ),
            (
                r#"{"ts":5,"device":"d\u0031","metric":"pm10","value":1}"#,
                false,
            ),
            (
                r#"{"ts":5,"site":"\u0073","device":"d","metric":"pm10","value":1}"#,
                false,
            ),
            (
                r#"{"ts":"2026-11-28T08:30:00+08:00","device":"d","metric":"m","value":1}"#,
                false,
            ),
            (r#"{"ts":5.5,"device":"d","metric":"m","value":1}"#, false),
            (r#"{"ts":5,"device":"d","values":{"m":1}}"#, false),
            (r#"{"ts":5,"device":"d","metric":"m","value":"NaN"}"#, false),
            (r#"{"ts":5,"metric":"m","value":1}"#, false),
        ];
        for (line, is_plain) in lines {
            let p = parse(line.as_bytes()).expect(line);
            let mut emitted = Vec::new();
            let _ = p.emit(None, None, tz, &mut |r| emitted.push(r.owned()));
            let plain = p.plain().map(|r| r.owned());
            assert_eq!(plain.is_some(), is_plain, "{line}");
            if let Some(x) = plain {
                assert_eq!(emitted, [x], "{line}");
            }
        }
    }
}
