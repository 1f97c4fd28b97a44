//! Browser sessions for the dashboard: a user logs in once with an API token and gets a session
//! cookie (`HttpOnly`, `SameSite=Strict`); every state-changing request made with the cookie must
//! also carry the session's CSRF token in `X-CSRF-Token`. Sessions live in memory: a restart asks
//! users to log in again.

use crate::config::service::Role;
use crate::time::Ts;
use std::collections::HashMap;
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
    pub csrf: String,
    pub expires: Ts,
}

#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    /// When recent logins failed (a token guessed at): at most [`MAX_FAILURES`] a minute.
    failures: Mutex<std::collections::VecDeque<Ts>>,
}

/// Failed logins allowed per minute before logins are refused for the rest of that minute.
pub const MAX_FAILURES: usize = 10;

/// `n` random bytes from the operating system's generator, as hex.
pub fn random_hex(n: usize) -> std::io::Result<String> {
    use std::io::Read;
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

impl Sessions {
    /// A new session for a caller; returns its id.
    pub fn open(&self, name: &str, role: &Role, now: Ts) -> std::io::Result<(String, Session)> {
        let id = random_hex(32)?;
        let s = Session {
            name: name.to_string(),
            role: role.clone(),
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

    /// Whether a login may be tried now (fewer than [`MAX_FAILURES`] failures in the last minute).
    pub fn may_try(&self, now: Ts) -> bool {
        self.failures.lock().is_ok_and(|mut f| {
            while f.front().is_some_and(|t| *t <= now - 60_000) {
                f.pop_front();
            }
            f.len() < MAX_FAILURES
        })
    }

    /// A login failed.
    pub fn failed(&self, now: Ts) {
        if let Ok(mut f) = self.failures.lock() {
            f.push_back(now);
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
        let (id, sess) = s.open("ops", &Role::Operator, 1_000).unwrap();
        assert_eq!(id.len(), 64);
        assert_eq!(sess.csrf.len(), 32);
        assert_eq!(s.get(&id, 2_000).map(|x| x.name), Some("ops".into()));
        assert!(s.get(&id, 2_000 + TTL_MS + 1).is_none(), "expired");
        let (id, _) = s.open("ops", &Role::Operator, 1_000).unwrap();
        s.close(&id);
        assert!(s.get(&id, 1_001).is_none());
        assert!(s.get("nope", 1).is_none());
    }

    #[test]
    fn failed_logins_are_limited_per_minute() {
        let s = Sessions::default();
        for i in 0..MAX_FAILURES as i64 {
            assert!(s.may_try(1_000 + i));
            s.failed(1_000 + i);
        }
        assert!(
            !s.may_try(2_000),
            "the eleventh guess in a minute is refused"
        );
        assert!(s.may_try(62_000), "a minute later it may try again");
    }

    #[test]
    fn reads_a_cookie() {
        assert_eq!(cookie("a=1; yj_session=abc; b=2", COOKIE), Some("abc"));
        assert_eq!(cookie("a=1", COOKIE), None);
    }
}
