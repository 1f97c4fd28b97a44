//! Checks at start-up: the open-file limit covers the connections the configuration allows, and
//! a warning for each thing left unsafe outside the demo (sample secrets, an anonymous MQTT
//! broker, HJ 212 monitors without a password, no API tokens on an open address).

use crate::config::service::ServiceSettings;
use crate::config::Config;
use anyhow::Result;

/// Descriptors the service needs besides its listeners' connections: the store, the archive's
/// files, the dead-letter file, MQTT, Kafka, camera sessions, outgoing deliveries.
const RESERVE: u64 = 256;

/// What the configured connection caps need of `RLIMIT_NOFILE`.
pub fn files_needed(svc: &ServiceSettings) -> u64 {
    let hj212 = svc.hj212.as_ref().map_or(0, |h| h.max_connections as u64);
    svc.http.max_connections as u64 + hj212 + svc.dispatch.concurrency as u64 + RESERVE
}

/// Raise the soft open-file limit as far as the configuration needs (up to the hard limit);
/// refuse to start when even the hard limit is too low: the process would otherwise fail to
/// accept, open files or answer `/healthz` once the listeners fill up.
pub fn open_files(svc: &ServiceSettings) -> Result<()> {
    let needed = files_needed(svc);
    let (soft, hard) = match nofile() {
        Some(l) => l,
        None => return Ok(()),
    };
    if soft >= needed {
        return Ok(());
    }
    let want = needed.min(hard);
    if want > soft && set_nofile(want, hard) {
        tracing::info!(from = soft, to = want, "open-file limit raised");
    }
    let (now, _) = nofile().unwrap_or((soft, hard));
    if now < needed {
        anyhow::bail!(
            "the open-file limit is {now} (hard limit {hard}), but the configuration allows {} HTTP and {} HJ 212 connections, which with the service's own files need {needed}: raise it (LimitNOFILE= in the systemd unit, ulimit -n) or lower [http] max_connections / [hj212] max_connections",
            svc.http.max_connections,
            svc.hj212.as_ref().map_or(0, |h| h.max_connections),
        );
    }
    Ok(())
}

#[cfg(unix)]
// rlim_t is u64 here, not on every target
#[allow(clippy::unnecessary_cast)]
fn nofile() -> Option<(u64, u64)> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given and nothing else
    let r = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) };
    (r == 0).then_some((l.rlim_cur as u64, l.rlim_max as u64))
}

#[cfg(unix)]
#[allow(clippy::unnecessary_cast)]
fn set_nofile(soft: u64, hard: u64) -> bool {
    let l = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the struct it is given
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) == 0 }
}

#[cfg(not(unix))]
fn nofile() -> Option<(u64, u64)> {
    None
}

#[cfg(not(unix))]
fn set_nofile(_: u64, _: u64) -> bool {
    false
}

/// The password HJ 212 monitors leave the factory with (and the standard's examples use).
const FACTORY_PW: &str = "123456";

/// Tokens printed in yujing's own documentation and sample files.
const SAMPLE_TOKENS: [&str; 1] = ["yj-walkthrough-operator"];

/// Whether a secret's value is one of the samples shipped with yujing.
pub fn is_sample_secret(v: &str) -> bool {
    v.contains("change-me") || v.starts_with("sample-")
}

/// What is left unsafe in this configuration, one sentence each (empty in the demo, whose
/// sample secrets and embedded broker are on loopback by design).
pub fn unsafe_settings(config: &Config) -> Vec<String> {
    let svc = &config.service;
    let mut out = Vec::new();
    // a sentence naming the things found, when there are any
    let mut named = |found: Vec<&str>, say: &dyn Fn(String) -> String| {
        if !found.is_empty() {
            out.push(say(found.join(", ")));
        }
    };
    named(
        svc.secrets
            .iter()
            .filter(|(_, v)| is_sample_secret(v))
            .map(|(k, _)| k.as_str())
            .collect(),
        &|names| {
            format!("[secrets] {names} still hold the sample values shipped with yujing: anyone who has read the sample can forge their webhook signatures or log into the cameras; set real values (or {{ env = \"...\" }})")
        },
    );
    named(
        svc.store
            .url
            .as_deref()
            .filter(|u| is_sample_secret(u))
            .map(|_| "url")
            .into_iter()
            .collect(),
        &|_| {
            "[store] url holds the sample password (change-me): set the database's own (or url = { env = \"YUJING_STORE_URL\" })".into()
        },
    );
    named(
        svc.tokens
            .iter()
            .filter(|t| {
                SAMPLE_TOKENS
                    .iter()
                    .any(|s| crate::dispatch::channel::token_hash(s) == t.sha256)
            })
            .map(|t| t.name.as_str())
            .collect(),
        &|names| {
            format!("[[tokens]] {names} is a sample whose token is printed in yujing's documentation: anyone can use it; make real ones with `yujing token`")
        },
    );
    if let Some(m) = &svc.mqtt {
        if m.username.is_none() && m.ca_file.is_none() {
            named(vec![m.host.as_str()], &|host| {
                format!("[mqtt] connects to {host}:{} without a username or TLS: if the broker takes anonymous clients, anyone who reaches it can publish readings for any site", m.port)
            });
        }
    }
    if svc.hj212.is_some() {
        let monitors = || {
            config
                .registry
                .devices
                .iter()
                .filter(|d| d.hj212_mn.is_some())
        };
        named(
            monitors()
                .filter(|d| d.hj212_pw.is_none())
                .map(|d| d.id.as_str())
                .collect(),
            &|ids| {
                format!("HJ 212 monitors without a password in sites.yaml (`hj212_pw` or `hj212_pw_secret`): {ids}; anyone who reaches the HJ 212 port can post their readings")
            },
        );
        named(
            monitors()
                .filter(|d| {
                    d.hj212_pw
                        .as_ref()
                        .and_then(|p| p.resolve(&svc.secrets))
                        .is_some_and(|p| p == FACTORY_PW)
                })
                .map(|d| d.id.as_str())
                .collect(),
            &|ids| {
                format!("HJ 212 monitors with the factory password {FACTORY_PW}: {ids}; set each monitor's own (sites.yaml `hj212_pw`)")
            },
        );
    }
    let public = svc
        .http
        .listen
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| !a.ip().is_loopback());
    if public && svc.tokens.is_empty() {
        out.push(format!(
            "[http] listens on {} but yujing.toml has no [[tokens]]: nobody can use the API or the dashboard",
            svc.http.listen
        ));
    }
    out
}

/// Log [`unsafe_settings`] at start-up (outside the demo) as warnings, and print them.
pub fn warn_unsafe(config: &Config, demo: bool) {
    if demo {
        return;
    }
    for w in unsafe_settings(config) {
        tracing::warn!("{w}");
        eprintln!("yujing: warning: {w}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_samples_are_recognised() {
        assert!(is_sample_secret("sample-secret-zjj-change-me"));
        assert!(is_sample_secret("admin:sample-change-me"));
        assert!(!is_sample_secret("k3J9-real-secret"));
    }

    #[test]
    fn the_files_needed_follow_the_caps() {
        let mut svc = ServiceSettings::default();
        let base = files_needed(&svc);
        svc.http.max_connections += 100;
        assert_eq!(files_needed(&svc), base + 100);
    }

    #[test]
    fn the_check_refuses_what_even_the_hard_limit_cannot_cover() {
        let (soft, hard) = nofile().expect("getrlimit");
        let mut svc = ServiceSettings::default();
        svc.http.max_connections = 1;
        // within what the process has: nothing to do
        assert!(open_files(&svc).is_ok());
        // more than the hard limit allows: refused with what to change
        if hard < u64::MAX / 2 {
            svc.http.max_connections = (hard + 1) as usize;
            let e = open_files(&svc).expect_err("beyond the hard limit");
            assert!(e.to_string().contains("LimitNOFILE"), "{e}");
        }
        assert!(nofile().expect("getrlimit").0 >= soft);
    }
}
