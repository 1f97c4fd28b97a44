//! What the tests talk to, installed and started by the tests themselves: the README's test
//! command (`cargo test --workspace`) works on a fresh machine with nothing run before it.
//!
//! The first test of a test binary that needs a peer (Mosquitto, PostgreSQL, Tansu and kcat,
//! the RTSP camera's packages, Chromium and the browser test's npm packages) runs
//! `.ci/peers.sh`, which installs what is missing and starts what is down; on a machine where
//! everything is there it only checks (about a second). `YJ_PEERS=skip` leaves the machine
//! alone (the tests then say what is missing).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Make sure the test peers are installed and running (once per test binary).
pub fn ensure() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        if std::env::var("YJ_PEERS").is_ok_and(|v| v == "skip") {
            return;
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let script = root.join(".ci/peers.sh");
        let out = Command::new("bash")
            .arg(&script)
            .current_dir(&root)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed ({}); it installs and starts the tests' peers (root or sudo for \
             apt-get):\n{}\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}
