//! Narrow CSV readings: `ts,site,device,metric,value[,unit]`. A header row (recognised by a `ts`
//! column) may reorder the columns; without one the order above is assumed. Timestamps are epoch
//! milliseconds or ISO-8601. Lines are split on commas directly; quoted fields go through the
//! `csv` crate. A file is read a block at a time: [`scan_lines`] finds the lines of a block and
//! the commas in them in one pass, and [`CsvDecoder::decode_split`] decodes each line.

use super::DecodeError;
use crate::event::{ReadingRef, RejectReason};
use crate::time::{parse_digits, parse_ts};
use chrono_tz::Tz;

const TS: usize = 0;
const SITE: usize = 1;
const DEVICE: usize = 2;
const METRIC: usize = 3;
const VALUE: usize = 4;

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
        split_line(line, |s| self.decode_split(&s, emit))
    }

    /// Decode a line [`scan_lines`] split (see [`CsvDecoder::decode`]).
    #[inline]
    pub fn decode_split(
        &mut self,
        s: &Split<'_, '_>,
        emit: &mut dyn FnMut(ReadingRef<'_>),
    ) -> Result<bool, DecodeError> {
        if let Some(r) = self.decode_plain(s) {
            emit(r?);
            return Ok(true);
        }
        let (line, bounds) = (s.bytes, s.bounds);
        let (n, ascii) = match s.shape {
            Shape::Fields { n, ascii } => (n, ascii),
            Shape::Quoted => return self.decode_quoted(line, emit),
            Shape::TooMany => {
                return Err(DecodeError::new(
                    RejectReason::Malformed,
                    "too many columns",
                ))
            }
            Shape::Oversize => {
                return Err(DecodeError::new(
                    RejectReason::Oversize,
                    format!("line longer than {} bytes", line.len()),
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

    /// The common case of [`CsvDecoder::decode_split`] after the first line: every column there
    /// and the line plain ASCII (so any byte range of it is text), decoded without per-field
    /// checks or error paths into a reading that borrows from the block. `None`: the line needs
    /// the general path (a header not yet seen, quotes, missing columns, non-ASCII bytes).
    #[inline]
    pub fn decode_plain<'b>(
        &self,
        s: &Split<'_, 'b>,
    ) -> Option<Result<ReadingRef<'b>, DecodeError>> {
        let Shape::Fields { n, ascii: true } = s.shape else {
            return None;
        };
        if !self.started || n <= self.last_col {
            return None;
        }
        let (line, bounds) = (s.bytes, s.bounds);
        let field = |k: usize| &line[bounds[k]..bounds[k + 1] - 1];
        let c = &self.cols;
        // SAFETY: the shape says every byte of the line is below 0x80
        let name = |k: usize| unsafe { ascii_str(field(k)) };
        let site = match c[SITE] {
            usize::MAX => None,
            k => Some(name(k)).filter(|s| !s.is_empty()),
        };
        Some(reading(
            field(c[TS]),
            site,
            name(c[DEVICE]),
            name(c[METRIC]),
            field(c[VALUE]),
            self.tz,
        ))
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

/// How a line split (see [`scan_lines`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `n` fields; `ascii`: every byte of the line is below 0x80.
    Fields { n: usize, ascii: bool },
    /// A quote somewhere in the line: the `csv` crate parses it.
    Quoted,
    /// More than [`MAX_FIELDS`] fields.
    TooMany,
    /// Longer than the limit; the line is cut to it.
    Oversize,
}

/// One line of input and how it split.
pub struct Split<'a, 'b> {
    /// The line without its ending (borrowed from the block, which outlives the scan).
    pub bytes: &'b [u8],
    pub shape: Shape,
    /// For [`Shape::Fields`]: field k is `bytes[bounds[k]..bounds[k + 1] - 1]`.
    bounds: &'a [usize; MAX_FIELDS + 1],
}

impl Split<'_, '_> {
    /// The fields of a [`Shape::Fields`] line (for tests and tools; decoding reads the bounds
    /// directly).
    pub fn fields(&self) -> Vec<&[u8]> {
        match self.shape {
            Shape::Fields { n, .. } => (0..n)
                .map(|k| &self.bytes[self.bounds[k]..self.bounds[k + 1] - 1])
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// The most fields a line may have.
pub const MAX_FIELDS: usize = 16;

/// The bytes a line scan looks for in 64 bytes of input: bit i of each mask is byte i.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Masks {
    comma: u64,
    newline: u64,
    quote: u64,
    /// Bytes of 0x80 and above (not ASCII).
    high: u64,
}

impl Masks {
    /// SSE2 (every x86-64 has it): sixteen bytes per comparison.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[inline(always)]
    fn of(chunk: &[u8; 64]) -> Masks {
        // SAFETY: compiled only where the whole build has SSE2 enabled (the cfg above), so the
        // processor running this has it; `sse2` reads nothing but `chunk`
        unsafe { Masks::sse2(chunk) }
    }

    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[target_feature(enable = "sse2")]
    #[inline]
    fn sse2(chunk: &[u8; 64]) -> Masks {
        use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_movemask_epi8, _mm_set1_epi8, _mm_set_epi64x};
        let (words, _) = chunk.as_chunks::<8>();
        let (comma, newline, quote) = (
            _mm_set1_epi8(b',' as i8),
            _mm_set1_epi8(b'\n' as i8),
            _mm_set1_epi8(b'"' as i8),
        );
        let mut m = Masks::default();
        for k in 0..4 {
            let v = _mm_set_epi64x(
                u64::from_le_bytes(words[2 * k + 1]) as i64,
                u64::from_le_bytes(words[2 * k]) as i64,
            );
            let at = 16 * k;
            m.comma |= u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, comma)) as u16) << at;
            m.newline |= u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, newline)) as u16) << at;
            m.quote |= u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, quote)) as u16) << at;
            m.high |= u64::from(_mm_movemask_epi8(v) as u16) << at;
        }
        m
    }

    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    #[inline(always)]
    fn of(chunk: &[u8; 64]) -> Masks {
        Masks::of_words(chunk)
    }

    /// Eight bytes at a time in plain integer arithmetic (other targets; tested against SSE2).
    #[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
    fn of_words(chunk: &[u8; 64]) -> Masks {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
        // the high bit of each byte of `w` that equals `b`, exactly
        let equal = |w: u64, b: u8| {
            let x = w ^ (ONES * b as u64);
            !(((x & LOW7) + LOW7) | x | LOW7)
        };
        // one bit per byte, byte i to bit i
        let gather = |hi: u64| (hi >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56;
        let (words, _) = chunk.as_chunks::<8>();
        let mut m = Masks::default();
        for (k, w) in words.iter().enumerate() {
            let w = u64::from_le_bytes(*w);
            m.comma |= gather(equal(w, b',')) << (8 * k);
            m.newline |= gather(equal(w, b'\n')) << (8 * k);
            m.quote |= gather(equal(w, b'"')) << (8 * k);
            m.high |= gather(w & (ONES << 7)) << (8 * k);
        }
        m
    }
}

/// Split a block of lines, and each line into fields, in one pass over 64 bytes at a time: the
/// newlines, commas, quotes and non-ASCII bytes of those bytes are found together, then walked
/// line by line (a call per line to find its end, and another pass to find its commas, cost more
/// than a short line's decoding). A line ends at `\n`, and trailing `\r`s are not part of it;
/// bytes after the last `\n` are a last line when there are any. Lines longer than `max_line`
/// come as [`Shape::Oversize`], cut to `max_line` bytes. Returns the number of lines; stops at
/// the first error `f` returns.
#[inline]
pub fn scan_lines<'b, E>(
    block: &'b [u8],
    max_line: usize,
    mut f: impl FnMut(Split<'_, 'b>) -> Result<(), E>,
) -> Result<u64, E> {
    let mut s = Scan::new(max_line);
    s.run(block, true, &mut f)?;
    if s.start < block.len() {
        s.end_line(block, block.len(), &mut f)?;
    }
    Ok(s.lines)
}

/// One line (all of it, newlines included) split into fields.
#[inline]
fn split_line<R>(line: &[u8], f: impl FnOnce(Split<'_, '_>) -> R) -> R {
    let mut s = Scan::new(usize::MAX);
    let _ = s.run(line, false, &mut |_| -> Result<(), ()> { Ok(()) });
    f(s.split(line, line.len(), line.len()))
}

/// The state of [`scan_lines`] within the current line.
struct Scan {
    /// Field k of the current line is at `bounds[k]..bounds[k + 1] - 1` from its start.
    bounds: [usize; MAX_FIELDS + 1],
    start: usize,
    commas: usize,
    quoted: bool,
    high: bool,
    lines: u64,
    max_line: usize,
}

impl Scan {
    fn new(max_line: usize) -> Scan {
        Scan {
            bounds: [0; MAX_FIELDS + 1],
            start: 0,
            commas: 0,
            quoted: false,
            high: false,
            lines: 0,
            max_line,
        }
    }

    /// Every 64 bytes of `bytes`, the last zero-padded (zero is none of the bytes looked for);
    /// `lines`: a newline ends a line (else all of `bytes` is one line).
    #[inline(always)]
    fn run<'b, E>(
        &mut self,
        bytes: &'b [u8],
        lines: bool,
        f: &mut impl FnMut(Split<'_, 'b>) -> Result<(), E>,
    ) -> Result<(), E> {
        let (chunks, rest) = bytes.as_chunks::<64>();
        let mut last = [0u8; 64];
        last[..rest.len()].copy_from_slice(rest);
        for (k, chunk) in chunks.iter().chain([&last]).enumerate() {
            let mut m = Masks::of(chunk);
            if !lines {
                m.newline = 0;
            }
            self.chunk(bytes, 64 * k, m, f)?;
        }
        Ok(())
    }

    /// The 64 bytes at `base` (zero past the end), as `m` found them.
    #[inline(always)]
    fn chunk<'b, E>(
        &mut self,
        block: &'b [u8],
        base: usize,
        m: Masks,
        f: &mut impl FnMut(Split<'_, 'b>) -> Result<(), E>,
    ) -> Result<(), E> {
        // line by line: the commas before the next newline, then the line's end (no test per
        // byte found of what it is; most lines have the same number of commas)
        let mut rest = u64::MAX;
        loop {
            let newline = m.newline & rest;
            let line = match newline {
                0 => rest,
                nl => rest & ((nl & nl.wrapping_neg()) - 1),
            };
            self.quoted |= m.quote & line != 0;
            self.high |= m.high & line != 0;
            let mut commas = m.comma & line;
            while commas != 0 {
                self.commas += 1;
                if self.commas < MAX_FIELDS {
                    self.bounds[self.commas] =
                        base + commas.trailing_zeros() as usize + 1 - self.start;
                }
                commas &= commas - 1;
            }
            if newline == 0 {
                return Ok(());
            }
            let i = newline.trailing_zeros();
            self.end_line(block, base + i as usize, f)?;
            rest = u64::MAX.checked_shl(i + 1).unwrap_or(0);
        }
    }

    /// The line from `self.start` ends at `end` (a newline, or the end of the block).
    #[inline(always)]
    fn end_line<'b, E>(
        &mut self,
        block: &'b [u8],
        end: usize,
        f: &mut impl FnMut(Split<'_, 'b>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut stop = end;
        while stop > self.start && block[stop - 1] == b'\r' {
            stop -= 1;
        }
        self.lines += 1;
        let split = self.split(block, stop, end - self.start);
        f(split)?;
        self.start = end + 1;
        self.commas = 0;
        self.quoted = false;
        self.high = false;
        Ok(())
    }

    /// The current line, ending at `stop`; `raw_len` counts the `\r`s before its newline too.
    #[inline(always)]
    fn split<'a, 'b>(&'a mut self, block: &'b [u8], stop: usize, raw_len: usize) -> Split<'a, 'b> {
        let start = self.start;
        if raw_len > self.max_line {
            let mut cut = start + self.max_line;
            while cut > start && matches!(block[cut - 1], b'\n' | b'\r') {
                cut -= 1;
            }
            return Split {
                bytes: &block[start..cut],
                shape: Shape::Oversize,
                bounds: &self.bounds,
            };
        }
        let shape = if self.quoted {
            Shape::Quoted
        } else if self.commas >= MAX_FIELDS {
            Shape::TooMany
        } else {
            self.bounds[self.commas + 1] = stop - start + 1;
            Shape::Fields {
                n: self.commas + 1,
                ascii: !self.high,
            }
        };
        Split {
            bytes: &block[start..stop],
            shape,
            bounds: &self.bounds,
        }
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
    let (m, frac) = short_decimal(digits).or_else(|| digits_and_scale(digits))?;
    let v = m as f64 / POW10[frac];
    Some(if neg { -v } else { v })
}

/// The digits of an unsigned decimal as an integer, and how many of them follow the point
/// (`None`: no digit, more than 15, a second point, or anything but digits and a point).
#[inline]
fn digits_and_scale(digits: &[u8]) -> Option<(u64, usize)> {
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
    Some((m, frac))
}

/// [`digits_and_scale`] of four to eight bytes without a loop or a call (most readings'
/// values: `55.23`): the bytes read as two overlapping words and right-aligned in a word padded
/// with `0`s, the point found as a zero byte of the word XOR `.`s and squeezed out, the eight
/// digits folded at once. `None` when it does not apply (shorter, longer, or not digits with at
/// most one point); then the loop decides.
#[inline(always)]
fn short_decimal(digits: &[u8]) -> Option<(u64, usize)> {
    const DOTS: u64 = 0x2e2e_2e2e_2e2e_2e2e;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    use crate::time::ZEROS;
    let n = digits.len();
    if !(4..=8).contains(&n) {
        return None;
    }
    // bytes 0..4 and n-4..n: together all n, the overlap the same in both
    let head = u32::from_le_bytes(digits.first_chunk::<4>().copied()?);
    let tail = u32::from_le_bytes(digits.last_chunk::<4>().copied()?);
    let raw = u64::from(head) | u64::from(tail) << (8 * (n - 4));
    // right-aligned: the first byte at 8 - n, `0`s below it
    let w = raw << (8 * (8 - n)) | ZEROS.checked_shr(8 * n as u32).unwrap_or(0);
    // the high bit of each byte that is `.` (exact per byte: no carry crosses a byte)
    let x = w ^ DOTS;
    let dots = !(((x & LOW7) + LOW7) | x) & HIGH;
    if dots == 0 {
        return Some((crate::time::eight_digits(w)?, 0));
    }
    // a second point is no number (n >= 4, so one point leaves digits)
    if dots & (dots - 1) != 0 {
        return None;
    }
    let p = dots.trailing_zeros() / 8;
    // the bytes before the point move up one into its place; a `0` comes in below
    let before = (1u64 << (8 * p)) - 1;
    let after = !(before | (0xff << (8 * p)));
    let squeezed = ((w & before) << 8) | (w & after) | u64::from(b'0');
    Some((crate::time::eight_digits(squeezed)?, 7 - p as usize))
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
        fn short_decimals_decide_like_the_loop(s in "[-0-9.+ex]{0,9}") {
            // the word-at-a-time path gives what the byte loop gives, or leaves it to the loop
            if let Some(got) = short_decimal(s.as_bytes()) {
                proptest::prop_assert_eq!(Some(got), digits_and_scale(s.as_bytes()), "{}", s);
            }
            let loop_only = s.strip_prefix('-').unwrap_or(&s);
            let want = digits_and_scale(loop_only.as_bytes())
                .map(|(m, f)| m as f64 / POW10[f])
                .map(|v| if s.starts_with('-') { -v } else { v });
            proptest::prop_assert_eq!(parse_decimal(s.as_bytes()).map(f64::to_bits), want.map(f64::to_bits), "{}", s);
        }

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
            let want: Vec<&str> = line.split(',').collect();
            split_line(line.as_bytes(), |s| {
                match s.shape {
                    Shape::Fields { ascii, .. } => {
                        let got: Vec<&[u8]> = s.fields();
                        let want: Vec<&[u8]> = want.iter().map(|w| w.as_bytes()).collect();
                        proptest::prop_assert_eq!(got, want);
                        proptest::prop_assert_eq!(ascii, line.is_ascii());
                    }
                    Shape::TooMany => proptest::prop_assert!(want.len() > MAX_FIELDS),
                    other => proptest::prop_assert!(false, "{other:?}"),
                }
                Ok(())
            })?;
        }

        /// The byte classes found with SSE2 are those found a word at a time.
        #[test]
        fn byte_classes_agree_across_methods(bytes in proptest::collection::vec(proptest::prop_oneof![proptest::prelude::any::<u8>(), proptest::prelude::Just(b','), proptest::prelude::Just(b'\n')], 64)) {
            let mut chunk = [0u8; 64];
            chunk.copy_from_slice(&bytes);
            let want = |b: &dyn Fn(u8) -> bool| (0..64).filter(|&i| b(chunk[i])).fold(0u64, |m, i| m | 1 << i);
            let m = Masks::of(&chunk);
            proptest::prop_assert_eq!(m, Masks::of_words(&chunk));
            proptest::prop_assert_eq!(m.comma, want(&|b| b == b','));
            proptest::prop_assert_eq!(m.newline, want(&|b| b == b'\n'));
            proptest::prop_assert_eq!(m.quote, want(&|b| b == b'"'));
            proptest::prop_assert_eq!(m.high, want(&|b| b >= 0x80));
        }

        /// A block splits into the lines a line reader gives (ending at `\n`, trailing `\r`s
        /// dropped, the overlong cut and flagged), each split as on its own.
        #[test]
        fn blocks_split_into_the_lines_a_line_reader_gives(
            text in "([a-z0-9,.]{0,20}(\"[a-z,]*\")?[é監]{0,3}[a-z0-9,]{0,12}[é]?\r{0,2}\n){0,12}[a-z,\r]{0,5}",
            max in 1usize..40,
        ) {
            let block = text.as_bytes();
            let mut want = Vec::new();
            let mut lines: Vec<&[u8]> = block.split(|&b| b == b'\n').collect();
            if lines.last().is_some_and(|l| l.is_empty()) {
                lines.pop();
            }
            for l in &lines {
                if l.len() > max {
                    let mut cut = &l[..max];
                    while let [rest @ .., b'\n' | b'\r'] = cut {
                        cut = rest;
                    }
                    want.push((cut.to_vec(), Shape::Oversize, Vec::new()));
                    continue;
                }
                let mut l = *l;
                while l.last() == Some(&b'\r') {
                    l = &l[..l.len() - 1];
                }
                let (shape, fields) = split_line(l, |s| (s.shape, s.fields().iter().map(|f| f.to_vec()).collect::<Vec<_>>()));
                want.push((l.to_vec(), shape, fields));
            }
            let mut got = Vec::new();
            let n = scan_lines(block, max, |s| -> Result<(), ()> {
                got.push((s.bytes.to_vec(), s.shape, s.fields().iter().map(|f| f.to_vec()).collect::<Vec<_>>()));
                Ok(())
            });
            proptest::prop_assert_eq!(n, Ok(want.len() as u64));
            proptest::prop_assert_eq!(got, want);
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

    #[test]
    fn short_decimals_at_the_edges() {
        for (s, want) in [
            ("55.23", Some((5523, 2))),
            ("555.", Some((555, 0))),
            (".555", Some((555, 3))),
            ("5.5.", None),
            (".1234567", Some((1234567, 7))),
            ("12345678", Some((12345678, 0))),
            ("1234.567", Some((1234567, 3))),
            ("0.000001", Some((1, 6))),
            ("....", None),
            ("1..2", None),
            ("1.2.3", None),
            ("1e3", None),
            ("+100", None),
            (" 100", None),
        ] {
            assert_eq!(short_decimal(s.as_bytes()), want, "{s}");
            assert_eq!(digits_and_scale(s.as_bytes()), want, "{s}");
        }
        // fewer than four bytes, or nine and more: the loop's
        for s in ["", ".", "5.", ".5", "12", "123456.78"] {
            assert_eq!(short_decimal(s.as_bytes()), None, "{s}");
        }
        assert_eq!(parse_decimal(b"5."), Some(5.0));
        assert_eq!(parse_decimal(b".5"), Some(0.5));
        assert_eq!(parse_decimal(b"."), None);
        assert_eq!(parse_decimal(b"123456.78"), Some(123456.78));
        assert_eq!(parse_decimal(b"-0.5"), Some(-0.5));
        assert_eq!(parse_decimal(b"-"), None);
        assert_eq!(parse_decimal("٣".as_bytes()), None);
    }
}
