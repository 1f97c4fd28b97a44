//! `yujing replay`: recorded readings through the rules, warnings out as JSON lines, a summary
//! at the end. Every input line is either processed or written to the dead-letter file with its
//! reason; nothing is dropped silently.

use crate::config::Config;
use crate::decode::csv::{self, CsvDecoder};
use crate::decode::wide::{Mapping, WideDecoder};
use crate::decode::{json, DecodeError, Format};
use crate::engine::{Engine, Routed};
use crate::event::{Level, ReadingRef, RejectReason};
use crate::time::Ts;
use crate::warnings::json::Encoder;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use yujing_connectors::file::LineReader;

/// The longest input line accepted; longer lines are dead-lettered as oversize.
pub const MAX_LINE: usize = 64 * 1024;

#[derive(Clone, Debug)]
pub struct Options {
    pub input: PathBuf,
    pub format: Option<Format>,
    pub mapping: Option<PathBuf>,
    /// Warnings as JSON lines; `None` = standard output.
    pub output: Option<PathBuf>,
    /// Every final window whose condition held, as CSV `subject,window_start_ms,count,avg,max`.
    pub output_csv: Option<PathBuf>,
    pub dead_letter: Option<PathBuf>,
    pub progress: bool,
    /// Keep the processed readings of these metrics (backtests plot them).
    pub keep: Vec<String>,
}

#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub lines: u64,
    pub readings: u64,
    pub accepted: u64,
    /// Processed readings of metrics no rule watches (they still count for device health).
    pub unrouted: u64,
    pub rejected: Vec<(RejectReason, u64)>,
    pub missing_cells: u64,
    pub windows: u64,
    pub exceedances: u64,
    pub transitions: u64,
    pub raised_by_level: [u64; 4],
    pub open_at_end: usize,
    pub elapsed: Duration,
    pub dead_letter: Option<PathBuf>,
    /// Per site id: the first and last event time of its processed readings.
    pub spans: std::collections::BTreeMap<String, (Ts, Ts)>,
    /// Processed readings of the metrics asked for (`Options::keep`), per (site, metric).
    pub kept: std::collections::BTreeMap<(String, String), (Vec<Ts>, Vec<f64>)>,
}

impl Summary {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().map(|r| r.1).sum()
    }
    pub fn print(&self, w: &mut dyn Write) -> io::Result<()> {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        writeln!(w, "replay summary")?;
        writeln!(w, "  input lines      {}", self.lines)?;
        writeln!(
            w,
            "  readings         {} ({:.0}/s)",
            self.readings,
            self.readings as f64 / secs
        )?;
        writeln!(w, "  processed        {}", self.accepted)?;
        if self.unrouted > 0 {
            writeln!(w, "    no rule uses   {}", self.unrouted)?;
        }
        writeln!(w, "  rejected         {}", self.rejected_total())?;
        for (r, n) in &self.rejected {
            if *n > 0 {
                writeln!(w, "    {:<16} {n}", r.as_str())?;
            }
        }
        if self.missing_cells > 0 {
            writeln!(
                w,
                "  missing cells    {} (skipped, as the mapping says)",
                self.missing_cells
            )?;
        }
        writeln!(w, "  windows closed   {}", self.windows)?;
        writeln!(w, "  transitions      {}", self.transitions)?;
        let lv: Vec<String> = Level::ALL
            .iter()
            .map(|l| format!("{} {}", l.as_str(), self.raised_by_level[l.index()]))
            .collect();
        writeln!(w, "  raised/escalated {}", lv.join(", "))?;
        writeln!(w, "  open at end      {}", self.open_at_end)?;
        if let Some(p) = &self.dead_letter {
            writeln!(w, "  dead letters in  {}", p.display())?;
        }
        writeln!(w, "  elapsed          {:.3} s", secs)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Input(#[from] yujing_connectors::file::FileError),
    #[error("{0}: {1}")]
    Output(String, #[source] io::Error),
    #[error("cannot tell the input format of {0}: use --format csv|jsonl|wide")]
    Format(String),
    #[error("--format wide needs --mapping FILE")]
    NoMapping,
    #[error("{0}")]
    Mapping(String),
}

enum Decoder {
    Csv(CsvDecoder),
    Json,
    Wide(Box<WideDecoder>),
}

struct DeadLetters {
    path: PathBuf,
    out: Option<BufWriter<File>>,
}

impl DeadLetters {
    /// Readings the engine rejected after `push` returned (a far jump the stream did not
    /// confirm); `line` is where the decision fell, the record names the reading itself.
    fn write_deferred(&mut self, engine: &mut Engine, line: u64) -> Result<(), ReplayError> {
        for (reason, h) in engine.take_deferred_rejects() {
            let detail = format!(
                "{} {} {} at {}: far ahead of the stream, not confirmed by the readings after it",
                h.device, h.metric, h.value, h.ts
            );
            self.write(line, reason, &detail, b"")?;
        }
        Ok(())
    }

    fn write(
        &mut self,
        line: u64,
        reason: RejectReason,
        detail: &str,
        raw: &[u8],
    ) -> Result<(), ReplayError> {
        if self.out.is_none() {
            let f = File::create(&self.path)
                .map_err(|e| ReplayError::Output(self.path.display().to_string(), e))?;
            self.out = Some(BufWriter::new(f));
        }
        let rec = serde_json::json!({"line": line, "reason": reason, "detail": detail, "raw": String::from_utf8_lossy(raw)});
        if let Some(o) = &mut self.out {
            writeln!(o, "{rec}")
                .map_err(|e| ReplayError::Output(self.path.display().to_string(), e))?;
        }
        Ok(())
    }
}

/// Readings of plain CSV lines decoded ahead of the engine (see [`Sink::batch`]).
const BATCH: usize = 32;

struct Pending<'b> {
    line: u64,
    bytes: &'b [u8],
    reading: ReadingRef<'b>,
    dev: Option<u32>,
    at: Option<Routed>,
}

/// Where each input line goes: the engine, and for what it rejects the dead-letter file; the
/// warnings it raises go out after the line.
struct Sink<'o> {
    engine: Engine,
    src: usize,
    keep: &'o [String],
    /// Per site: the first and last event time of its processed readings.
    spans: Vec<Option<(Ts, Ts)>>,
    kept: std::collections::BTreeMap<(u32, String), (Vec<Ts>, Vec<f64>)>,
    /// Readings of the current line the engine rejected: (line, reason, detail).
    rejects: Vec<(u64, RejectReason, String)>,
    dead: DeadLetters,
    out: Box<dyn Write>,
    out_name: String,
    csv_out: Option<BufWriter<File>>,
    warnings: WarningLines,
    summary: Summary,
}

impl Sink<'_> {
    /// One input line: `decode` hands its readings to the emitter it is given.
    #[inline]
    fn line(
        &mut self,
        number: u64,
        bytes: &[u8],
        decode: impl FnOnce(&mut dyn FnMut(ReadingRef<'_>)) -> Result<(), DecodeError>,
    ) -> Result<(), ReplayError> {
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(());
        }
        let mut emit = |r: ReadingRef<'_>| {
            let at = self.engine.locate(&r);
            self.take(number, r, at);
        };
        if let Err(e) = decode(&mut emit) {
            self.reject(number, &e, bytes)?;
        }
        self.dead_letters(number, bytes)?;
        if !self.engine.transitions.is_empty() || !self.engine.exceedances.is_empty() {
            self.flush()?;
        }
        Ok(())
    }

    /// A plain line's reading, to go in the next [`Sink::batch`] (sent once `BATCH` wait).
    #[inline]
    fn push<'b>(
        &mut self,
        pending: &mut Vec<Pending<'b>>,
        p: Pending<'b>,
    ) -> Result<(), ReplayError> {
        pending.push(p);
        if pending.len() == BATCH {
            self.batch(pending)?;
        }
        Ok(())
    }

    /// Readings of several plain lines, in three passes: their devices are looked up; the
    /// window state and site span each will update are asked for (prefetched); then each goes to
    /// the engine as [`Sink::line`] would send it. One reading at a time, the processor waits
    /// for each of those memory loads in turn (10,000 devices' state does not fit its nearer
    /// caches); the loads of different readings do not depend on each other, so asked for
    /// together they overlap. Nothing else changes: same order, same results.
    fn batch(&mut self, pending: &mut Vec<Pending<'_>>) -> Result<(), ReplayError> {
        if pending.is_empty() {
            return Ok(());
        }
        for p in pending.iter_mut() {
            p.dev = self.engine.resolve(p.reading.device);
        }
        // then where each goes, now that the devices are (on their way) in cache
        for p in pending.iter_mut() {
            p.at = p.dev.map(|d| self.engine.route(p.reading.metric, d));
            if let Some(span) = p.at.and_then(|at| self.spans.get(at.site as usize)) {
                crate::engine::prefetch(span);
            }
        }
        for p in pending.drain(..) {
            self.take(p.line, p.reading, p.at);
            // most readings leave nothing to dead-letter: one check here, not a call
            if !self.rejects.is_empty() || self.engine.has_deferred_rejects() {
                self.dead_letters(p.line, p.bytes)?;
            }
        }
        if !self.engine.transitions.is_empty() || !self.engine.exceedances.is_empty() {
            self.flush()?;
        }
        Ok(())
    }

    /// One reading of input line `number` into the engine (`at`: its device and route, found).
    /// Always inlined: per reading, the call cost as much as the work around it.
    #[inline(always)]
    fn take(&mut self, number: u64, mut r: ReadingRef<'_>, at: Option<Routed>) {
        r.source = self.src;
        match self.engine.push_routed(&r, at) {
            Err(reason) => self.rejects.push((
                number,
                reason,
                format!("{} {} {} at {}", r.device, r.metric, r.value, r.ts),
            )),
            Ok((_, site)) => {
                let span = &mut self.spans[site as usize];
                *span = Some(span.map_or((r.ts, r.ts), |(a, b)| (a.min(r.ts), b.max(r.ts))));
                if self.keep.iter().any(|k| k == r.metric) {
                    let e = self.kept.entry((site, r.metric.to_string())).or_default();
                    e.0.push(r.ts);
                    e.1.push(r.value);
                }
            }
        }
    }

    /// What the engine rejected while taking line `number` (`bytes`), to the dead-letter file.
    #[inline]
    fn dead_letters(&mut self, number: u64, bytes: &[u8]) -> Result<(), ReplayError> {
        if self.engine.has_deferred_rejects() {
            self.dead.write_deferred(&mut self.engine, number)?;
        }
        if !self.rejects.is_empty() {
            for (n, reason, detail) in self.rejects.drain(..) {
                self.dead.write(n, reason, &detail, bytes)?;
            }
        }
        Ok(())
    }

    /// The warnings (and exceeding windows) so far, out.
    fn flush(&mut self) -> Result<(), ReplayError> {
        flush(
            &mut self.engine,
            &mut self.warnings,
            &mut self.out,
            &self.out_name,
            self.csv_out.as_mut(),
            &mut self.summary,
        )
    }

    /// A line that could not be decoded: counted as a rejected reading, dead-lettered.
    fn reject(&mut self, number: u64, e: &DecodeError, bytes: &[u8]) -> Result<(), ReplayError> {
        self.engine.stats.readings += 1;
        self.engine.stats.rejected[e.reason as usize] += 1;
        self.dead.write(number, e.reason, &e.detail, bytes)
    }

    /// Move the progress bar now and then (`lines` were just read).
    #[inline]
    fn progress(&self, bar: Option<&indicatif::ProgressBar>, reader: &LineReader, lines: u64) {
        if let Some(b) = bar {
            let n = reader.line_number();
            if lines > 1 || n.is_multiple_of(65_536) {
                b.set_position(reader.bytes_read());
            }
        }
    }
}

fn create(p: &Path) -> Result<BufWriter<File>, ReplayError> {
    File::create(p)
        .map(|f| BufWriter::with_capacity(1 << 16, f))
        .map_err(|e| ReplayError::Output(p.display().to_string(), e))
}

pub fn run(config: Arc<Config>, opts: &Options) -> Result<Summary, ReplayError> {
    let started = Instant::now();
    let format = match (opts.format, &opts.mapping) {
        (Some(f), _) => f,
        (None, Some(_)) => Format::Wide,
        (None, None) => Format::from_path(&opts.input)
            .ok_or_else(|| ReplayError::Format(opts.input.display().to_string()))?,
    };
    let tz = config.settings.timezone;
    let mut decoder = decoder(format, opts, tz)?;
    let mut engine = Engine::new(config.clone());
    engine.collect_exceedances(opts.output_csv.is_some());
    let src = engine.source("file");
    let mut reader = LineReader::open(&opts.input, MAX_LINE)?;
    let out: Box<dyn Write> = match &opts.output {
        Some(p) => Box::new(create(p)?),
        None => Box::new(BufWriter::new(io::stdout().lock())),
    };
    let out_name = opts
        .output
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "stdout".into());
    let csv_out = match &opts.output_csv {
        Some(p) => Some(create(p)?),
        None => None,
    };
    let dead = dead_letters(opts);
    let bar = opts.progress.then(|| progress_bar(&reader));
    let reg_cfg = config.clone();
    let reg = &reg_cfg.registry;
    let mut sink = Sink {
        engine,
        src,
        keep: &opts.keep,
        spans: vec![None; reg.sites.len()],
        kept: Default::default(),
        rejects: Vec::new(),
        dead,
        out,
        out_name,
        csv_out,
        warnings: WarningLines::default(),
        summary: Summary::default(),
    };
    loop {
        // CSV and JSON lines from the read buffer a block at a time: lines (and CSV's fields)
        // found in one pass; the plain lines' readings go to the engine in batches
        if let Decoder::Csv(_) | Decoder::Json = decoder {
            let first = reader.line_number();
            if let Some(block) = reader.block() {
                let mut k = 0;
                let mut pending = Vec::with_capacity(BATCH);
                let n = csv::scan_lines(block, MAX_LINE, |s| {
                    k += 1;
                    let number = first + k;
                    let (bytes, oversize) = (s.bytes, s.shape == csv::Shape::Oversize);
                    let plain = |reading| Pending {
                        line: number,
                        bytes,
                        reading,
                        dev: None,
                        at: None,
                    };
                    match &mut decoder {
                        Decoder::Csv(d) => {
                            if let Some(Ok(reading)) = d.decode_plain(&s) {
                                return sink.push(&mut pending, plain(reading));
                            }
                            // anything else in line order: the readings before it go first
                            sink.batch(&mut pending)?;
                            if oversize {
                                return sink.reject(number, &oversize_line(), bytes);
                            }
                            sink.line(number, bytes, |emit| d.decode_split(&s, emit).map(|_| ()))
                        }
                        Decoder::Json if !oversize => {
                            let parsed = json::parse(bytes);
                            if let Some(reading) = parsed.as_ref().ok().and_then(|p| p.plain()) {
                                return sink.push(&mut pending, plain(reading));
                            }
                            sink.batch(&mut pending)?;
                            sink.line(number, bytes, |emit| {
                                parsed?.emit(None, None, tz, emit).map(|_| ())
                            })
                        }
                        // an oversize JSON line
                        _ => {
                            sink.batch(&mut pending)?;
                            sink.reject(number, &oversize_line(), bytes)
                        }
                    }
                })?;
                sink.batch(&mut pending)?;
                reader.count_lines(n);
                sink.progress(bar.as_ref(), &reader, n);
                continue;
            }
        }
        let Some(line) = reader.next_line()? else {
            break;
        };
        let (number, bytes) = (line.number, line.bytes);
        if line.oversize {
            sink.reject(number, &oversize_line(), bytes)?;
        } else {
            sink.line(number, bytes, |emit| match &mut decoder {
                Decoder::Csv(d) => d.decode(bytes, emit).map(|_| ()),
                Decoder::Json => json::decode(bytes, None, None, tz, emit).map(|_| ()),
                Decoder::Wide(d) => d.decode(bytes, emit).map(|_| ()),
            })?;
        }
        sink.progress(bar.as_ref(), &reader, 1);
    }
    let lines = reader.line_number();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut summary = finish(sink, &decoder, lines)?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// The decoder of the input's format (`--format`, `--mapping`, or the file's extension).
fn decoder(format: Format, opts: &Options, tz: chrono_tz::Tz) -> Result<Decoder, ReplayError> {
    Ok(match format {
        Format::Csv => Decoder::Csv(CsvDecoder::new(tz)),
        Format::Jsonl => Decoder::Json,
        Format::Wide => {
            let p = opts.mapping.as_ref().ok_or(ReplayError::NoMapping)?;
            let text = std::fs::read_to_string(p)
                .map_err(|e| ReplayError::Mapping(format!("{}: {e}", p.display())))?;
            let m = Mapping::load(&p.display().to_string(), &text).map_err(|d| {
                ReplayError::Mapping(
                    d.iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join("\n"),
                )
            })?;
            Decoder::Wide(Box::new(WideDecoder::new(m, tz)))
        }
    })
}

/// The dead-letter file: `--dead-letter`, or beside the output.
fn dead_letters(opts: &Options) -> DeadLetters {
    let dl_path = opts.dead_letter.clone().unwrap_or_else(|| {
        let dir = opts
            .output
            .as_ref()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        dir.join("yujing-dead-letter.jsonl")
    });
    DeadLetters {
        path: dl_path,
        out: None,
    }
}

fn progress_bar(reader: &LineReader) -> indicatif::ProgressBar {
    let b = match reader.total_bytes() {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    b.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    b
}

/// End of input: close every window, write what is left, and count.
fn finish(sink: Sink, decoder: &Decoder, lines: u64) -> Result<Summary, ReplayError> {
    let Sink {
        mut engine,
        spans,
        kept,
        mut dead,
        mut out,
        out_name,
        mut csv_out,
        mut warnings,
        mut summary,
        ..
    } = sink;
    engine.finish();
    dead.write_deferred(&mut engine, lines)?;
    flush(
        &mut engine,
        &mut warnings,
        &mut out,
        &out_name,
        csv_out.as_mut(),
        &mut summary,
    )?;
    out.flush()
        .map_err(|e| ReplayError::Output(out_name.clone(), e))?;
    if let Some(c) = &mut csv_out {
        c.flush()
            .map_err(|e| ReplayError::Output("csv output".into(), e))?;
    }
    if let Some(o) = &mut dead.out {
        o.flush()
            .map_err(|e| ReplayError::Output(dead.path.display().to_string(), e))?;
    }
    let config = engine.config.clone();
    let reg = &config.registry;
    for (i, s) in spans.iter().enumerate() {
        if let Some(s) = s {
            summary.spans.insert(reg.sites[i].id.clone(), *s);
        }
    }
    for ((site, metric), v) in kept {
        summary
            .kept
            .insert((reg.sites[site as usize].id.clone(), metric), v);
    }
    let s = &engine.stats;
    summary.lines = lines;
    summary.readings = s.readings;
    summary.accepted = s.accepted;
    summary.unrouted = s.unrouted;
    summary.rejected = RejectReason::ALL
        .iter()
        .map(|r| (*r, s.rejected(*r)))
        .collect();
    summary.missing_cells = match decoder {
        Decoder::Wide(w) => w.missing_cells,
        _ => 0,
    };
    summary.windows = s.windows_closed;
    summary.transitions = s.transitions;
    summary.raised_by_level = s.raised_by_level;
    summary.open_at_end = engine.firing().len();
    summary.dead_letter = dead.out.is_some().then(|| dead.path.clone());
    Ok(summary)
}

fn oversize_line() -> DecodeError {
    DecodeError::new(
        RejectReason::Oversize,
        format!("line longer than {MAX_LINE} bytes"),
    )
}

/// Warnings on their way out: the encoder and the buffer a batch of lines is written from.
#[derive(Default)]
struct WarningLines {
    json: Encoder,
    buf: Vec<u8>,
}

fn flush(
    engine: &mut Engine,
    warnings: &mut WarningLines,
    out: &mut Box<dyn Write>,
    out_name: &str,
    csv: Option<&mut BufWriter<File>>,
    summary: &mut Summary,
) -> Result<(), ReplayError> {
    let ts = std::mem::take(&mut engine.transitions);
    // the documents go to a plain buffer first: one write per batch, not one per JSON token
    let line = &mut warnings.buf;
    line.clear();
    for t in &ts {
        warnings
            .json
            .encode(engine, t, line)
            .map_err(|e| ReplayError::Output(out_name.to_string(), io::Error::other(e)))?;
        line.push(b'\n');
    }
    out.write_all(line)
        .map_err(|e| ReplayError::Output(out_name.to_string(), e))?;
    // hand the transitions' memory back to the engine for the next batch
    let mut ts = ts;
    ts.clear();
    if engine.transitions.is_empty() {
        engine.transitions = ts;
    }
    let ex = std::mem::take(&mut engine.exceedances);
    summary.exceedances += ex.len() as u64;
    if let Some(c) = csv {
        for e in &ex {
            let a = e.accs.get(0);
            let subj = engine.subject_id(e.subject);
            writeln!(
                c,
                "{},{},{},{},{}",
                subj,
                e.start,
                a.count,
                a.sum / a.count as f64,
                a.max
            )
            .map_err(|err| ReplayError::Output("csv output".into(), err))?;
        }
    }
    Ok(())
}
