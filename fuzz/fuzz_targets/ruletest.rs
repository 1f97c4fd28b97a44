//! Arbitrary text as a rule test file (`rules/tests/*.yaml`), run against the sample county's
//! rules, as `yujing test` would: loading gives cases or positioned errors, and each case runs
//! to an outcome (passed, or what differed), never a panic. The test notation puts any series
//! of values, times and arrival orders through the real rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::{Arc, LazyLock};
use yujing::config::Config;
use yujing::ruletest;

static SAMPLE: LazyLock<Arc<Config>> = LazyLock::new(|| {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    Arc::new(Config::load(&root).unwrap_or_else(|d| panic!("the sample configuration: {d:?}")))
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // a long series is legal (a million samples an item) but only slow: keep runs short
    let long = text
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter_map(|w| w.rsplit_once('x'))
        .any(|(_, n)| n.len() > 4 || n.parse::<u32>().is_ok_and(|n| n > 2000));
    if long {
        return;
    }
    match ruletest::load("t.yaml", text, SAMPLE.settings.timezone) {
        Ok(cases) => {
            for case in &cases {
                let outcome = ruletest::run(&SAMPLE, case);
                assert!(outcome.location.starts_with("t.yaml:"));
                if let Some(why) = outcome.failure {
                    assert!(!why.is_empty());
                }
            }
        }
        Err(diags) => {
            assert!(!diags.is_empty());
            for d in &diags {
                assert!(d.pos.line >= 1 && d.pos.col >= 1, "{d}");
            }
        }
    }
});
