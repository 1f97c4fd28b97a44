//! Bad input never panics: random bytes through every decoder, and randomly damaged copies of the
//! sample configuration through the loaders. Each must come back with a result or a reasoned error.

use proptest::prelude::*;
use std::path::PathBuf;
use std::sync::LazyLock;
use yujing::config::{rules, sites, sites_csv, Config};
use yujing::decode::{csv::CsvDecoder, json, wide};
use yujing::ruletest;

mod drive;
use drive::drive;

const CSV_SITES: &str = "site,name,kind,department,lat,lon,device,type,metrics,param:warning_level_m,credit_code,enterprise
rv-01,城关水文站,water,slj;yjj,29.04,119.67,rv-01-level,gauge,water_level,42.5,,
rv-01,,,,,,rv-01-rain,rain_gauge,rainfall,,,
cs-01,工地,construction,zjj,29.1,119.7,cs-01-dust,dust,pm10;tsp,,91330100MA27XL3Q2U,某公司
";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(p: &str) -> String {
    std::fs::read_to_string(root().join(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// Damage a text: delete, insert or replace a few characters at random places.
fn damaged(text: String) -> impl Strategy<Value = String> {
    let len = text.chars().count().max(1);
    prop::collection::vec(
        (
            0..len,
            0u8..3,
            prop::sample::select(vec![
                ':', '{', '}', '[', ']', '-', ' ', '\n', '"', '\'', 'x', '9', '#', '&', '*', '!',
                '\t', '|', '>',
            ]),
        ),
        1..6,
    )
    .prop_map(move |edits| {
        let mut chars: Vec<char> = text.chars().collect();
        for (at, op, c) in edits {
            let at = at.min(chars.len().saturating_sub(1));
            match op {
                0 if !chars.is_empty() => {
                    chars.remove(at);
                }
                1 => chars.insert(at, c),
                _ if !chars.is_empty() => chars[at] = c,
                _ => {}
            }
        }
        chars.into_iter().collect()
    })
}

/// Change a text's numbers: replace, add or drop digits, put in a sign or a point. A third to
/// a half of such rule files still load, with other sizes, durations, thresholds and percentages.
fn renumbered(text: String) -> impl Strategy<Value = String> {
    let digits: Vec<usize> = text
        .char_indices()
        .filter(|(_, c)| c.is_ascii_digit())
        .map(|(i, _)| i)
        .collect();
    let n = digits.len().max(1);
    prop::collection::vec((0..n, 0u8..5, 0u8..10), 1..8).prop_map(move |edits| {
        let mut out = text.clone();
        // from the last position back, so earlier byte offsets stay valid
        let mut edits: Vec<_> = edits
            .into_iter()
            .filter_map(|(k, op, d)| digits.get(k).map(|at| (*at, op, d)))
            .collect();
        edits.sort_by_key(|e| std::cmp::Reverse(e.0));
        edits.dedup_by_key(|e| e.0);
        for (at, op, d) in edits {
            let digit = char::from(b'0' + d);
            match op {
                0 => out.replace_range(at..at + 1, &digit.to_string()),
                1 => out.insert(at, digit),
                2 => {
                    out.remove(at);
                }
                3 => out.insert(at, '-'),
                _ => out.insert(at, '.'),
            }
        }
        out
    })
}

static SAMPLE: LazyLock<Config> = LazyLock::new(|| {
    Config::load(&root()).unwrap_or_else(|d| panic!("the sample configuration: {d:?}"))
});

#[test]
fn the_sample_rules_warn_on_the_drive() {
    assert!(drive(SAMPLE.clone(), 0x5eed) > 0);
}

/// The property below is only worth something if renumbered files do load: at a fixed seed,
/// at least a quarter of them must.
#[test]
fn renumbered_rule_files_mostly_still_load() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let text = read("rules/environment.yaml");
    let strategy = renumbered(text);
    let loaded = (0..48)
        .filter(|_| {
            let t = strategy.new_tree(&mut runner).expect("a tree").current();
            rules::load(&[("environment.yaml".into(), t)], &SAMPLE.registry).is_ok()
        })
        .count();
    assert!(loaded >= 12, "only {loaded} of 48 renumbered files load");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// A rule file with other numbers that still loads must run: no window, duration, threshold or
    /// template that passes the loader may panic the engine or give a warning no one can read.
    #[test]
    fn renumbered_rules_that_load_run_without_panics(
        (file, text) in prop::sample::select(vec!["water", "environment", "construction", "tourism", "devices", "risk"])
            .prop_flat_map(|f| renumbered(read(&format!("rules/{f}.yaml"))).prop_map(move |t| (f, t))),
        seed in any::<u64>(),
    ) {
        if let Ok(loaded) = rules::load(&[(format!("{file}.yaml"), text)], &SAMPLE.registry) {
            let mut cfg = SAMPLE.clone();
            cfg.rules = loaded;
            drive(cfg, seed);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut csv = CsvDecoder::new(chrono_tz::Asia::Shanghai);
        let _ = csv.decode(&bytes, &mut |_| {});
        let _ = csv.decode(&bytes, &mut |_| {});
        let _ = json::decode(&bytes, None, None, chrono_tz::Asia::Shanghai, &mut |_| {});
        let map = wide::Mapping::load("m.yaml", &read("mappings/beijing_air.yaml")).expect("mapping");
        let mut w = wide::WideDecoder::new(map, chrono_tz::UTC);
        let _ = w.decode(b"No,year,month,day,hour,PM2.5,PM10,SO2,NO2,CO,O3,station", &mut |_| {});
        let _ = w.decode(&bytes, &mut |_| {});
    }

    #[test]
    fn field_parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        use yujing_connectors::hj212::{frame, unframe, Framer, Packet};
        let mut f = Framer::default();
        f.push(&bytes);
        while let Some(p) = f.next_packet() {
            if let Ok(seg) = unframe(&p) {
                let _ = Packet::parse(seg);
            }
        }
        // a well-framed packet around random text: its fields decode or fail with a reason
        let text = String::from_utf8_lossy(&bytes).replace(['\r', '\n'], "");
        let framed = frame(&format!("QN=1;CN=2011;MN=M;Flag=5;CP=&&DataTime=20261128080000;{text}&&"));
        let seg = unframe(framed.as_bytes()).expect("framed");
        if let Ok(p) = Packet::parse(seg) {
            let _ = yujing::decode::hj212::decode(&p, "d", chrono_tz::Asia::Shanghai, &['N'], &mut |r| {
                assert!(r.value.is_finite())
            });
        }
        let _ = yujing::decode::onvif::parse(&bytes);
        let doc = format!("<tt:MetadataStream><tt:VideoAnalytics><tt:Frame UtcTime=\"{text}\"><tt:Object><tt:Class><tt:Type>{text}</tt:Type></tt:Class></tt:Object></tt:Frame></tt:VideoAnalytics></tt:MetadataStream>");
        let _ = yujing::decode::onvif::parse(doc.as_bytes());
        let _ = yujing::decode::onvif::EdgeEvent::parse(&bytes, chrono_tz::Asia::Shanghai);
    }

    #[test]
    fn csv_lines_of_plausible_shape_never_panic(ts in "[0-9T:+ -]{0,30}", dev in "[a-z0-9-]{0,12}", v in "[-+.eEnaNif0-9]{0,12}") {
        let mut csv = CsvDecoder::new(chrono_tz::Asia::Shanghai);
        let line = format!("{ts},cs-01,{dev},pm10,{v}");
        let _ = csv.decode(line.as_bytes(), &mut |r| assert!(r.value.is_finite()));
    }

    #[test]
    fn damaged_rule_files_give_errors_not_panics(text in damaged(read("rules/construction.yaml"))) {
        let reg = sites::load("sites.yaml", &read("sites.yaml")).expect("sample sites");
        if let Err(diags) = rules::load(&[("r.yaml".into(), text)], &reg) {
            prop_assert!(!diags.is_empty());
            for d in diags {
                prop_assert!(d.pos.line >= 1, "{d}");
            }
        }
    }

    #[test]
    fn damaged_sites_files_give_errors_not_panics(text in damaged(read("sites.yaml"))) {
        let _ = sites::load("sites.yaml", &text);
    }

    #[test]
    fn damaged_csv_registries_give_errors_not_panics(text in damaged(CSV_SITES.to_string())) {
        if let Err(diags) = sites_csv::load("sites.csv", &text) {
            prop_assert!(!diags.is_empty());
        }
    }

    #[test]
    fn damaged_rule_tests_give_errors_not_panics(text in damaged(read("rules/tests/water.yaml"))) {
        let _ = ruletest::load("t.yaml", &text, chrono_tz::Asia::Shanghai);
    }

    #[test]
    fn damaged_engine_settings_give_errors_not_panics(text in damaged(read("yujing.toml"))) {
        let _ = yujing::config::engine_settings("yujing.toml", &text);
    }
}
