//! HJ 212-2017 (污染物在线监控(监测)系统数据传输标准): the packet format and a TCP listener.
//!
//! A packet is `##` + the data segment's length as 4 decimal digits + the data segment + its
//! CRC16 as 4 hex digits + `\r\n`. The data segment is `QN=..;ST=..;CN=..;PW=..;MN=..;Flag=..;
//! CP=&&...&&` where CP holds `key=value` items separated by `;` (between pollutants) and `,`
//! (within one). This module frames, checks and splits packets without allocating; what the
//! items mean (pollutant codes, flags, times) is decided upstream (`yujing::decode::hj212`).
//!
//! The listener accepts monitor connections, hands each good packet upstream and, once upstream
//! says it is processed, answers with the data acknowledgement (CN 9014) when the packet's Flag
//! asks for one. Bad packets (length, CRC, framing, fields) are reported upstream and the
//! connection goes on with the next packet; bytes outside any packet are skipped as one run and
//! reported once per run. Who may connect is bounded where connections enter: so many in all,
//! so many per address, and a new connection must send a packet upstream takes (right MN and
//! password) within a deadline or it is closed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// The longest data segment the 4-digit length field can state.
pub const MAX_DATA: usize = 9999;
/// `##` + length + CRC + `\r\n`.
const OVERHEAD: usize = 2 + 4 + 4 + 2;
/// The longest packet there can be.
pub const MAX_PACKET: usize = MAX_DATA + OVERHEAD;

/// The CRC16 of HJ 212-2017 (its appendix A): register 0xFFFF; per byte the register's high
/// byte is XORed with the data byte into the low byte, then 8 right shifts, XOR 0xA001 when a
/// 1 falls out. Not one of the catalogued CRC-16 variants (the first step drops the low byte,
/// unlike CRC-16/MODBUS), hence written out here.
///
/// Since the register's high byte is zero before the shifts, one byte is one lookup,
/// `crc = T[(crc >> 8) ^ byte]`, and as `T` is linear (`T[a ^ b] = T[a] ^ T[b]`) eight bytes
/// are eight independent lookups and one dependent one ("slicing by 8"):
/// `crc' = S7[crc >> 8] ^ S7[b0] ^ S6[b1] ^ ... ^ S0[b7]` with `S0 = T`,
/// `S(m+1)[i] = T[S(m)[i] >> 8]`. Checked against the standard's bit loop in the tests.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let t = &CRC_SLICES;
        crc = t[7][usize::from((crc >> 8) as u8 ^ c[0])]
            ^ t[6][usize::from(c[1])]
            ^ t[5][usize::from(c[2])]
            ^ t[4][usize::from(c[3])]
            ^ t[3][usize::from(c[4])]
            ^ t[2][usize::from(c[5])]
            ^ t[1][usize::from(c[6])]
            ^ t[0][usize::from(c[7])];
    }
    chunks.remainder().iter().fold(crc, |crc, &b| {
        CRC_SLICES[0][usize::from((crc >> 8) as u8 ^ b)]
    })
}

/// `S0` (eight shifts of the standard's loop for each byte value) and its slices.
const CRC_SLICES: [[u16; 256]; 8] = {
    let mut t = [[0u16; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u16;
        let mut k = 0;
        while k < 8 {
            let out = crc & 1;
            crc >>= 1;
            if out == 1 {
                crc ^= 0xA001;
            }
            k += 1;
        }
        t[0][i] = crc;
        i += 1;
    }
    let mut m = 1;
    while m < 8 {
        let mut i = 0;
        while i < 256 {
            t[m][i] = t[0][(t[m - 1][i] >> 8) as usize];
            i += 1;
        }
        m += 1;
    }
    t
};

/// The standard's loop as printed, bit by bit: the reference the table is checked against.
#[cfg(test)]
fn crc16_bitwise(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc = (crc >> 8) ^ u16::from(b);
        for _ in 0..8 {
            let out = crc & 1;
            crc >>= 1;
            if out == 1 {
                crc ^= 0xA001;
            }
        }
    }
    crc
}

/// Why a packet was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("the length field `{0}` is not 4 decimal digits")]
    BadLength(String),
    #[error("the length field says {stated} bytes of data, the packet has {actual}")]
    LengthMismatch { stated: usize, actual: usize },
    #[error("the CRC field `{0}` is not 4 hex digits")]
    BadCrcField(String),
    #[error("CRC mismatch: the packet says {stated:04X}, its data gives {computed:04X}")]
    Crc { stated: u16, computed: u16 },
    #[error("the data segment is not ASCII/UTF-8 text")]
    NotText,
    #[error("no `CP=&&...&&` command parameters")]
    NoCp,
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    #[error("field `{field}` has a bad value `{value}`")]
    BadField { field: &'static str, value: String },
    #[error("`{0}` is not a `key=value` field")]
    NotKeyValue(String),
    #[error("{bytes} bytes outside any packet{}", if *.too_long { format!(" (among them `##` without a `\\r\\n` end within {MAX_PACKET} bytes)") } else { String::new() })]
    Garbage { bytes: usize, too_long: bool },
}

/// A packet's data segment, split into its fields; borrowed from the receive buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Request number `YYYYMMDDhhmmsszzz` (local time); absent in HJ 212-2005 packets.
    pub qn: Option<&'a str>,
    /// System code (22 air quality, 31 air pollution source, 32 surface water source, ...).
    pub st: Option<&'a str>,
    /// Command code: 2011 real-time data, 2051 minute, 2061 hourly, 2031 daily, ...
    pub cn: &'a str,
    pub pw: Option<&'a str>,
    /// The monitor's unique identifier.
    pub mn: &'a str,
    /// Flag bits: bit 0 (A) asks for an acknowledgement, bit 1 (D) marks a split packet, bits
    /// 2.. the protocol version (1 = 2017).
    pub flag: Option<u8>,
    pub pnum: Option<&'a str>,
    pub pno: Option<&'a str>,
    /// The command parameters between `CP=&&` and the closing `&&`.
    pub cp: &'a str,
}

impl<'a> Packet<'a> {
    /// Split a data segment into its fields.
    pub fn parse(data: &'a str) -> Result<Packet<'a>, PacketError> {
        let cp_at = data.find("CP=&&").ok_or(PacketError::NoCp)?;
        let cp = data[cp_at + 5..]
            .strip_suffix("&&")
            .ok_or(PacketError::NoCp)?;
        let mut p = Packet {
            qn: None,
            st: None,
            cn: "",
            pw: None,
            mn: "",
            flag: None,
            pnum: None,
            pno: None,
            cp,
        };
        for field in data[..cp_at].split(';').filter(|f| !f.is_empty()) {
            let (k, v) = field
                .split_once('=')
                .ok_or_else(|| PacketError::NotKeyValue(field.into()))?;
            match k {
                "QN" => p.qn = Some(v),
                "ST" => p.st = Some(v),
                "CN" => p.cn = v,
                "PW" => p.pw = Some(v),
                "MN" => p.mn = v,
                "Flag" => {
                    p.flag = Some(v.parse().map_err(|_| PacketError::BadField {
                        field: "Flag",
                        value: v.into(),
                    })?)
                }
                "PNUM" => p.pnum = Some(v),
                "PNO" => p.pno = Some(v),
                // other header fields are tolerated (vendors add some)
                _ => {}
            }
        }
        if p.cn.is_empty() {
            return Err(PacketError::Missing("CN"));
        }
        if !p.cn.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PacketError::BadField {
                field: "CN",
                value: p.cn.into(),
            });
        }
        if p.mn.is_empty() {
            return Err(PacketError::Missing("MN"));
        }
        Ok(p)
    }

    /// Whether the sender asks for an acknowledgement (Flag bit A).
    pub fn wants_ack(&self) -> bool {
        self.flag.is_some_and(|f| f & 1 == 1)
    }

    /// The `key=value` items of CP in order (`DataTime=...`, `a34002-Rtd=88.1`, ...).
    pub fn items(&self) -> impl Iterator<Item = Result<(&'a str, &'a str), PacketError>> + 'a {
        let cp = self.cp;
        // the separators are ASCII, so every cut is on a character boundary
        let mut start = 0;
        memchr::memchr2_iter(b';', b',', cp.as_bytes())
            .chain(std::iter::once(cp.len()))
            .filter_map(move |end| {
                let item = &cp[start..end];
                start = end + 1;
                (!item.is_empty()).then_some(item)
            })
            .map(|s| {
                s.split_once('=')
                    .ok_or_else(|| PacketError::NotKeyValue(s.into()))
            })
    }

    /// The data acknowledgement (CN 9014) answering this packet, framed.
    pub fn data_ack(&self) -> String {
        let mut d = String::with_capacity(96);
        if let Some(qn) = self.qn {
            d.push_str("QN=");
            d.push_str(qn);
            d.push(';');
        }
        d.push_str("ST=91;CN=9014;");
        if let Some(pw) = self.pw {
            d.push_str("PW=");
            d.push_str(pw);
            d.push(';');
        }
        d.push_str("MN=");
        d.push_str(self.mn);
        d.push_str(";Flag=4;CP=&&&&");
        frame(&d)
    }
}

/// Frame a data segment: `##` + length + data + CRC + `\r\n`.
pub fn frame(data: &str) -> String {
    format!(
        "##{:04}{}{:04X}\r\n",
        data.len(),
        data,
        crc16(data.as_bytes())
    )
}

/// Check one whole packet (from `##` through `\r\n`, or without the `\r\n`) and return its data
/// segment.
pub fn unframe(packet: &[u8]) -> Result<&str, PacketError> {
    let p = packet.strip_suffix(b"\r\n").unwrap_or(packet);
    let Some(p) = p.strip_prefix(b"##") else {
        return Err(PacketError::BadLength(String::new()));
    };
    if p.len() < 8 {
        return Err(PacketError::LengthMismatch {
            stated: 0,
            actual: p.len().saturating_sub(8),
        });
    }
    let len_field = &p[..4];
    if !len_field.iter().all(u8::is_ascii_digit) {
        return Err(PacketError::BadLength(
            String::from_utf8_lossy(len_field).into(),
        ));
    }
    let stated = len_field
        .iter()
        .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
    let data = &p[4..p.len() - 4];
    if data.len() != stated {
        return Err(PacketError::LengthMismatch {
            stated,
            actual: data.len(),
        });
    }
    let crc_field = &p[p.len() - 4..];
    let stated_crc = std::str::from_utf8(crc_field)
        .ok()
        .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|s| u16::from_str_radix(s, 16).ok())
        .ok_or_else(|| PacketError::BadCrcField(String::from_utf8_lossy(crc_field).into()))?;
    let computed = crc16(data);
    if computed != stated_crc {
        return Err(PacketError::Crc {
            stated: stated_crc,
            computed,
        });
    }
    std::str::from_utf8(data).map_err(|_| PacketError::NotText)
}

/// Splits a byte stream into packets: from each `##` to the next `\r\n`. Bytes that cannot be
/// part of a packet (before a `##`, or a `##` with no `\r\n` within [`MAX_PACKET`] bytes) are
/// skipped and counted ([`Framer::take_skipped`]); the buffer never holds much more than one
/// packet and one read.
#[derive(Default)]
pub struct Framer {
    buf: Vec<u8>,
    /// Where the unread bytes start; the buffer is compacted when it is mostly read.
    at: usize,
    /// Bytes skipped since [`Framer::take_skipped`] was last called.
    skipped: usize,
    /// Some of them were a `##` without an end.
    too_long: bool,
    /// How far past `at` (a packet's start) the search for its end has looked: a packet that
    /// arrives a byte at a time is not searched again from its start each time.
    searched: usize,
}

impl Framer {
    pub fn push(&mut self, bytes: &[u8]) {
        if self.at > 0 && self.at * 2 >= self.buf.len() {
            self.buf.drain(..self.at);
            self.at = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes skipped since the last call, and whether a packet without an end was among them;
    /// the count starts again at zero.
    pub fn take_skipped(&mut self) -> Option<PacketError> {
        if self.skipped == 0 {
            return None;
        }
        let e = PacketError::Garbage {
            bytes: self.skipped,
            too_long: self.too_long,
        };
        self.skipped = 0;
        self.too_long = false;
        Some(e)
    }

    /// Bytes skipped and not yet taken.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// The next complete packet (its bytes from `##` through `\r\n`).
    pub fn next_packet(&mut self) -> Option<Vec<u8>> {
        loop {
            let rest = &self.buf[self.at..];
            let Some(start) = memchr::memmem::find(rest, b"##") else {
                // keep a trailing `#`: it may start the next packet
                let keep = usize::from(rest.last() == Some(&b'#'));
                self.skipped += rest.len() - keep;
                self.at = self.buf.len() - keep;
                return None;
            };
            if start > 0 {
                self.searched = 0;
            }
            self.skipped += start;
            self.at += start;
            let rest = &self.buf[self.at..];
            // (a `\r` last time may have its `\n` now)
            let from = self.searched.saturating_sub(1).min(rest.len());
            match memchr::memmem::find(&rest[from..], b"\r\n").map(|e| e + from) {
                Some(end) => {
                    let packet = rest[..end + 2].to_vec();
                    self.at += end + 2;
                    self.searched = 0;
                    return Some(packet);
                }
                None if rest.len() > MAX_PACKET => {
                    // no `\r\n` yet, so no packet can start more than MAX_PACKET bytes before
                    // the end of what has arrived: skip to the first `##` that still could
                    // (in a run of `#` that is one skip per read, not one per two bytes)
                    let from = rest.len() - MAX_PACKET;
                    let next = memchr::memmem::find(&rest[from..], b"##")
                        .map_or(rest.len() - usize::from(rest.last() == Some(&b'#')), |n| {
                            n + from
                        });
                    self.skipped += next;
                    self.at += next;
                    self.too_long = true;
                    self.searched = 0;
                }
                None => {
                    self.searched = rest.len();
                    return None;
                }
            }
        }
    }
}

/// What upstream made of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Processed (readings taken or dead-lettered): acknowledge it if it asks, and the
    /// connection has proven itself.
    Taken,
    /// Not processed now (the next stage is down): no acknowledgement, so the monitor sends it
    /// again.
    Again,
    /// Refused (unknown MN, wrong password): no acknowledgement, and the connection has not
    /// proven itself.
    Refused,
}

/// What the listener hands upstream.
#[derive(Debug)]
pub enum Incoming {
    /// A packet whose length and CRC check out. Send the [`Verdict`] on `done` once it is
    /// processed.
    Packet {
        peer: SocketAddr,
        data: String,
        done: oneshot::Sender<Verdict>,
    },
    /// A packet that was refused, or a run of bytes outside any packet, with its bytes.
    Bad {
        peer: SocketAddr,
        error: PacketError,
        raw: Vec<u8>,
    },
}

#[derive(Clone, Debug)]
pub struct ListenConfig {
    pub max_connections: usize,
    /// Connections from one address (0: no cap).
    pub max_per_address: usize,
    /// A new connection must send a packet upstream takes within this.
    pub first_packet: Duration,
    /// A connection silent this long is closed (monitors reconnect).
    pub idle_timeout: Duration,
}

/// The listener's counts, for `/metrics`.
#[derive(Debug, Default)]
pub struct ListenStats {
    /// Connections open now.
    pub open: AtomicUsize,
    /// Connections closed on arrival: the listener was full.
    pub refused_full: AtomicU64,
    /// Connections closed on arrival: their address had its maximum open.
    pub refused_per_address: AtomicU64,
    /// Connections closed for sending no packet upstream took within the first-packet deadline.
    pub first_packet_timeouts: AtomicU64,
    /// Connections closed on arrival: their address had too many packets refused lately.
    pub refused_locked_out: AtomicU64,
}

/// Packets refused (wrong password, unknown MN) from one address within a minute before its
/// connections are refused for the rest of that minute: a password cannot be guessed faster.
pub const MAX_REFUSED_PER_MINUTE: usize = 10;

/// A run of skipped bytes is reported when it ends, or at this size.
const REPORT_GARBAGE_AT: usize = 1 << 20;

/// Accept monitor connections on `listener` until `stop`; each connection runs on its own task.
pub async fn serve(
    listener: TcpListener,
    cfg: ListenConfig,
    tx: mpsc::Sender<Incoming>,
    stats: Arc<ListenStats>,
    stop: CancellationToken,
) {
    let conns = tokio_util::task::TaskTracker::new();
    let admit = crate::admit::Admit::new(cfg.max_connections, cfg.max_per_address);
    let lockout = Arc::new(crate::admit::Lockout::new(
        MAX_REFUSED_PER_MINUTE,
        Duration::from_secs(60),
    ));
    let mut warned = crate::admit::Warned::default();
    while let Some((sock, peer)) = crate::admit::accept(&listener, "hj212", &stop).await {
        let slot = if lockout.locked(peer.ip()) {
            Err((&stats.refused_locked_out, "locked_out"))
        } else {
            admit.take(peer.ip()).map_err(|why| match why {
                crate::admit::Refused::Full => (&stats.refused_full, "cap"),
                crate::admit::Refused::PerAddress => (&stats.refused_per_address, "per_address"),
            })
        };
        let slot = match slot {
            Ok(s) => s,
            Err((counter, reason)) => {
                counter.fetch_add(1, Ordering::Relaxed);
                warned.warn("hj212", reason, &peer);
                drop(sock);
                continue;
            }
        };
        stats.open.fetch_add(1, Ordering::Relaxed);
        let (tx, stats, stop, cfg) = (tx.clone(), stats.clone(), stop.clone(), cfg.clone());
        let lockout = lockout.clone();
        conns.spawn(async move {
            match connection(sock, peer, tx, &cfg, &lockout, stop).await {
                Ok(Closed::Unproven) => {
                    stats.first_packet_timeouts.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, "HJ 212: no packet taken within the first-packet deadline: closed");
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(%peer, error = %e, "HJ 212 connection closed"),
            }
            drop(slot);
            stats.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    conns.close();
    conns.wait().await;
}

/// Why a connection ended.
enum Closed {
    /// The peer closed it, went idle, or the service stops.
    Normal,
    /// No packet was taken within the first-packet deadline.
    Unproven,
    /// A packet was refused (wrong password, unknown MN).
    Refused,
}

async fn connection(
    mut sock: TcpStream,
    peer: SocketAddr,
    tx: mpsc::Sender<Incoming>,
    cfg: &ListenConfig,
    lockout: &crate::admit::Lockout,
    stop: CancellationToken,
) -> std::io::Result<Closed> {
    let _ = sock.set_nodelay(true);
    let mut framer = Framer::default();
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + cfg.first_packet;
    let mut proven = false;
    let report = |e: PacketError| Incoming::Bad {
        peer,
        error: e,
        raw: Vec::new(),
    };
    let result = 'conn: loop {
        while let Some(packet) = framer.next_packet() {
            // the garbage before it ends its run
            if let Some(e) = framer.take_skipped() {
                if tx.send(report(e)).await.is_err() {
                    return Ok(Closed::Normal);
                }
            }
            let data = match unframe(&packet) {
                Ok(d) => d.to_string(),
                Err(error) => {
                    if tx
                        .send(Incoming::Bad {
                            peer,
                            error,
                            raw: packet,
                        })
                        .await
                        .is_err()
                    {
                        return Ok(Closed::Normal);
                    }
                    continue;
                }
            };
            let ack = Packet::parse(&data)
                .ok()
                .filter(Packet::wants_ack)
                .map(|p| p.data_ack());
            let (done, processed) = oneshot::channel();
            if tx
                .send(Incoming::Packet { peer, data, done })
                .await
                .is_err()
            {
                return Ok(Closed::Normal);
            }
            // answer only once upstream has it: a monitor resends what is not acknowledged
            match processed.await {
                Ok(Verdict::Taken) => {
                    proven = true;
                    if let Some(a) = ack {
                        sock.write_all(a.as_bytes()).await?;
                    }
                }
                // a wrong password or an unknown MN ends the connection: one guess per
                // connection, and the address is locked out after a few (`serve`)
                Ok(Verdict::Refused) => {
                    // counted before the connection closes: the next one already sees it
                    if lockout.failed(peer.ip()) {
                        tracing::warn!(%peer, "HJ 212: {MAX_REFUSED_PER_MINUTE} packets refused from this address within a minute (wrong password or unknown MN): its connections are refused for a minute");
                    }
                    break 'conn Closed::Refused;
                }
                Ok(Verdict::Again) | Err(_) => {}
            }
            // past its deadline, an unproven connection goes however fast it sends
            if !proven && tokio::time::Instant::now() >= deadline {
                break 'conn Closed::Unproven;
            }
        }
        if framer.skipped() >= REPORT_GARBAGE_AT {
            if let Some(e) = framer.take_skipped() {
                if tx.send(report(e)).await.is_err() {
                    return Ok(Closed::Normal);
                }
            }
        }
        // until it has proven itself a connection has the first-packet deadline, then the
        // idle timeout
        let wait = if proven {
            cfg.idle_timeout
        } else {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break Closed::Unproven;
            }
            left
        };
        let n = tokio::select! {
            r = tokio::time::timeout(wait, sock.read(&mut buf)) => match r {
                Ok(r) => r?,
                Err(_) if proven => break Closed::Normal,
                Err(_) => break Closed::Unproven,
            },
            _ = stop.cancelled() => break Closed::Normal,
        };
        if n == 0 {
            break Closed::Normal;
        }
        framer.push(&buf[..n]);
    };
    // the rest of a run of garbage
    if let Some(e) = framer.take_skipped() {
        let _ = tx.send(report(e)).await;
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The standard's own example (HJ 212-2017, section 6.6 / appendix): set the real-time
    /// data interval; length 0101, CRC 1C80.
    const STD_1062: &str = "##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&1C80\r\n";

    #[test]
    fn crc_of_the_standard_example() {
        let data = &STD_1062[6..STD_1062.len() - 6];
        assert_eq!(data.len(), 101);
        assert_eq!(crc16(data.as_bytes()), 0x1C80);
        assert_eq!(frame(data), STD_1062);
    }

    #[test]
    fn crc_of_the_standards_data_ack_example() {
        // the data acknowledgement example of the standard (CN 9014), CRC C241 (also what the
        // independent T212 Java library computes for it)
        let data = "QN=20160801085000001;ST=91;CN=9014;PW=123456;MN=010000A8900016F000169DC0;Flag=4;CP=&&&&";
        assert_eq!(data.len(), 87);
        assert_eq!(crc16(data.as_bytes()), 0xC241);
    }

    #[test]
    fn crc_of_nothing_is_the_initial_register() {
        assert_eq!(crc16(b""), 0xFFFF);
    }

    #[test]
    fn table_crc_equals_the_standards_loop() {
        let mut data = Vec::new();
        for i in 0..2000u32 {
            data.push((i.wrapping_mul(2_654_435_761) >> 13) as u8);
            assert_eq!(crc16(&data), crc16_bitwise(&data));
        }
    }

    #[test]
    fn unframes_and_parses_the_standard_example() {
        let data = unframe(STD_1062.as_bytes()).unwrap();
        let p = Packet::parse(data).unwrap();
        assert_eq!(p.qn, Some("20160801085857223"));
        assert_eq!(p.st, Some("32"));
        assert_eq!(p.cn, "1062");
        assert_eq!(p.pw, Some("100000"));
        assert_eq!(p.mn, "010000A8900016F000169DC0");
        assert_eq!(p.flag, Some(5));
        assert!(p.wants_ack());
        let items: Vec<_> = p.items().collect::<Result<_, _>>().unwrap();
        assert_eq!(items, vec![("RtdInterval", "30")]);
    }

    #[test]
    fn data_ack_is_cn_9014_with_the_same_qn() {
        let data = unframe(STD_1062.as_bytes()).unwrap();
        let ack = Packet::parse(data).unwrap().data_ack();
        assert_eq!(
            &ack[6..ack.len() - 6],
            "QN=20160801085857223;ST=91;CN=9014;PW=100000;MN=010000A8900016F000169DC0;Flag=4;CP=&&&&"
        );
        // and it is itself a valid packet
        let back = Packet::parse(unframe(ack.as_bytes()).unwrap()).unwrap();
        assert_eq!(back.cn, "9014");
        assert!(!back.wants_ack());
    }

    #[test]
    fn realtime_upload_items_in_order() {
        let data = "QN=20260101083000000;ST=22;CN=2011;PW=123456;MN=ABC;Flag=4;CP=&&DataTime=20260101083000;a34002-Rtd=88.1,a34002-Flag=N;a01001-Rtd=-3.5,a01001-Flag=N&&";
        let p = Packet::parse(data).unwrap();
        assert!(!p.wants_ack());
        let items: Vec<_> = p.items().map(Result::unwrap).collect();
        assert_eq!(
            items,
            vec![
                ("DataTime", "20260101083000"),
                ("a34002-Rtd", "88.1"),
                ("a34002-Flag", "N"),
                ("a01001-Rtd", "-3.5"),
                ("a01001-Flag", "N"),
            ]
        );
    }

    #[test]
    fn refuses_bad_packets_precisely() {
        let good = STD_1062.as_bytes();
        let mut bad_crc = good.to_vec();
        let n = bad_crc.len();
        bad_crc[n - 6..n - 2].copy_from_slice(b"1C81");
        assert_eq!(
            unframe(&bad_crc),
            Err(PacketError::Crc {
                stated: 0x1C81,
                computed: 0x1C80
            })
        );
        let mut bad_len = good.to_vec();
        bad_len[2..6].copy_from_slice(b"0100");
        assert_eq!(
            unframe(&bad_len),
            Err(PacketError::LengthMismatch {
                stated: 100,
                actual: 101
            })
        );
        let mut nondigit = good.to_vec();
        nondigit[2..6].copy_from_slice(b"01x1");
        assert!(matches!(unframe(&nondigit), Err(PacketError::BadLength(_))));
        let mut crc_field = good.to_vec();
        crc_field[n - 6..n - 2].copy_from_slice(b"1CZ0");
        assert!(matches!(
            unframe(&crc_field),
            Err(PacketError::BadCrcField(_))
        ));
        assert!(unframe(b"##").is_err());
        assert!(unframe(b"").is_err());
        assert_eq!(Packet::parse("QN=1;CN=2011;MN=X"), Err(PacketError::NoCp));
        assert_eq!(
            Packet::parse("QN=1;MN=X;CP=&&&&"),
            Err(PacketError::Missing("CN"))
        );
        assert_eq!(
            Packet::parse("CN=2011;CP=&&&&"),
            Err(PacketError::Missing("MN"))
        );
        assert!(matches!(
            Packet::parse("CN=2011;MN=X;Flag=high;CP=&&&&"),
            Err(PacketError::BadField { field: "Flag", .. })
        ));
        assert!(matches!(
            Packet::parse("CN=20x1;MN=X;CP=&&&&"),
            Err(PacketError::BadField { field: "CN", .. })
        ));
    }

    #[test]
    fn framer_splits_a_stream_and_skips_noise() {
        let mut f = Framer::default();
        let two = format!("noise{STD_1062}{STD_1062}");
        let (a, b) = two.as_bytes().split_at(40);
        f.push(a);
        assert!(f.next_packet().is_none());
        f.push(b);
        assert_eq!(f.next_packet().unwrap(), STD_1062.as_bytes());
        assert_eq!(f.skipped(), 5);
        assert_eq!(f.next_packet().unwrap(), STD_1062.as_bytes());
        assert!(f.next_packet().is_none());
        assert_eq!(
            f.take_skipped(),
            Some(PacketError::Garbage {
                bytes: 5,
                too_long: false
            })
        );
        assert_eq!(f.take_skipped(), None);
        // an endless packet is cut off, and the stream recovers at the next `##`
        let mut f = Framer::default();
        f.push(b"##0101");
        f.push(&vec![b'x'; MAX_DATA + 20]);
        assert!(f.next_packet().is_none());
        f.push(STD_1062.as_bytes());
        assert_eq!(f.next_packet().unwrap(), STD_1062.as_bytes());
        assert!(matches!(
            f.take_skipped(),
            Some(PacketError::Garbage { too_long: true, bytes }) if bytes == MAX_DATA + 26
        ));
    }

    #[test]
    fn a_packet_a_byte_at_a_time() {
        let mut f = Framer::default();
        let bytes = STD_1062.as_bytes();
        for (i, b) in bytes.iter().enumerate() {
            f.push(std::slice::from_ref(b));
            let got = f.next_packet();
            if i + 1 < bytes.len() {
                assert!(got.is_none(), "at byte {i}");
            } else {
                assert_eq!(got.as_deref(), Some(bytes));
            }
        }
        // and a `\r` at the end of one read, its `\n` in the next
        let (a, b) = bytes.split_at(bytes.len() - 1);
        f.push(a);
        assert!(f.next_packet().is_none());
        f.push(b);
        assert_eq!(f.next_packet().as_deref(), Some(bytes));
    }

    #[test]
    fn a_run_of_hashes_is_skipped_as_one_run_in_bounded_memory() {
        // 2 MB of `#` in reads of 4 KiB, then a good packet: nothing but the packet comes out,
        // the buffer stays near one packet, and every byte of the run is counted once
        let mut f = Framer::default();
        let chunk = vec![b'#'; 4096];
        let mut max_buf = 0;
        for _ in 0..512 {
            f.push(&chunk);
            assert!(f.next_packet().is_none());
            max_buf = max_buf.max(f.buf.len() - f.at);
        }
        assert!(max_buf <= MAX_PACKET + 4096, "{max_buf}");
        f.push(b"\r\n");
        // the last `##...\r\n` is itself a (bad) packet candidate
        let p = f.next_packet().expect("the tail ends in a CRLF");
        assert!(unframe(&p).is_err());
        f.push(STD_1062.as_bytes());
        assert_eq!(f.next_packet().unwrap(), STD_1062.as_bytes());
        let Some(PacketError::Garbage { bytes, too_long }) = f.take_skipped() else {
            panic!("a run")
        };
        assert!(too_long);
        assert_eq!(bytes + p.len(), 512 * 4096 + 2);
    }
}
