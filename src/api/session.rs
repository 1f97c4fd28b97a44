//! Browser sessions for the dashboard: a user logs in once with an API token and gets a session
//! cookie (`HttpOnly`, `SameSite=Strict`); every state-changing request made with the cookie must
//! also carry the session's CSRF token in `X-CSRF-Token`. Sessions live in memory: a restart asks
//! users to log in again. A session remembers the token it was opened with and ends when that
//! token is no longer in yujing.toml (revoked, or its role changed). Failed logins are limited
//! per client address, so one guesser cannot lock everyone else out.

use crate::config::service::Role;
use crate::time::Ts;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

/// The session cookie's name.
pub const COOKIE: &str = "yj_session";
/// The header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts without use (12 hours: a duty shift).
pub const TTL_MS: i64 = 12 * 3600 * 1000;

#[derive(Clone, Debug)]
pub struct Session {
    pub name: String,
    pub role: Role,
    /// The SHA-256 of the token it was opened with.
    pub token: String,
    pub csrf: String,
    pub expires: Ts,
}

#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    /// When recent logins failed (a token guessed at), per client address: at most
    /// [`MAX_FAILURES`] a minute each.
    failures: Mutex<HashMap<IpAddr, VecDeque<Ts>>>,
}

/// Failed logins allowed per minute from one address before its logins are refused for the
/// rest of that minute.
pub const MAX_FAILURES: usize = 10;
/// Addresses whose failures are remembered at once (older ones are forgotten first).
const MAX_ADDRESSES: usize = 10_000;

/// `n` random bytes from the operating system's generator, as hex.
pub fn random_hex(n: usize) -> std::io::Result<String> {
    use std::io::Read;
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

impl Sessions {
    /// A new session for a caller; returns its id.
    pub fn open(
        &self,
        name: &str,
        role: &Role,
        token: &str,
        now: Ts,
    ) -> std::io::Result<(String, Session)> {
        let id = random_hex(32)?;
        let s = Session {
            name: name.to_string(),
            role: role.clone(),
            token: token.to_string(),
            csrf: random_hex(16)?,
            expires: now + TTL_MS,
        };
        if let Ok(mut m) = self.map.lock() {
            // forget the expired ones while here
            m.retain(|_, v| v.expires > now);
            m.insert(id.clone(), s.clone());
        }
        Ok((id, s))
    }

    /// The live session with this id (its lifetime extended), if any.
    pub fn get(&self, id: &str, now: Ts) -> Option<Session> {
        let mut m = self.map.lock().ok()?;
        let s = m.get_mut(id)?;
        if s.expires <= now {
            m.remove(id);
            return None;
        }
        s.expires = now + TTL_MS;
        Some(s.clone())
    }

    /// Whether a login may be tried now from `addr` (fewer than [`MAX_FAILURES`] failures from
    /// it in the last minute).
    pub fn may_try(&self, addr: IpAddr, now: Ts) -> bool {
        self.failures.lock().is_ok_and(|mut m| {
            let Some(f) = m.get_mut(&addr) else {
                return true;
            };
            while f.front().is_some_and(|t| *t <= now - 60_000) {
                f.pop_front();
            }
            if f.is_empty() {
                m.remove(&addr);
                return true;
            }
            f.len() < MAX_FAILURES
        })
    }

    /// A login from `addr` failed.
    pub fn failed(&self, addr: IpAddr, now: Ts) {
        if let Ok(mut m) = self.failures.lock() {
            if m.len() >= MAX_ADDRESSES && !m.contains_key(&addr) {
                // forget the addresses whose failures are a minute old, then the stalest
                m.retain(|_, f| f.back().is_some_and(|t| *t > now - 60_000));
                if m.len() >= MAX_ADDRESSES {
                    if let Some(oldest) = m
                        .iter()
                        .min_by_key(|(_, f)| f.back().copied().unwrap_or(Ts::MIN))
                        .map(|(a, _)| *a)
                    {
                        m.remove(&oldest);
                    }
                }
            }
            let f = m.entry(addr).or_default();
            f.push_back(now);
            while f.len() > MAX_FAILURES {
                f.pop_front();
            }
        }
    }

    pub fn close(&self, id: &str) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(id);
        }
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_close() {
        let s = Sessions::default();
        let (id, sess) = s.open("ops", &Role::Operator, "h", 1_000).unwrap();
        assert_eq!(id.len(), 64);
        assert_eq!(sess.csrf.len(), 32);
        assert_eq!(s.get(&id, 2_000).map(|x| x.name), Some("ops".into()));
        assert!(s.get(&id, 2_000 + TTL_MS + 1).is_none(), "expired");
        let (id, _) = s.open("ops", &Role::Operator, "h", 1_000).unwrap();
        s.close(&id);
        assert!(s.get(&id, 1_001).is_none());
        assert!(s.get("nope", 1).is_none());
    }

    #[test]
    fn failed_logins_are_limited_per_minute_and_address() {
        let s = Sessions::default();
        let guesser: IpAddr = [10, 0, 0, 66].into();
        let admin: IpAddr = [10, 0, 0, 1].into();
        for i in 0..MAX_FAILURES as i64 {
            assert!(s.may_try(guesser, 1_000 + i));
            s.failed(guesser, 1_000 + i);
        }
        assert!(
            !s.may_try(guesser, 2_000),
            "the eleventh guess in a minute is refused"
        );
        assert!(s.may_try(admin, 2_000), "another address may still log in");
        assert!(
            s.may_try(guesser, 62_000),
            "a minute later it may try again"
        );
    }

    #[test]
    fn remembered_addresses_are_bounded() {
        let s = Sessions::default();
        for i in 0..(MAX_ADDRESSES as u32 + 50) {
            s.failed(IpAddr::from(i.to_be_bytes()), 1_000 + i64::from(i));
        }
        assert!(s.failures.lock().unwrap().len() <= MAX_ADDRESSES);
    }

    #[test]
    fn reads_a_cookie() {
        assert_eq!(cookie("a=1; yj_session=abc; b=2", COOKIE), Some("abc"));
        assert_eq!(cookie("a=1", COOKIE), None);
    }
}
