//! Arbitrary text as a rule file, against the sample county's registry: loading must give rules
//! or positioned errors, never a panic. Rules that load then run: every device of the county
//! reports every metric it provides for six hours across a local midnight (rising, falling,
//! a gap, a late reading, a reading from the future), the watermark runs two days past the
//! end, and every transition is rendered into a warning (templates, evidence): the drive of
//! `tests/drive/mod.rs`. Nothing of that may panic, and what comes out must be sane.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::LazyLock;
use yujing::config::{rules, Config};

#[path = "../../tests/drive/mod.rs"]
mod drive;

static SAMPLE: LazyLock<Config> = LazyLock::new(|| {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    Config::load(&root).unwrap_or_else(|d| panic!("the sample configuration: {d:?}"))
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let loaded = rules::load(&[("f.yaml".into(), text.into())], &SAMPLE.registry);
    let rules = match loaded {
        Ok(r) => r,
        Err(diags) => {
            assert!(!diags.is_empty());
            for d in &diags {
                assert!(d.pos.line >= 1 && d.pos.col >= 1, "{d}");
                assert!(!d.msg.is_empty());
            }
            return;
        }
    };
    let mut cfg = SAMPLE.clone();
    cfg.rules = rules;
    let seed = data.iter().fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(*b));
    drive::drive(cfg, seed);
});
