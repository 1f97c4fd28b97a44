//! Recorded input: a file read line by line into a reused buffer, with a cap on line length so
//! one broken record cannot eat memory, and a byte count for progress bars.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot open {path}: {source}")]
    Open { path: String, source: io::Error },
    #[error("read error after line {line}: {source}")]
    Read { line: u64, source: io::Error },
}

/// One line as read: its number (1-based), its bytes without the line ending, and whether it
/// was longer than the limit (then only the first `max_line` bytes are kept).
pub struct Line<'a> {
    pub number: u64,
    pub bytes: &'a [u8],
    pub oversize: bool,
}

pub struct LineReader {
    inner: BufReader<Box<dyn Read + Send>>,
    buf: Vec<u8>,
    /// Bytes of the reader's buffer handed out as the last line, consumed on the next call.
    pending: usize,
    line: u64,
    bytes_read: u64,
    total: Option<u64>,
    max_line: usize,
}

impl LineReader {
    /// Open a file, or standard input for `-`.
    pub fn open(path: &Path, max_line: usize) -> Result<LineReader, FileError> {
        let (reader, total): (Box<dyn Read + Send>, Option<u64>) = if path == Path::new("-") {
            (Box::new(io::stdin()), None)
        } else {
            let f = File::open(path).map_err(|source| FileError::Open {
                path: path.display().to_string(),
                source,
            })?;
            let len = f.metadata().ok().map(|m| m.len());
            (Box::new(f), len)
        };
        Ok(Self::from_reader(reader, total, max_line))
    }

    pub fn from_reader(
        reader: Box<dyn Read + Send>,
        total: Option<u64>,
        max_line: usize,
    ) -> LineReader {
        LineReader {
            inner: BufReader::with_capacity(1 << 20, reader),
            buf: Vec::with_capacity(4096),
            pending: 0,
            line: 0,
            bytes_read: 0,
            total,
            max_line,
        }
    }

    /// Size of the input in bytes, when known.
    pub fn total_bytes(&self) -> Option<u64> {
        self.total
    }

    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Every complete line now buffered, as one slice ending in `\n`, for a caller that splits
    /// lines itself (one pass over a block instead of a call per line). `None` when the buffer
    /// holds no complete line (the rest of a line the buffer cut, a line longer than the
    /// buffer, the last line without a newline, the end, a read error): read that with
    /// [`LineReader::next_line`]. The block counts as read; the caller tells how many lines it
    /// held with [`LineReader::count_lines`], so that line numbers stay right.
    pub fn block(&mut self) -> Option<&[u8]> {
        if self.pending > 0 {
            self.inner.consume(self.pending);
            self.pending = 0;
        }
        let last = memchr::memrchr(b'\n', self.inner.fill_buf().ok()?)?;
        self.pending = last + 1;
        self.bytes_read += (last + 1) as u64;
        self.inner.buffer().get(..=last)
    }

    /// Lines a caller of [`LineReader::block`] took.
    pub fn count_lines(&mut self, n: u64) {
        self.line += n;
    }

    /// The number of the last line handed out (0 before the first).
    pub fn line_number(&self) -> u64 {
        self.line
    }

    /// The next line, or `None` at the end.
    pub fn next_line(&mut self) -> Result<Option<Line<'_>>, FileError> {
        if self.pending > 0 {
            self.inner.consume(self.pending);
            self.pending = 0;
        }
        // fast path: the whole line is in the reader's buffer; hand it out without copying
        let found = match self.inner.fill_buf() {
            Ok(avail) => find_newline(avail).filter(|&i| i <= self.max_line),
            Err(_) => None,
        };
        if let Some(i) = found {
            self.pending = i + 1;
            self.bytes_read += (i + 1) as u64;
            self.line += 1;
            let avail = self.inner.buffer();
            let mut end = i;
            while end > 0 && avail[end - 1] == b'\r' {
                end -= 1;
            }
            return Ok(Some(Line {
                number: self.line,
                bytes: &avail[..end],
                oversize: false,
            }));
        }
        self.buf.clear();
        let mut oversize = false;
        loop {
            let avail = match self.inner.fill_buf() {
                Ok(a) => a,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(FileError::Read {
                        line: self.line,
                        source,
                    })
                }
            };
            if avail.is_empty() {
                if self.buf.is_empty() && !oversize {
                    return Ok(None);
                }
                break;
            }
            let (take, done) = match memchr::memchr(b'\n', avail) {
                Some(i) => (i + 1, true),
                None => (avail.len(), false),
            };
            let room = self.max_line.saturating_sub(self.buf.len());
            let keep = take.min(room);
            if keep < take && !(done && keep + 1 == take) {
                oversize = true;
            }
            self.buf.extend_from_slice(&avail[..keep]);
            self.inner.consume(take);
            self.bytes_read += take as u64;
            if done {
                break;
            }
        }
        self.line += 1;
        let mut end = self.buf.len();
        while end > 0 && matches!(self.buf[end - 1], b'\n' | b'\r') {
            end -= 1;
        }
        Ok(Some(Line {
            number: self.line,
            bytes: &self.buf[..end],
            oversize,
        }))
    }
}

/// The first newline: most lines are short, so the first 64 bytes are searched a word at a time
/// inline (a general search's setup costs more than such a line); longer lines use memchr.
#[inline]
fn find_newline(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let mut base = 0;
    for chunk in b.chunks_exact(8).take(8) {
        let w = u64::from_le_bytes(chunk.try_into().ok()?);
        let x = w ^ (ONES * b'\n' as u64);
        // the high bit of each byte equal to b'\n', exactly
        let m = !(((x & LOW7) + LOW7) | x | LOW7);
        if m != 0 {
            return Some(base + (m.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    memchr::memchr(b'\n', &b[base..]).map(|i| base + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_are_found_like_memchr() {
        for len in 0..150 {
            for at in 0..len {
                let mut b = vec![b'a'; len];
                b[at] = b'\n';
                if at + 3 < len {
                    b[at + 3] = b'\n';
                }
                assert_eq!(find_newline(&b), Some(at), "len {len} at {at}");
            }
            assert_eq!(find_newline(&vec![0x8a; len]), None);
        }
    }

    fn reader(s: &'static str, max: usize) -> LineReader {
        LineReader::from_reader(Box::new(s.as_bytes()), Some(s.len() as u64), max)
    }

    #[test]
    fn reads_lines_with_numbers() {
        let mut r = reader("a,b\r\nc\n\nlast", 100);
        let mut got = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            got.push((
                l.number,
                String::from_utf8(l.bytes.to_vec()).unwrap(),
                l.oversize,
            ));
        }
        assert_eq!(
            got,
            vec![
                (1, "a,b".into(), false),
                (2, "c".into(), false),
                (3, "".into(), false),
                (4, "last".into(), false)
            ]
        );
        assert_eq!(r.bytes_read(), 12);
    }

    #[test]
    fn oversize_lines_are_cut_and_flagged() {
        let mut r = reader("0123456789\nok\n", 4);
        let l = r.next_line().unwrap().unwrap();
        assert!(l.oversize);
        assert_eq!(l.bytes, b"0123");
        let l = r.next_line().unwrap().unwrap();
        assert!(!l.oversize);
        assert_eq!(l.bytes, b"ok");
    }

    #[test]
    fn blocks_hold_complete_lines_and_lines_continue_after_them() {
        // a small buffer, so that the text spans several blocks and lines straddle them
        let text = "a,1\nbb,22\r\nccc,333\nlast";
        let mut r = LineReader {
            inner: BufReader::with_capacity(8, Box::new(text.as_bytes()) as Box<dyn Read + Send>),
            ..reader("", 100)
        };
        let mut got = Vec::new();
        loop {
            if let Some(b) = r.block() {
                let b = b.to_vec();
                let n = b.iter().filter(|&&c| c == b'\n').count() as u64;
                for l in b.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
                    got.push(String::from_utf8_lossy(l).trim_end().to_string());
                }
                r.count_lines(n);
                continue;
            }
            match r.next_line().unwrap() {
                Some(l) => got.push(String::from_utf8(l.bytes.to_vec()).unwrap()),
                None => break,
            }
        }
        assert_eq!(got, ["a,1", "bb,22", "ccc,333", "last"]);
        assert_eq!(r.line_number(), 4);
        assert_eq!(r.bytes_read(), text.len() as u64);
    }
}
