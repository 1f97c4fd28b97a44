//! The dashboard in a real browser: `yujing demo` (the README's run command) and headless
//! Chromium driven by playwright-core (`tests/browser/dashboard.mjs`): login with tokens,
//! warnings arriving live, the red banner, filters over 1,000 warnings, the site map and charts,
//! a department acknowledging and reporting back, the operator reading the timeline, a
//! department refused another's warning, CSRF, the admin page's rule tests, English, logout;
//! labels, names and contrast checked by axe-core on every page. Screenshots of each page go to
//! `$CARGO_TARGET_DIR/ui-screenshots/` (or `target/ui-screenshots/`).
//!
//! Needs Debian's `chromium` and `npm ci --prefix tests/browser` (`.ci/peers.sh` does both).

mod service;

use std::path::PathBuf;
use std::process::Command;

#[test]
fn the_dashboard_in_a_real_browser() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    service::peers::ensure();
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
    let demo = service::Demo::start();
    let (base, operator, zjj, admin) = (&demo.base, &demo.operator, &demo.zjj, &demo.admin);
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let shots = target.join("ui-screenshots");
    let out = Command::new("node")
        .arg(root.join("tests/browser/dashboard.mjs"))
        .env("YJ_URL", base)
        .env("YJ_OPERATOR", operator)
        .env("YJ_ZJJ", zjj)
        .env("YJ_ADMIN", admin)
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
