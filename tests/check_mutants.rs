//! Every error `yujing check` reports, kept as a golden file: the sample configuration mutated in
//! seeded ways (a line deleted, doubled, moved or indented; a value or key garbled) and checked,
//! each mutant's output written down. A change to the loaders that moves an error's
//! file:line:col or rewords it shows here as a diff. After an intended change, regenerate with
//! `UPDATE_GOLDEN=1 cargo test --test check_mutants` and review the diff.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Mutants checked, and the seed they come from.
const MUTANTS: usize = 160;
const SEED: u64 = 24;

/// Values that break things in many ways.
const TOKENS: &[&str] = &[
    "abc",
    "-1",
    "0",
    "1e999",
    "nan",
    "\"\"",
    "[]",
    "{}",
    "~",
    "99999999999",
    "red",
    "purple",
    "10x",
    "5m",
    "-5m",
    "25:00",
    "%",
    "{{",
    "site",
    "device",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The configuration's files (what `yujing check` reads), relative to the root.
fn files() -> Vec<String> {
    let mut out: Vec<String> = ["sites.yaml", "routes.yaml", "yujing.toml"]
        .into_iter()
        .map(String::from)
        .collect();
    for dir in ["rules", "models"] {
        let mut names: Vec<String> = std::fs::read_dir(root().join(dir))
            .expect("read dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml") || n.ends_with(".toml"))
            .map(|n| format!("{dir}/{n}"))
            .collect();
        names.sort();
        out.extend(names);
    }
    out
}

/// One seeded change to a file's text; what was done, for the golden file.
fn mutate(text: &str, rng: &mut fastrand::Rng) -> (String, String) {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    if lines.is_empty() {
        return (String::new(), "empty".into());
    }
    let i = rng.usize(..lines.len());
    let what = match rng.u8(..6) {
        0 => {
            lines.remove(i);
            format!("line {} deleted", i + 1)
        }
        1 => {
            let l = lines[i].clone();
            lines.insert(i, l);
            format!("line {} doubled", i + 1)
        }
        2 => {
            let token = TOKENS[rng.usize(..TOKENS.len())];
            let l = &lines[i];
            let cut = l
                .find(": ")
                .map(|p| p + 2)
                .or_else(|| l.find("= ").map(|p| p + 2));
            lines[i] = match cut {
                Some(p) => format!("{}{token}", &l[..p]),
                None => format!("{l} {token}"),
            };
            format!("line {}: value -> {token}", i + 1)
        }
        3 => {
            let l = lines[i].clone();
            let key_end = l
                .char_indices()
                .skip_while(|(_, c)| *c == ' ' || *c == '-')
                .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
                .map(|(p, _)| p);
            match key_end {
                Some(p) if p > 0 => {
                    lines[i] = format!("{}x{}", &l[..p], &l[p..]);
                    format!("line {}: key garbled", i + 1)
                }
                _ => {
                    lines.remove(i);
                    format!("line {} deleted", i + 1)
                }
            }
        }
        4 => {
            lines[i] = format!(" {}", lines[i]);
            format!("line {} indented", i + 1)
        }
        _ => {
            let j = rng.usize(..lines.len());
            lines.swap(i, j);
            format!("lines {} and {} swapped", i + 1, j + 1)
        }
    };
    (lines.join("\n") + "\n", what)
}

fn copy_config(to: &Path) {
    for dir in ["rules", "models"] {
        std::fs::create_dir_all(to.join(dir)).expect("mkdir");
        for e in std::fs::read_dir(root().join(dir)).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_file() {
                std::fs::copy(&p, to.join(dir).join(p.file_name().expect("name"))).expect("copy");
            }
        }
    }
    for f in ["sites.yaml", "routes.yaml", "yujing.toml"] {
        std::fs::copy(root().join(f), to.join(f)).expect("copy");
    }
}

#[test]
fn every_error_of_seeded_broken_configurations() {
    let files = files();
    let mut rng = fastrand::Rng::with_seed(SEED);
    let mut report = String::new();
    let mut failing = 0;
    for k in 0..MUTANTS {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_config(dir.path());
        let mut changes = Vec::new();
        for _ in 0..1 + rng.usize(..2) {
            let f = &files[rng.usize(..files.len())];
            let path = dir.path().join(f);
            let text = std::fs::read_to_string(&path).expect("read");
            let (mutated, what) = mutate(&text, &mut rng);
            std::fs::write(&path, mutated).expect("write");
            changes.push(format!("{f}: {what}"));
        }
        let out = Command::new(env!("CARGO_BIN_EXE_yujing"))
            .arg("check")
            .arg(dir.path())
            .output()
            .expect("run yujing check");
        let shown = |b: &[u8]| {
            String::from_utf8_lossy(b).replace(&dir.path().display().to_string(), "<dir>")
        };
        failing += usize::from(!out.status.success());
        // a configuration that passes prints the same start-up warnings every time
        let errors = if out.status.success() {
            String::new()
        } else {
            shown(&out.stderr)
        };
        report.push_str(&format!(
            "## mutant {k}: {}\nexit {}\n{}{errors}\n",
            changes.join("; "),
            out.status.code().unwrap_or(-1),
            shown(&out.stdout),
        ));
    }
    // most mutants must break something, or the file proves little
    assert!(
        failing > MUTANTS / 2,
        "only {failing} of {MUTANTS} mutants fail the check"
    );
    let golden = root().join("tests/golden/check_mutants.expected");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &report).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&golden)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 creates it)", golden.display()));
    for (i, (a, b)) in report.lines().zip(want.lines()).enumerate() {
        assert_eq!(a, b, "{}: line {} differs", golden.display(), i + 1);
    }
    assert_eq!(report.lines().count(), want.lines().count());
}
