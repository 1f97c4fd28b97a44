//! The sample county's configuration, built into the binary: the registry, rules, rule tests,
//! models, routes and `yujing.toml` of the repository's top level. `yujing demo` runs on it when
//! no configuration is at hand (an installed binary, a container) and writes it out first, so
//! what it runs on can be read, copied and edited like any configuration directory.

use std::io;
use std::path::Path;

/// `(path, text)` of each file named, read from the repository's top level at build time.
macro_rules! built_in {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../../", $path)))),*]
    };
}

/// Each file's path in a configuration directory, and its text.
pub const FILES: &[(&str, &str)] = built_in![
    "yujing.toml",
    "sites.yaml",
    "routes.yaml",
    "rules/cameras.yaml",
    "rules/construction.yaml",
    "rules/devices.yaml",
    "rules/environment.yaml",
    "rules/hotline.yaml",
    "rules/risk.yaml",
    "rules/tourism.yaml",
    "rules/water.yaml",
    "rules/tests/cameras.yaml",
    "rules/tests/construction.yaml",
    "rules/tests/devices.yaml",
    "rules/tests/environment.yaml",
    "rules/tests/hotline.yaml",
    "rules/tests/risk.yaml",
    "rules/tests/tourism.yaml",
    "rules/tests/water.yaml",
    "models/README.md",
    "models/anomaly.toml",
    "models/site_risk.toml",
    "models/water_level_forecast.toml",
];

/// What [`write`] did: files written from the built-in sample, and files already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub written: usize,
    pub kept: usize,
}

/// Write the sample configuration into `dir` (created if need be). A file already there is
/// left as it is: what someone edited is never overwritten.
pub fn write(dir: &Path) -> io::Result<Written> {
    let mut done = Written {
        written: 0,
        kept: 0,
    };
    for (name, text) in FILES {
        let path = dir.join(name);
        if path.exists() {
            done.kept += 1;
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text)?;
        done.written += 1;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{has_registry, Config};
    use std::collections::BTreeSet;

    /// The repository's sample files, as `FILES` names them.
    fn on_disk() -> BTreeSet<String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut names: BTreeSet<String> = ["yujing.toml", "sites.yaml", "routes.yaml"]
            .into_iter()
            .map(String::from)
            .collect();
        for (dir, ext) in [
            ("rules", "yaml"),
            ("rules/tests", "yaml"),
            ("models", "toml"),
        ] {
            let entries = std::fs::read_dir(root.join(dir)).expect("sample folder");
            for e in entries.flatten() {
                let p = e.path();
                if p.is_file() && p.extension().is_some_and(|x| x == ext) {
                    let file = p.file_name().unwrap_or_default().to_string_lossy();
                    names.insert(format!("{dir}/{file}"));
                }
            }
        }
        names.insert("models/README.md".into());
        names
    }

    #[test]
    fn every_sample_file_is_built_in() {
        let built_in: BTreeSet<String> = FILES.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(
            built_in,
            on_disk(),
            "src/config/sample.rs must list exactly the repository's sample files"
        );
    }

    #[test]
    fn written_out_it_loads_and_keeps_edits() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(!has_registry(dir.path()));
        std::fs::write(dir.path().join("routes.yaml"), "# mine\n").expect("write");
        let done = write(dir.path()).expect("write the sample");
        assert_eq!((done.written, done.kept), (FILES.len() - 1, 1));
        assert!(has_registry(dir.path()));
        let mine = std::fs::read_to_string(dir.path().join("routes.yaml")).expect("read");
        assert_eq!(mine, "# mine\n", "an existing file is left alone");
        std::fs::remove_file(dir.path().join("routes.yaml")).expect("remove");
        let done = write(dir.path()).expect("write again");
        assert_eq!((done.written, done.kept), (1, FILES.len() - 1));
        let cfg = Config::load(dir.path())
            .unwrap_or_else(|d| panic!("the built-in sample does not load: {d:?}"));
        assert!(cfg.registry.sites.len() >= 24);
        assert!(!cfg.rules.is_empty());
        assert!(!cfg.models.is_empty());
    }
}
