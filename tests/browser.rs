//! The dashboard in a real browser: `yujing demo` (the README's run command) and headless
//! Chromium driven by playwright-core (`tests/browser/dashboard.mjs`): login with tokens,
//! warnings arriving live, the red banner, filters over 1,000 warnings, the site map and charts,
//! a department acknowledging and reporting back, the operator reading the timeline, a
//! department refused another's warning, CSRF, the admin page's rule tests, English, logout;
//! labels, names and contrast checked by axe-core on every page. Screenshots of each page go to
//! `$CARGO_TARGET_DIR/ui-screenshots/` (or `target/ui-screenshots/`).
//!
//! Needs Debian's `chromium` and `npm ci --prefix tests/browser` (`.ci/peers.sh` does both).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

struct KillOnDrop(std::process::Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_dashboard_in_a_real_browser() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let chromium = std::env::var("YJ_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: install Debian's chromium (.ci/peers.sh does)"
    );
    assert!(
        root.join("tests/browser/node_modules/playwright-core")
            .exists(),
        "run `npm ci --prefix tests/browser` (.ci/peers.sh does)"
    );
    let data = tempfile::tempdir().expect("tempdir");
    let child = Command::new(env!("CARGO_BIN_EXE_yujing"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--mqtt-port",
            "0",
            "--speed",
            "1500",
            "--data",
        ])
        .arg(data.path())
        .current_dir(&root)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start yujing demo");
    let mut child = KillOnDrop(child);
    let mut lines = BufReader::new(child.0.stdout.take().expect("stdout")).lines();
    let (mut base, mut operator, mut zjj, mut admin) =
        (String::new(), String::new(), String::new(), String::new());
    for line in lines.by_ref().map_while(Result::ok) {
        if let Some(b) = line.strip_prefix("yujing: listening on ") {
            base = b.trim().to_string();
        }
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["operator", t] => operator = t.to_string(),
            ["department", "zjj", t, ..] => zjj = t.to_string(),
            ["admin", t] => admin = t.to_string(),
            _ => {}
        }
        if line.contains("Ctrl-C stops") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    assert!(
        !base.is_empty() && !operator.is_empty() && !zjj.is_empty() && !admin.is_empty(),
        "the demo's banner is incomplete"
    );
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let shots = target.join("ui-screenshots");
    let out = Command::new("node")
        .arg(root.join("tests/browser/dashboard.mjs"))
        .env("YJ_URL", &base)
        .env("YJ_OPERATOR", &operator)
        .env("YJ_ZJJ", &zjj)
        .env("YJ_ADMIN", &admin)
        .env("YJ_SHOTS", &shots)
        .env("YJ_CHROMIUM", &chromium)
        .output()
        .expect("node (Node.js 20) runs the browser test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all dashboard checks passed"));
    assert!(shots.join("06-warning-feedback-form.png").exists());
}
