//! Admission of TCP connections to a listener: at most so many open in all and so many from one
//! address. A listener asks [`Admit::take`] for each accepted connection and keeps the returned
//! [`Slot`] for as long as the connection is open; dropping it frees the place. [`accept`] is
//! the listeners' accept loop.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
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
}
