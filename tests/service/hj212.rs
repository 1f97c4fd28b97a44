//! An HJ 212-2017 monitor for the tests: packets built as the standard defines them (the
//! connectors' framing and CRC), sent over TCP, acknowledgements read back.

use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use yujing_connectors::hj212::frame;

pub fn local(ms: i64) -> String {
    use chrono::TimeZone;
    chrono_tz::Asia::Shanghai
        .timestamp_millis_opt(ms)
        .single()
        .expect("time")
        .format("%Y%m%d%H%M%S")
        .to_string()
}

/// A real-time upload (CN 2011) from monitor `mn` with the factory password 123456; `flag` 5
/// asks for an acknowledgement.
pub fn upload(mn: &str, qn: u32, ms: i64, flag: u8, values: &str) -> String {
    upload_pw(mn, "123456", qn, ms, flag, values)
}

/// [`upload`] with the password `pw`.
pub fn upload_pw(mn: &str, pw: &str, qn: u32, ms: i64, flag: u8, values: &str) -> String {
    let data = format!(
        "QN={}{qn:03};ST=22;CN=2011;PW={pw};MN={mn};Flag={flag};CP=&&DataTime={};{values}&&",
        local(ms),
        local(ms)
    );
    frame(&data)
}

/// A monitor's connection: send packets, read acknowledgements.
pub struct Monitor {
    r: tokio::io::BufReader<tokio::net::TcpStream>,
}

impl Monitor {
    pub async fn connect(addr: &str) -> Monitor {
        let s = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connect to HJ 212");
        Monitor {
            r: tokio::io::BufReader::new(s),
        }
    }

    /// Connect from the local address `from` (another loopback address, 127.0.0.x, is another
    /// host to the listener).
    pub async fn connect_from(addr: &str, from: [u8; 4]) -> Monitor {
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        sock.bind(std::net::SocketAddr::from((from, 0)))
            .expect("bind a loopback address");
        let s = sock
            .connect(addr.parse().expect("an address"))
            .await
            .expect("connect to HJ 212");
        Monitor {
            r: tokio::io::BufReader::new(s),
        }
    }

    /// Whether the listener closed the connection within `ms` (end of stream or reset).
    pub async fn closed_within(&mut self, ms: u64) -> bool {
        use tokio::io::AsyncReadExt;
        let mut b = [0u8; 256];
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
        loop {
            match tokio::time::timeout_at(deadline, self.r.read(&mut b)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
    pub async fn send(&mut self, packet: &str) {
        self.r
            .get_mut()
            .write_all(packet.as_bytes())
            .await
            .expect("send");
    }
    /// The next acknowledgement, or None within `ms`.
    pub async fn ack(&mut self, ms: u64) -> Option<String> {
        let mut line = String::new();
        match tokio::time::timeout(Duration::from_millis(ms), self.r.read_line(&mut line)).await {
            Ok(Ok(n)) if n > 0 => Some(line),
            _ => None,
        }
    }
}
