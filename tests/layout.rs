//! The house as `src/lib.rs` draws it: which top-level module may import which, checked on the
//! source. Data flows one way (connectors -> decode -> engine -> warnings -> store -> dispatch);
//! the API reaches the running service only through `handle`; the engine and the rule format
//! know nothing of I/O; no two modules import each other, directly or around a circle.
//!
//! A new import that crosses the map fails here: either the code goes where the map says, or
//! the map (and `src/lib.rs`) changes on purpose, together with the table below.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each top-level module of `src/` may import of the others (besides itself).
const ALLOWED: &[(&str, &[&str])] = &[
    ("time", &[]),
    ("intern", &[]),
    ("event", &["time"]),
    ("metrics", &[]),
    ("model", &["time", "event"]),
    // the rule format and the other files an administrator edits
    ("config", &["time", "event", "intern", "model"]),
    ("decode", &["time", "event", "config"]),
    ("engine", &["time", "event", "intern", "model", "config"]),
    ("warnings", &["time", "event", "config", "engine", "store"]),
    ("store", &["time", "event", "config"]),
    ("hotline", &["time", "event", "config", "store"]),
    ("archive", &["time", "config", "metrics", "store"]),
    ("report", &["time", "config", "store"]),
    ("dispatch", &["time", "event", "config", "metrics", "store"]),
    (
        "replay",
        &["time", "event", "config", "decode", "engine", "warnings"],
    ),
    (
        "ruletest",
        &["time", "event", "config", "engine", "warnings"],
    ),
    ("sim", &["time", "event", "config", "engine", "warnings"]),
    (
        "backtest",
        &["time", "event", "config", "model", "replay", "store"],
    ),
    ("handle", &["time", "event", "config"]),
    (
        "api",
        &[
            "time", "event", "config", "metrics", "store", "hotline", "archive", "report",
            "ruletest", "dispatch", "handle", "warnings",
        ],
    ),
    // the wiring: everything but the command line
    (
        "service",
        &[
            "time", "event", "config", "metrics", "decode", "engine", "warnings", "store",
            "hotline", "archive", "dispatch", "sim", "handle", "api",
        ],
    ),
];

/// Which modules may use the I/O crate, and which of its modules.
const CONNECTORS: &[(&str, &[&str])] = &[
    // a Kafka producer's partitioner, to know whose partition a site is
    ("config", &["partition"]),
    // the HJ 212 packet type the decoder reads
    ("decode", &["hj212"]),
    // sinks: webhooks, MQTT, Kafka
    ("dispatch", &["http", "mqtt", "kafka"]),
    // recorded files
    ("replay", &["file"]),
    // the HTTP server's connection admission (caps, lockout); never a source or a sink
    ("api", &["admit"]),
    ("service", &["*"]),
];

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without its line comments and its unit tests.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `a::{b, c::{d, e}}` as the paths it names.
fn expand(path: &str) -> Vec<String> {
    let path = path.trim();
    let Some(open) = path.find('{') else {
        return vec![path.to_string()];
    };
    let close = path.rfind('}').unwrap_or(path.len());
    if close < open {
        // not a path: "use " inside a string, say
        return vec![path.to_string()];
    }
    let (prefix, body) = (&path[..open], &path[open + 1..close]);
    let mut items = Vec::new();
    let (mut depth, mut cur) = (0, String::new());
    for ch in body.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if ch == ',' && depth == 0 {
            items.push(std::mem::take(&mut cur));
        } else {
            cur.push(ch);
        }
    }
    items.push(cur);
    items
        .iter()
        .filter(|i| !i.trim().is_empty())
        .flat_map(|i| expand(i))
        .map(|e| format!("{prefix}{e}"))
        .collect()
}

/// Every `crate::x...` and `yujing_connectors::x...` path a file names: in `use` items (with
/// their braces) and written out in the code.
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        rest = &rest[i + 4..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(end) = rest.find(';') else { break };
        let item: String = rest[..end].split_whitespace().collect();
        out.extend(expand(&item));
    }
    for root in ["crate::", "yujing_connectors::"] {
        let mut rest = code;
        while let Some(i) = rest.find(root) {
            let before = rest[..i].chars().last();
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                out.push(tail[..end].to_string());
            }
            rest = &rest[i + root.len()..];
        }
    }
    out
}

/// (module of `src/`, module it imports, file) for every import across modules; and
/// (module, connectors module, file) for every use of the I/O crate.
type Edges = Vec<(String, String, String)>;

fn imports() -> (Edges, Edges) {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let (mut internal, mut io) = (Vec::new(), Vec::new());
    for f in files {
        let rel = f.strip_prefix(src()).expect("under src");
        let first = rel.components().next().expect("component");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        // the binary (main.rs and its commands) may use every module
        if ["lib", "main", "commands"].contains(&module.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("read");
        for p in paths(&code(&text)) {
            let name = rel.display().to_string();
            if let Some(rest) = p.strip_prefix("crate::") {
                let target = rest.split("::").next().unwrap_or("").to_string();
                if !target.is_empty() && target != module && target != "self" {
                    internal.push((module.clone(), target, name));
                }
            } else if let Some(rest) = p.strip_prefix("yujing_connectors::") {
                let target = rest.split("::").next().unwrap_or("").to_string();
                io.push((module.clone(), target, name));
            }
        }
    }
    (internal, io)
}

#[test]
fn every_module_is_in_the_table() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let table: BTreeSet<&str> = ALLOWED.iter().map(|(m, _)| *m).collect();
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs");
    let declared: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_string())
        .collect();
    let missing: Vec<&String> = declared
        .iter()
        .filter(|m| !table.contains(m.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "modules not in tests/layout.rs ALLOWED (where do they sit on the map?): {missing:?}"
    );
    // and the map in lib.rs names each of them
    for m in &declared {
        assert!(
            lib.contains(&format!("[`{m}`]")),
            "src/lib.rs's map does not mention [`{m}`]"
        );
    }
}

#[test]
fn imports_follow_the_map() {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(m, a)| (*m, a.iter().copied().collect()))
        .collect();
    let (internal, io) = imports();
    assert!(
        internal.len() > 100,
        "the scan found only {} imports: is it still reading the code?",
        internal.len()
    );
    let mut wrong: BTreeSet<String> = BTreeSet::new();
    for (from, to, file) in &internal {
        if !allowed
            .get(from.as_str())
            .is_some_and(|a| a.contains(to.as_str()))
        {
            wrong.insert(format!("src/{file}: {from} imports {to}"));
        }
    }
    for (from, to, file) in &io {
        let ok = CONNECTORS
            .iter()
            .find(|(m, _)| m == from)
            .is_some_and(|(_, a)| a.contains(&"*") || a.contains(&to.as_str()));
        if !ok {
            wrong.insert(format!("src/{file}: {from} uses yujing_connectors::{to}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "imports the map forbids:\n{}",
        wrong.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn no_module_reaches_itself_around_a_circle() {
    let (internal, _) = imports();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, to, _) in internal {
        graph.entry(from).or_default().insert(to);
    }
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&String> = graph[start].iter().collect();
        while let Some(m) = stack.pop() {
            assert!(m != start, "{start} reaches itself through its imports");
            if seen.insert(m.clone()) {
                stack.extend(graph.get(m).into_iter().flatten());
            }
        }
    }
}

#[test]
fn the_scan_sees_braces_and_paths() {
    let c = code("use crate::{a::B, c::{d, e::F}};\nfn f() { crate::g::h(); }\n// crate::x\n");
    let found: BTreeSet<String> = paths(&c).into_iter().collect();
    for want in [
        "crate::a::B",
        "crate::c::d",
        "crate::c::e::F",
        "crate::g::h",
    ] {
        assert!(found.contains(want), "{want} not in {found:?}");
    }
    assert!(
        !found.iter().any(|p| p.contains("::x")),
        "a comment was read: {found:?}"
    );
    let tested = code("use crate::a;\n#[cfg(test)]\nmod tests {\n    use crate::z;\n}\n");
    assert!(!paths(&tested).iter().any(|p| p.contains('z')));
}
