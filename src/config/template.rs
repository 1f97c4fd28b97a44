//! Message templates: `{site.name}PM10小时均值{value:.0}µg/m³，超过{level}预警阈值{threshold}`.
//! Placeholders are checked when the rule file loads, so a typo never reaches a department.

/// Names a template may use.
pub const PLACEHOLDERS: &[&str] = &[
    "site.id",
    "site.name",
    "site.kind",
    "device",
    "key",
    "metric",
    "value",
    "threshold",
    "level",
    "rule",
    "title",
    "window.start",
    "window.end",
    "window.size",
    "count",
    "duration",
];

#[derive(Clone, Debug, PartialEq)]
pub enum Piece {
    Text(String),
    Var {
        name: String,
        /// `:.N` digits, or `:hm` / `:时分` (a number of hours as hours and minutes).
        precision: Option<usize>,
        hours: Option<bool>,
    },
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Template {
    pub pieces: Vec<Piece>,
}

impl Template {
    /// Parse; the error carries the byte offset of the bad placeholder.
    pub fn parse(src: &str) -> Result<Template, (usize, String)> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = src.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if matches!(chars.peek(), Some((_, '{'))) => {
                    chars.next();
                    text.push('{');
                }
                '}' if matches!(chars.peek(), Some((_, '}'))) => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let mut inner = String::new();
                    let mut closed = false;
                    for (_, c) in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        inner.push(c);
                    }
                    if !closed {
                        return Err((
                            i,
                            "unclosed `{` in message (write `{{` for a literal brace)".into(),
                        ));
                    }
                    let (name, precision, hours) = match inner.split_once(':') {
                        Some((n, "hm")) => (n.trim().to_string(), None, Some(false)),
                        Some((n, "时分")) => (n.trim().to_string(), None, Some(true)),
                        Some((n, fmt)) => {
                            let p = fmt
                                .strip_prefix('.')
                                .and_then(|d| d.parse::<usize>().ok())
                                .filter(|p| *p <= 6)
                                .ok_or((i, format!("bad format `{fmt}` in `{{{inner}}}`: use `.N` digits, e.g. `{{value:.1}}`, or `hm` / `时分` for hours as hours and minutes")))?;
                            (n.trim().to_string(), Some(p), None)
                        }
                        None => (inner.trim().to_string(), None, None),
                    };
                    if !PLACEHOLDERS.contains(&name.as_str()) {
                        let hint = super::yaml::suggest(&name, PLACEHOLDERS)
                            .map(|s| format!("; did you mean `{{{s}}}`?"))
                            .unwrap_or_else(|| format!(" (known: {})", PLACEHOLDERS.join(", ")));
                        return Err((
                            i,
                            format!("unknown placeholder `{{{name}}}` in message{hint}"),
                        ));
                    }
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(Piece::Var {
                        name,
                        precision,
                        hours,
                    });
                }
                '}' => {
                    return Err((
                        i,
                        "unmatched `}` in message (write `}}` for a literal brace)".into(),
                    ))
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Template { pieces })
    }

    /// Render with a lookup for placeholder values. Numbers honour `:.N`.
    pub fn render<'a>(&self, lookup: impl Fn(&str) -> Value<'a>) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Var {
                    name,
                    precision,
                    hours,
                } => match lookup(name) {
                    Value::Num(v) if hours.is_some() => {
                        out.push_str(&fmt_hours(v, *hours == Some(true)))
                    }
                    Value::Num(v) => match precision {
                        Some(p) => out.push_str(&format!("{v:.p$}", p = *p)),
                        None => out.push_str(&fmt_num(v)),
                    },
                    Value::Str(s) => out.push_str(&s),
                },
            }
        }
        out
    }
}

pub enum Value<'a> {
    Num(f64),
    Str(std::borrow::Cow<'a, str>),
}

/// A number of hours as `2 h 10 min` (or `2小时10分`), rounded to the minute.
pub fn fmt_hours(h: f64, zh: bool) -> String {
    if !h.is_finite() || h < 0.0 {
        return fmt_num(h);
    }
    let m = (h * 60.0).round() as i64;
    let (hh, mm) = (m / 60, m % 60);
    match (zh, hh, mm) {
        (true, 0, m) => format!("{m}分钟"),
        (true, h, 0) => format!("{h}小时"),
        (true, h, m) => format!("{h}小时{m}分"),
        (false, 0, m) => format!("{m} min"),
        (false, h, 0) => format!("{h} h"),
        (false, h, m) => format!("{h} h {m} min"),
    }
}

/// Numbers without noise: integers plainly, others with at most two decimals.
pub fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        (v as i64).to_string()
    } else if let Some(s) = two_decimals(v) {
        s
    } else {
        let mut s = format!("{v:.2}");
        let keep = s.trim_end_matches('0').trim_end_matches('.').len();
        s.truncate(keep);
        s
    }
}

/// `v` in decimal, written at the end of `b` (at least 20 bytes); returns where the digits start.
pub fn decimal_digits(mut v: u64, b: &mut [u8]) -> usize {
    let mut at = b.len();
    loop {
        at -= 1;
        b[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return at;
        }
    }
}

/// [`fmt_num`] of a number that is not whole, without the formatter's exact decimal expansion
/// (warnings put one in every message): `{:.2}` rounds the exact binary value to hundredths;
/// where that value lies strictly between two halves, `k`, the hundredths nearest to `v * 100`,
/// is that rounding, and two fused multiply-adds (one rounding each, so their signs are exact)
/// prove it. Ties, and numbers of 1e13 or more, are left to the formatter (`None`).
fn two_decimals(v: f64) -> Option<String> {
    if v.is_nan() || v.abs() >= 1e13 {
        return None;
    }
    let k = (v * 100.0).round();
    let inside = v.mul_add(100.0, -(k + 0.5)) < 0.0 && v.mul_add(100.0, -(k - 0.5)) > 0.0;
    if !inside {
        return None;
    }
    let hundredths = k.abs() as u64;
    let (whole, frac) = (hundredths / 100, hundredths % 100);
    // written digit by digit: the formatter's machinery would cost more than the rounding
    let mut b = [0u8; 24];
    let mut at = decimal_digits(whole, &mut b[..20]);
    // `{:.2}` keeps the sign of a negative number that rounds to zero ("-0.00", trimmed "-0")
    if v < 0.0 {
        at -= 1;
        b[at] = b'-';
    }
    let mut end = 20;
    if frac != 0 {
        b[20] = b'.';
        b[21] = b'0' + (frac / 10) as u8;
        b[22] = b'0' + (frac % 10) as u8;
        // trailing zeros trimmed
        end = if frac % 10 == 0 { 22 } else { 23 };
    }
    std::str::from_utf8(&b[at..end]).ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_as_hours_and_minutes() {
        let t = Template::parse("{value:时分} / {value:hm}").expect("parse");
        let s = t.render(|_| Value::Num(2.0 + 10.0 / 60.0));
        assert_eq!(s, "2小时10分 / 2 h 10 min");
        assert_eq!(fmt_hours(0.25, true), "15分钟");
        assert_eq!(fmt_hours(3.0, false), "3 h");
    }

    #[test]
    fn renders_placeholders_with_precision() {
        let t =
            Template::parse("{site.name} PM10 {value:.1} > {threshold} ({level}) {{x}}").unwrap();
        let s = t.render(|n| match n {
            "site.name" => Value::Str("城东工地".into()),
            "value" => Value::Num(420.26),
            "threshold" => Value::Num(350.0),
            _ => Value::Str("橙色".into()),
        });
        assert_eq!(s, "城东工地 PM10 420.3 > 350 (橙色) {x}");
    }

    /// What `fmt_num` wrote before it had a fast path: the formatter's `{:.2}`, trimmed.
    fn fmt_num_reference(v: f64) -> String {
        if v.fract() == 0.0 && v.abs() < 1e15 {
            format!("{}", v as i64)
        } else {
            let mut s = format!("{v:.2}");
            let keep = s.trim_end_matches('0').trim_end_matches('.').len();
            s.truncate(keep);
            s
        }
    }

    #[test]
    fn numbers_round_like_the_formatter() {
        // exact ties (k/8), values just either side of a half, signs, zero and the limits
        for v in [
            0.125,
            0.375,
            -0.125,
            2.675,
            1.005,
            0.005,
            -0.005,
            0.015,
            50.7625,
            -0.001,
            0.001,
            9_999_999_999_999.99,
            1e13,
            1e13 + 0.5,
            -1e13,
            0.994_999_999_999_999_9,
            0.995,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            -0.0,
            0.0,
        ] {
            assert_eq!(fmt_num(v), fmt_num_reference(v), "{v:e}");
        }
        for k in -100_000..100_000 {
            let v = k as f64 / 8.0;
            assert_eq!(fmt_num(v), fmt_num_reference(v), "{v}");
            let v = k as f64 / 1000.0;
            assert_eq!(fmt_num(v), fmt_num_reference(v), "{v}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_number_rounds_like_the_formatter(
            v in proptest::prelude::any::<f64>(),
            w in -1e7..1e7f64,
            cents in -1_000_000_000i64..1_000_000_000,
        ) {
            proptest::prop_assert_eq!(fmt_num(v), fmt_num_reference(v));
            proptest::prop_assert_eq!(fmt_num(w), fmt_num_reference(w));
            let c = cents as f64 / 100.0 + 0.005;
            proptest::prop_assert_eq!(fmt_num(c), fmt_num_reference(c));
        }
    }

    #[test]
    fn rejects_unknown_placeholders() {
        let (off, msg) = Template::parse("abc {vlaue}").unwrap_err();
        assert_eq!(off, 4);
        assert!(msg.contains("did you mean `{value}`"), "{msg}");
        assert!(Template::parse("{value").is_err());
        assert!(Template::parse("{value:x}").is_err());
    }
}
