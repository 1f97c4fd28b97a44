//! Admission of TCP connections to a listener: at most so many open in all and so many from one
//! address. A listener asks [`Admit::take`] for each accepted connection and keeps the returned
//! [`Slot`] for as long as the connection is open; dropping it frees the place. [`accept`] is
//! the listeners' accept loop, [`Lockout`] shuts out an address that failed too often (wrong
//! passwords, guessed tokens), [`Warned`] logs refusals without flooding the log. Addresses are
//! counted by [`addr_key`]: an IPv6 host by its /64.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The next connection on `listener`, or `None` once `stop` is cancelled. A failed accept (out
/// of descriptors, say) is logged and retried after a pause: the open connections go on.
pub async fn accept(
    listener: &TcpListener,
    name: &str,
    stop: &CancellationToken,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok(a) => return Some(a),
                Err(e) => {
                    tracing::warn!(error = %e, listener = name, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = stop.cancelled() => return None,
        }
    }
}

/// The address caps and lockouts count by: an IPv4-mapped IPv6 address as its IPv4 address, an
/// IPv6 address by its /64 (a single host is usually given a whole /64).
pub fn addr_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::V6(o.into())
        }
        v4 => v4,
    }
}

/// Why a connection was turned away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The listener has its maximum of connections open.
    Full,
    /// This address has its maximum open.
    PerAddress,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Full => "cap",
            Refused::PerAddress => "per_address",
        }
    }
}

/// The caps of one listener; `per_address == 0` leaves addresses unbounded (behind a reverse
/// proxy every connection comes from the proxy).
#[derive(Debug)]
pub struct Admit {
    max: usize,
    per_address: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// A place taken by an open connection.
#[derive(Debug)]
pub struct Slot {
    admit: Arc<Admit>,
    addr: IpAddr,
}

impl Admit {
    pub fn new(max: usize, per_address: usize) -> Arc<Admit> {
        Arc::new(Admit {
            max: max.max(1),
            per_address,
            open: Mutex::new((0, HashMap::new())),
        })
    }

    /// A place for a connection from `addr`, if there is one.
    pub fn take(self: &Arc<Self>, addr: IpAddr) -> Result<Slot, Refused> {
        let addr = addr_key(addr);
        let mut g = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if g.0 >= self.max {
            return Err(Refused::Full);
        }
        let n = g.1.entry(addr).or_insert(0);
        if self.per_address > 0 && *n >= self.per_address {
            return Err(Refused::PerAddress);
        }
        *n += 1;
        g.0 += 1;
        Ok(Slot {
            admit: self.clone(),
            addr,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut g = self.admit.open.lock().unwrap_or_else(|e| e.into_inner());
        g.0 = g.0.saturating_sub(1);
        if let Some(n) = g.1.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                g.1.remove(&self.addr);
            }
        }
    }
}

/// Addresses that failed (a wrong password, a guessed token) at most `max` times within
/// `window`; past that they are shut out until their failures are older than `window`.
#[derive(Debug)]
pub struct Lockout {
    max: usize,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

/// Addresses whose failures are remembered at once (the stalest are forgotten first).
const MAX_TRACKED: usize = 10_000;

impl Lockout {
    pub fn new(max: usize, window: Duration) -> Lockout {
        Lockout {
            max: max.max(1),
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn recent(
        m: &mut HashMap<IpAddr, VecDeque<Instant>>,
        ip: IpAddr,
        window: Duration,
        now: Instant,
    ) -> Option<&mut VecDeque<Instant>> {
        let f = m.get_mut(&ip)?;
        while f.front().is_some_and(|t| now.duration_since(*t) >= window) {
            f.pop_front();
        }
        Some(f)
    }

    /// Whether `ip` is shut out now.
    pub fn locked(&self, ip: IpAddr) -> bool {
        self.locked_at(addr_key(ip), Instant::now())
    }

    fn locked_at(&self, ip: IpAddr, now: Instant) -> bool {
        let mut m = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = Self::recent(&mut m, ip, self.window, now).map_or(0, |f| f.len());
        if n == 0 {
            m.remove(&ip);
        }
        n >= self.max
    }

    /// `ip` failed; returns whether that shut it out.
    pub fn failed(&self, ip: IpAddr) -> bool {
        self.failed_at(addr_key(ip), Instant::now())
    }

    fn failed_at(&self, ip: IpAddr, now: Instant) -> bool {
        let mut m = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_TRACKED && !m.contains_key(&ip) {
            let window = self.window;
            m.retain(|_, f| f.back().is_some_and(|t| now.duration_since(*t) < window));
            if m.len() >= MAX_TRACKED {
                if let Some(stalest) = m
                    .iter()
                    .min_by_key(|(_, f)| f.back().copied())
                    .map(|(a, _)| *a)
                {
                    m.remove(&stalest);
                }
            }
        }
        let f = m.entry(ip).or_default();
        f.push_back(now);
        while f.len() > self.max {
            f.pop_front();
        }
        Self::recent(&mut m, ip, self.window, now).is_some_and(|f| f.len() == self.max)
    }

    /// An attempt from `ip`, counted as a failure until [`Lockout::succeeded`] says otherwise
    /// (so attempts made at once cannot all pass before their failures are counted); `false`
    /// if `ip` is shut out.
    pub fn attempt(&self, ip: IpAddr) -> bool {
        let ip = addr_key(ip);
        let now = Instant::now();
        if self.locked_at(ip, now) {
            return false;
        }
        self.failed_at(ip, now);
        true
    }

    /// The attempt from `ip` succeeded: it does not count.
    pub fn succeeded(&self, ip: IpAddr) {
        let ip = addr_key(ip);
        let mut m = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = m.get_mut(&ip) {
            f.pop_back();
            if f.is_empty() {
                m.remove(&ip);
            }
        }
    }

    /// Addresses remembered now.
    pub fn tracked(&self) -> usize {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

/// Refused connections logged at most once per reason per 10 s, with how many were not.
#[derive(Default)]
pub struct Warned {
    last: HashMap<&'static str, (Instant, u64)>,
}

impl Warned {
    pub fn warn(&mut self, listener: &str, reason: &'static str, peer: &SocketAddr) {
        let now = Instant::now();
        let e = self
            .last
            .entry(reason)
            .or_insert((now - Duration::from_secs(3600), 0));
        if now.duration_since(e.0) >= Duration::from_secs(10) {
            tracing::warn!(listener, reason, %peer, more_since_last_warning = e.1, "connection refused (further ones for this reason are counted, logged at most every 10 s)");
            *e = (now, 0);
        } else {
            e.1 += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_in_all_and_per_address() {
        let a = Admit::new(3, 2);
        let x: IpAddr = [10, 0, 0, 1].into();
        let y: IpAddr = [10, 0, 0, 2].into();
        let s1 = a.take(x).unwrap();
        let _s2 = a.take(x).unwrap();
        assert_eq!(a.take(x).err(), Some(Refused::PerAddress));
        let _s3 = a.take(y).unwrap();
        assert_eq!(a.take(y).err(), Some(Refused::Full));
        assert_eq!(a.open(), 3);
        drop(s1);
        assert_eq!(a.open(), 2);
        let _s4 = a.take(x).unwrap();
        // no per-address cap
        let b = Admit::new(2, 0);
        let _t = (b.take(x).unwrap(), b.take(x).unwrap());
        assert_eq!(b.take(x).err(), Some(Refused::Full));
    }

    #[test]
    fn an_ipv6_host_counts_by_its_slash_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(addr_key(a), addr_key(b));
        assert_ne!(addr_key(a), addr_key(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(addr_key(mapped), IpAddr::from([10, 0, 0, 1]));
        let adm = Admit::new(10, 1);
        let _s = adm.take(a).unwrap();
        assert_eq!(adm.take(b).err(), Some(Refused::PerAddress));
        assert!(adm.take(c).is_ok());
    }

    #[test]
    fn lockout_after_so_many_failures_for_the_window() {
        let l = Lockout::new(3, Duration::from_secs(60));
        let x: IpAddr = [10, 0, 0, 66].into();
        let y: IpAddr = [10, 0, 0, 1].into();
        let t0 = Instant::now();
        assert!(!l.failed_at(x, t0));
        assert!(!l.failed_at(x, t0));
        assert!(!l.locked_at(x, t0));
        assert!(l.failed_at(x, t0), "the third failure shuts it out");
        assert!(l.locked_at(x, t0 + Duration::from_secs(59)));
        assert!(!l.locked_at(y, t0), "another address is not");
        assert!(
            !l.locked_at(x, t0 + Duration::from_secs(61)),
            "a minute later"
        );
        // attempts are counted before they are known to succeed: three at once, the fourth
        // waits
        let z: IpAddr = [10, 0, 0, 7].into();
        assert!(l.attempt(z) && l.attempt(z) && l.attempt(z));
        assert!(!l.attempt(z));
        l.succeeded(z);
        assert!(l.attempt(z), "a success does not count");
        // the addresses remembered are bounded
        let m = Lockout::new(3, Duration::from_secs(60));
        for i in 0..(MAX_TRACKED as u32 + 20) {
            m.failed_at(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(m.tracked() <= MAX_TRACKED);
    }
}
