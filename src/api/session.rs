//! Browser sessions for the dashboard: a user logs in once with an API token and gets a session
//! cookie (`HttpOnly`, `SameSite=Strict`); every state-changing request made with the cookie must
//! also carry the session's CSRF token in `X-CSRF-Token`. Sessions live in memory: a restart asks
//! users to log in again. A session remembers the token it was opened with and ends when that
//! token is no longer in yujing.toml (revoked, or its role changed). Failed logins are limited
//! per client address, so one guesser cannot lock everyone else out.

use crate::config::service::Role;
use crate::time::Ts;
use std::collections::HashMap;
use std::sync::Mutex;
use yujing_connectors::admit::Lockout;

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

pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    /// Failed logins (a token guessed at) per client address: at most [`MAX_FAILURES`] a
    /// minute each. A login is counted as failed until it succeeds, so logins tried at once
    /// cannot all pass before their failures are counted.
    pub logins: Lockout,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            map: Mutex::default(),
            logins: Lockout::new(MAX_FAILURES, std::time::Duration::from_secs(60)),
        }
    }
}

/// Failed logins allowed per minute from one address before its logins are refused for the
/// rest of that minute.
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
    fn failed_logins_are_limited_per_address() {
        let s = Sessions::default();
        let guesser: std::net::IpAddr = [10, 0, 0, 66].into();
        let admin: std::net::IpAddr = [10, 0, 0, 1].into();
        for _ in 0..MAX_FAILURES {
            assert!(s.logins.attempt(guesser));
        }
        assert!(
            !s.logins.attempt(guesser),
            "the eleventh guess in a minute is refused"
        );
        assert!(s.logins.attempt(admin), "another address may still log in");
        s.logins.succeeded(admin);
    }

    #[test]
    fn reads_a_cookie() {
        assert_eq!(cookie("a=1; yj_session=abc; b=2", COOKIE), Some("abc"));
        assert_eq!(cookie("a=1", COOKIE), None);
    }
}
