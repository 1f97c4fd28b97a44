//! Golden scenarios: an input and the exact warnings expected from it, beside each other in
//! `tests/golden/`. After an intended change, regenerate with `UPDATE_GOLDEN=1 cargo test --test golden`
//! and review the diff.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_yujing"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run yujing");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn compare(got: &str, golden: &Path) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(golden, got).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(golden)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 creates it)", golden.display()));
    let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert_eq!(a, b, "{}: line {} differs", golden.display(), i + 1);
    }
    assert_eq!(
        g.len(),
        w.len(),
        "{}: {} lines, expected {}",
        golden.display(),
        g.len(),
        w.len()
    );
}

/// The sample day: the simulator's readings written as CSV, replayed, every transition checked.
#[test]
fn sample_day() {
    let dir = tempfile::tempdir().expect("tempdir");
    let day = dir.path().join("day.csv");
    let day_s = day.to_str().unwrap_or_default();
    run(&["demo", "--offline", "--write-day", day_s]);
    let got = run(&["replay", "-i", day_s, "-q"]);
    compare(&got, &root().join("tests/golden/sample_day.expected.jsonl"));
}

/// A Beijing station through the severe episode of 2015-12-01.
#[test]
fn beijing_dongsi_2015() {
    let got = run(&[
        "replay",
        "--mapping",
        "mappings/beijing_air.yaml",
        "-i",
        "tests/fixtures/beijing/dongsi_2015-11-24_2015-12-04.csv",
        "-q",
    ]);
    compare(
        &got,
        &root().join("tests/golden/beijing_dongsi_2015.expected.jsonl"),
    );
}
