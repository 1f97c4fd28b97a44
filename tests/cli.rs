//! The `yujing` binary driven from outside, as a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yujing(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_yujing"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run yujing")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[track_caller]
fn assert_has(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "missing {needle:?} in:\n{haystack}"
    );
}

/// A config directory in a temp dir: the sample sites.yaml and the given rule files.
fn config_with(rules: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(root().join("sites.yaml"), dir.path().join("sites.yaml")).expect("copy sites");
    std::fs::create_dir(dir.path().join("rules")).expect("mkdir");
    for (name, body) in rules {
        std::fs::write(dir.path().join("rules").join(name), body).expect("write rule");
    }
    dir
}

#[test]
fn check_passes_on_the_samples() {
    let out = yujing(&["check"], &root());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_has(&text(&out.stdout), "ok: 27 sites");
    let out = yujing(&["check", "rules/"], &root());
    assert!(out.status.success(), "{}", text(&out.stderr));
}

const BROKEN: &str = "rules:
  - id: r1
    title: t
    scope: {kind: factory}
    metric: pm10
    window: {type: tumbling, size: 10x}
    aggregate: avg
    above: {blue: 100, yellow: 90}
    message: \"{site.name} {vlaue}\"
  - id: r2
    title: t
    scope: {kind: water}
    metric: pm25
    window: {type: tumbling, size: 10m}
    aggregate: median
    above: {yellow: site.flood_limit_m}
    message: x
";

#[test]
fn check_points_at_every_error() {
    let dir = config_with(&[("broken.yaml", BROKEN)]);
    let out = yujing(&["check", "."], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for want in [
        "rules/broken.yaml:4:19: unknown site kind `factory`",
        "rules/broken.yaml:6:36: window.size: bad duration `10x`: unknown unit `x`",
        "rules/broken.yaml:8:32: thresholds out of order: yellow (90) must be higher than blue (100)",
        "rules/broken.yaml:9:27: unknown placeholder `{vlaue}` in message; did you mean `{value}`?",
        "rules/broken.yaml:13:13: no device in this rule's scope measures `pm25`",
        "rules/broken.yaml:15:16: unknown aggregate `median`",
        "rules/broken.yaml:16:21: site parameter `flood_limit_m` is not set on site `rv-01`",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

#[test]
fn check_survives_broken_yaml_and_sites() {
    let dir = config_with(&[
        ("a.yaml", "rules:\n  - id: [oops\n"),
        ("b.yaml", "rules: 3\n"),
    ]);
    std::fs::write(
        dir.path().join("sites.yaml"),
        "sites:\n  - id: s1\n    kind: moon\n",
    )
    .expect("write");
    let out = yujing(&["check", "."], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("sites.yaml:3:11: unknown site kind `moon`"),
        "{err}"
    );
    assert!(
        err.contains("sites.yaml:2:5: site is missing the required field `name`")
            || err.contains("required field `name`"),
        "{err}"
    );
    // with a sound registry, rule syntax errors are found too
    std::fs::copy(root().join("sites.yaml"), dir.path().join("sites.yaml")).expect("copy");
    let out = yujing(&["check", "."], dir.path());
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("rules/a.yaml:3:1: YAML syntax error"), "{err}");
    assert!(
        err.contains("rules/b.yaml:1:8: rules must be a list"),
        "{err}"
    );
}

#[test]
fn rule_tests_pass_and_failures_show_the_difference() {
    let out = yujing(&["test"], &root());
    let so = text(&out.stdout);
    assert!(out.status.success(), "{so}\n{}", text(&out.stderr));
    assert!(so.lines().any(|l| l.ends_with(" passed, 0 failed")), "{so}");

    let dir = config_with(&[(
        "t.yaml",
        &std::fs::read_to_string(root().join("rules/tourism.yaml")).expect("read"),
    )]);
    std::fs::create_dir(dir.path().join("rules/tests")).expect("mkdir");
    std::fs::write(
        dir.path().join("rules/tests/wrong.yaml"),
        "tests:\n  - name: wrong level\n    rules: [scenic_crowding]\n    input:\n      - {device: sa-02-gate, metric: visitors, values: \"7300x10\"}\n    expect:\n      - at: 10m\n        warnings: [{rule: scenic_crowding, site: sa-02, level: red}]\n",
    )
    .expect("write");
    let out = yujing(&["test"], dir.path());
    let so = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{so}");
    assert!(
        so.contains("FAIL rules/tests/wrong.yaml:2:5 wrong level"),
        "{so}"
    );
    assert!(so.contains("expected, not raised: {rule: scenic_crowding, site: sa-02, level: red, transition: raise}"), "{so}");
    assert!(so.contains("raised, not expected: {rule: scenic_crowding, site: sa-02, level: orange, transition: raise, subject: sa-02-gate, value: 7300} at 10m"), "{so}");
    assert!(so.contains("0 passed, 1 failed"), "{so}");
}

fn warnings(jsonl: &str) -> Vec<serde_json::Value> {
    jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("warning JSON"))
        .collect()
}

#[test]
fn replay_warns_on_beijing_heavy_pollution_days() {
    let r = root();
    let f1 = r.join("tests/fixtures/beijing/dongsi_2015-11-24_2015-12-04.csv");
    let out = yujing(
        &[
            "replay",
            "--mapping",
            "mappings/beijing_air.yaml",
            "--input",
            f1.to_str().unwrap_or_default(),
            "-q",
        ],
        &r,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ws = warnings(&text(&out.stdout));
    // the PM2.5 warning is red through 2015-12-01 (a severe episode) and clears on 12-02
    let red = ws
        .iter()
        .find(|w| w["rule"] == "aq_pm25_24h" && w["level"] == "red")
        .expect("a red PM2.5 warning");
    assert!(
        red["at"].as_str().unwrap_or_default() < "2015-12-01",
        "{red}"
    );
    assert_eq!(red["site"]["id"], "bj-dongsi");
    assert_eq!(red["departments"], serde_json::json!(["sthj"]));
    let id = red["id"].as_str().unwrap_or_default();
    let clear = ws
        .iter()
        .find(|w| w["id"] == id && w["transition"] == "clear")
        .expect("cleared later");
    assert!(
        clear["at"].as_str().unwrap_or_default() > "2015-12-02",
        "{clear}"
    );
    assert!(ws
        .iter()
        .filter(|w| w["id"] == id)
        .all(|w| w["rule"] == "aq_pm25_24h"));

    let f2 = r.join("tests/fixtures/beijing/dongsi_2016-12-14_2016-12-23.csv");
    let out = yujing(
        &[
            "replay",
            "--mapping",
            "mappings/beijing_air.yaml",
            "--input",
            f2.to_str().unwrap_or_default(),
            "-q",
        ],
        &r,
    );
    let ws = warnings(&text(&out.stdout));
    assert!(
        ws.iter().any(|w| w["rule"] == "aq_pm25_24h"
            && w["level"] == "red"
            && w["at"]
                .as_str()
                .unwrap_or_default()
                .starts_with("2016-12-20")),
        "no red PM2.5 warning on 2016-12-20"
    );
}

#[test]
fn replay_dead_letters_bad_input_and_carries_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.csv");
    let mut lines = vec!["ts,site,device,metric,value".to_string()];
    for i in 0..30 {
        lines.push(format!(
            "2026-11-28T10:{i:02}:00+08:00,sa-02,sa-02-gate,visitors,7300"
        ));
    }
    lines.push("2026-11-28T10:31:00+08:00,sa-02,sa-02-gate,visitors,NaN".into());
    lines.push("2026-11-28T10:31:00+08:00,sa-02,no-such-device,visitors,1".into());
    lines.push("2026-11-28T10:31:00+08:00,sa-03,sa-02-gate,visitors,1".into());
    lines.push("2099-01-01T00:00:00+08:00,sa-02,sa-02-gate,visitors,1".into());
    lines.push("not a reading".into());
    lines.push("2026-11-28T10:32:00+08:00,sa-02,sa-02-gate,visitors,".into());
    lines.push(format!(
        "2026-11-28T10:32:00+08:00,sa-02,sa-02-gate,visitors,{}",
        "9".repeat(70_000)
    ));
    // late for every rule on visitors, the 2-hour windows of crowding_complaints included
    lines.push("2026-11-28T08:00:00+08:00,sa-02,sa-02-gate,visitors,9000".into());
    lines.push("2026-11-28T10:33:00+08:00,sa-02,sa-02-gate,visitors,7300".into());
    std::fs::write(&input, lines.join("\n")).expect("write");
    let out_path = dir.path().join("w.jsonl");
    let out = yujing(
        &[
            "replay",
            "-c",
            root().to_str().unwrap_or_default(),
            "-i",
            "in.csv",
            "-o",
            "w.jsonl",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary = text(&out.stderr);
    for want in [
        "readings         39",
        "processed        31",
        "rejected         8",
        "non_finite       1",
        "unknown_device   1",
        "site_mismatch    1",
        "bad_timestamp    1",
        "malformed        1",
        "missing_field    1",
        "oversize         1",
        "late             1",
    ] {
        assert!(summary.contains(want), "missing {want:?} in\n{summary}");
    }
    let ws = warnings(&std::fs::read_to_string(out_path).expect("output"));
    assert!(
        ws.iter()
            .any(|w| w["rule"] == "scenic_crowding" && w["level"] == "orange"),
        "{ws:?}"
    );
    let dead =
        std::fs::read_to_string(dir.path().join("yujing-dead-letter.jsonl")).expect("dead letters");
    let reasons: Vec<String> = dead
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["reason"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(reasons.len(), 8, "{dead}");
    for r in [
        "non_finite",
        "unknown_device",
        "site_mismatch",
        "bad_timestamp",
        "malformed",
        "missing_field",
        "oversize",
        "late",
    ] {
        assert!(reasons.iter().any(|x| x == r), "no {r} in {dead}");
    }
}

/// Plain CSV lines are decoded a batch at a time ahead of the engine; any other line goes
/// through the general path one at a time. Both must give the same warnings and the same dead
/// letters, in line order: the same input with every field quoted (all general path) is the
/// reference.
#[test]
fn replay_batches_plain_lines_without_changing_anything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rows: Vec<Vec<String>> = Vec::new();
    let t0 = 1_795_831_200_000i64;
    for i in 0..400i64 {
        let ts = t0 + i * 30_000;
        let (dev, site, metric, v) = match i % 3 {
            0 => (
                "sa-02-gate",
                "sa-02",
                "visitors",
                format!("{}", 6000 + (i * 37) % 2500),
            ),
            1 => (
                "cs-06-dust",
                "cs-06",
                "pm10",
                format!("{}.5", 40 + (i * 13) % 300),
            ),
            _ => (
                "cs-06-dust",
                "cs-06",
                "tsp",
                format!("{}", 100 + (i * 7) % 400),
            ),
        };
        let row = |d: &str, s: &str, v: &str, ts: i64| {
            vec![
                ts.to_string(),
                s.to_string(),
                d.to_string(),
                metric.to_string(),
                v.to_string(),
            ]
        };
        rows.push(row(dev, site, &v, ts));
        // something wrong now and then, at varying distances from the batch boundaries
        match i % 29 {
            3 => rows.push(row("no-such-device", site, "1", ts)),
            7 => rows.push(row(dev, "sa-03", "1", ts)),
            11 => rows.push(row(dev, site, "NaN", ts)),
            13 => rows.push(row(dev, site, "", ts)),
            17 => rows.push(row(dev, site, "1", ts - 3 * 3_600_000)),
            19 => rows.push(row(dev, site, "1", ts + 400 * 86_400_000)),
            23 => rows.push(vec!["not a reading".into()]),
            _ => {}
        }
    }
    let plain: Vec<String> = rows.iter().map(|r| r.join(",")).collect();
    let quoted: Vec<String> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|f| format!("\"{f}\""))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    // the same rows as JSON lines: plain (batched), and with each device's first letter
    // escaped (a name that cannot be borrowed from the input: the line-at-a-time path)
    let json = |escape: bool| -> Vec<String> {
        rows.iter()
            .map(|r| match r.as_slice() {
                [ts, site, dev, metric, v] => {
                    let dev = match (escape, dev.chars().next()) {
                        (true, Some(c)) => format!("\\u{:04x}{}", c as u32, &dev[1..]),
                        _ => dev.clone(),
                    };
                    let v = match v.parse::<f64>() {
                        Ok(x) if x.is_finite() => v.clone(),
                        _ => format!("\"{v}\""),
                    };
                    format!(
                        r#"{{"ts":{ts},"site":"{site}","device":"{dev}","metric":"{metric}","value":{v}}}"#
                    )
                }
                other => other.join(","),
            })
            .collect()
    };
    let run = |name: &str, lines: &[String]| {
        let json = name.starts_with("json");
        // (JSON lines have no header: a blank line, skipped, keeps the line numbers the same)
        let mut text_in = String::from(if json {
            "\n"
        } else {
            "ts,site,device,metric,value\n"
        });
        for l in lines {
            text_in.push_str(l);
            text_in.push('\n');
        }
        let input = format!("{name}.{}", if json { "jsonl" } else { "csv" });
        std::fs::write(dir.path().join(&input), text_in).expect("write");
        let out = yujing(
            &[
                "replay",
                "-c",
                root().to_str().unwrap_or_default(),
                "-i",
                &input,
                "-o",
                &format!("{name}.out.jsonl"),
                "--dead-letter",
                &format!("{name}.dead.jsonl"),
            ],
            dir.path(),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let read = |f: String| std::fs::read_to_string(dir.path().join(f)).expect("read");
        let dead: Vec<(u64, String, String)> = read(format!("{name}.dead.jsonl"))
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("json");
                (
                    v["line"].as_u64().unwrap_or(0),
                    v["reason"].as_str().unwrap_or_default().to_string(),
                    v["detail"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        (read(format!("{name}.out.jsonl")), dead)
    };
    let (w_plain, d_plain) = run("plain", &plain);
    let (w_quoted, d_quoted) = run("quoted", &quoted);
    assert!(!w_plain.is_empty(), "the input raises warnings");
    assert_eq!(w_plain, w_quoted, "warnings differ between the two paths");
    assert_eq!(
        d_plain, d_quoted,
        "dead letters differ between the two paths"
    );
    let (w_json, d_json) = run("json", &json(false));
    let (w_escaped, d_escaped) = run("json_escaped", &json(true));
    assert_eq!(w_json, w_plain, "JSON lines warn as the CSV does");
    assert_eq!(w_json, w_escaped, "warnings differ between the JSON paths");
    assert_eq!(
        d_json, d_escaped,
        "dead letters differ between the JSON paths"
    );
    // the same lines rejected for the same reasons, but for an empty value, which CSV calls
    // missing and JSON (`""`) not a number
    let reasons = |d: &[(u64, String, String)]| -> Vec<(u64, String)> {
        d.iter()
            .map(|(n, r, _)| (*n, r.replace("missing_field", "malformed")))
            .collect()
    };
    assert_eq!(reasons(&d_json), reasons(&d_plain));
    let lines: Vec<u64> = d_plain.iter().map(|d| d.0).collect();
    assert!(
        lines.windows(2).all(|w| w[0] <= w[1]),
        "in line order: {lines:?}"
    );
    for reason in [
        "unknown_device",
        "site_mismatch",
        "non_finite",
        "missing_field",
        "late",
        "bad_timestamp",
        "malformed",
    ] {
        assert!(
            d_plain.iter().any(|d| d.1 == reason),
            "no {reason} in {d_plain:?}"
        );
    }
}

#[test]
fn replay_reads_json_lines_and_ids_are_stable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lines = Vec::new();
    // cs-06 dust: high, low, high again within min_gap (1 h): the same warning reopens
    for (i, v) in (0..180).map(|i| (i, if (60..100).contains(&i) { 20.0 } else { 200.0 })) {
        let ts = 1_795_831_200_000i64 + i * 60_000;
        lines.push(format!(r#"{{"ts":{ts},"site":"cs-06","device":"cs-06-dust","values":{{"pm10":{v},"tsp":{}}}}}"#, v * 1.5));
    }
    std::fs::write(dir.path().join("in.jsonl"), lines.join("\n")).expect("write");
    let run = || {
        let out = yujing(
            &[
                "replay",
                "-c",
                root().to_str().unwrap_or_default(),
                "-i",
                "in.jsonl",
                "-q",
            ],
            dir.path(),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        warnings(&text(&out.stdout))
    };
    let (a, b) = (run(), run());
    assert_eq!(a, b, "replay is deterministic");
    let dust: Vec<&serde_json::Value> = a.iter().filter(|w| w["rule"] == "dust_pm10_1h").collect();
    let kinds: Vec<&str> = dust
        .iter()
        .map(|w| w["transition"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(kinds, vec!["raise", "clear", "raise"], "{dust:?}");
    assert!(
        dust.iter().all(|w| w["id"] == dust[0]["id"]),
        "a relapse within min_gap keeps the id"
    );
    assert_eq!(dust[2]["reopened"], true);
    assert!(dust[0]["id"].as_str().unwrap_or_default().starts_with("w-"));
    assert_eq!(
        dust[0]["evidence"]["devices"],
        serde_json::json!(["cs-06-dust"])
    );
}

#[test]
fn demo_replays_the_sample_day() {
    let out = yujing(&["demo", "--offline"], &root());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let so = text(&out.stdout);
    for want in [
        "【红色】",
        "【橙色】",
        "【黄色】",
        "【蓝色】",
        "宁溪大道改造工程扬尘监测PM10小时均值",
        "西溪渡口水位站监测设备rv-03-level已15m无数据上报",
        "龙门峡谷景区瞬时游客量",
    ] {
        assert!(so.contains(want), "missing {want:?} in\n{so}");
    }
    let out = yujing(&["demo", "--offline", "--en"], &root());
    assert_has(&text(&out.stdout), "[orange] raise");
}

/// An installed binary, or one in a container, has no configuration beside it: the demo runs
/// on the sample county built in, writes its files out where it says, and they are the
/// repository's (the same warnings; `check` and `test` pass on them there).
#[test]
fn the_demo_runs_anywhere_on_the_built_in_sample() {
    let empty = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("tempdir");
    let data_s = data.path().to_str().unwrap_or_default();
    let out = yujing(&["demo", "--offline", "--data", data_s], empty.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let written = data.path().join("config");
    assert_has(&text(&out.stderr), "built-in sample county");
    assert_has(&text(&out.stderr), &written.display().to_string());
    let from_repo = yujing(&["demo", "--offline"], &root());
    assert_eq!(
        text(&out.stdout),
        text(&from_repo.stdout),
        "the built-in sample day differs from the repository's"
    );
    assert!(out.stdout.len() > 1000, "{}", text(&out.stdout));
    let check = yujing(&["check"], &written);
    assert!(check.status.success(), "{}", text(&check.stderr));
    let test = yujing(&["test"], &written);
    assert!(test.status.success(), "{}", text(&test.stdout));
    assert_has(&text(&test.stdout), " 0 failed");
    // the same --data again: the files there are what runs, and the notice says so
    let again = yujing(&["demo", "--offline", "--data", data_s], empty.path());
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_has(&text(&again.stderr), "files kept as they were, 0 written");
    assert!(!text(&again.stderr).contains("running the built-in sample county"));
    assert_eq!(text(&again.stdout), text(&from_repo.stdout));
    // an explicit --config is never replaced by the sample
    let out = yujing(&["demo", "--offline", "--config", "nowhere"], empty.path());
    assert!(!out.status.success());
    assert_has(&text(&out.stderr), "nowhere/sites.yaml");
}

#[test]
fn bad_command_lines_get_clear_errors() {
    let out = yujing(&["replay", "-i", "/nonexistent/file.csv"], &root());
    assert_eq!(out.status.code(), Some(2));
    assert_has(&text(&out.stderr), "cannot open /nonexistent/file.csv");
    let out = yujing(&["replay", "-i", "x.parquetz"], &root());
    assert_has(&text(&out.stderr), "cannot tell the input format");
}

#[test]
fn replay_survives_an_outage_longer_than_max_future() {
    // two days without data, then the feed resumes: nothing after the gap may be lost
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lines = vec!["ts,site,device,metric,value".to_string()];
    for day in [0i64, 3] {
        for m in 0..120i64 {
            let ts = 1_795_795_200_000 + day * 86_400_000 + m * 60_000;
            lines.push(format!(
                "{ts},sa-02,sa-02-gate,visitors,{}",
                if day == 3 { 7500 } else { 1000 }
            ));
        }
    }
    std::fs::write(dir.path().join("in.csv"), lines.join("\n")).expect("write");
    let out = yujing(
        &[
            "replay",
            "-c",
            root().to_str().unwrap_or_default(),
            "-i",
            "in.csv",
        ],
        dir.path(),
    );
    assert!(out.status.success());
    let summary = text(&out.stderr);
    assert!(summary.contains("processed        240"), "{summary}");
    assert!(summary.contains("rejected         0"), "{summary}");
    let ws = warnings(&text(&out.stdout));
    assert!(
        ws.iter()
            .any(|w| w["rule"] == "scenic_crowding" && w["level"] == "orange"),
        "{ws:?}"
    );
}

/// The whole Dongsi file, when the shared data is there (CI has it; a bare clone skips this).
#[test]
fn replay_full_beijing_station_when_available() {
    let file =
        root().join("../shared/data/real/beijing_air/PRSA_Data_Dongsi_20130301-20170228.csv");
    if !file.exists() {
        eprintln!("skipped: {} not present", file.display());
        return;
    }
    let out = yujing(
        &[
            "replay",
            "--mapping",
            "mappings/beijing_air.yaml",
            "-i",
            file.to_str().unwrap_or_default(),
        ],
        &root(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary = text(&out.stderr);
    assert!(summary.contains("rejected         0"), "{summary}");
    let ws = warnings(&text(&out.stdout));
    // the PM2.5 warning level in force at the end of each severe day
    let level_at = |day: &str| {
        let mut level = None;
        for w in ws.iter().filter(|w| w["rule"] == "aq_pm25_24h") {
            if w["at"].as_str().unwrap_or_default()[..10] > *day {
                break;
            }
            level = if w["transition"] == "clear" {
                None
            } else {
                w["level"].as_str().map(str::to_string)
            };
        }
        level
    };
    assert_eq!(level_at("2015-12-01").as_deref(), Some("red"));
    assert_eq!(level_at("2016-12-20").as_deref(), Some("red"));
}

#[test]
fn a_csv_registry_works_like_the_yaml_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("sites.csv"),
        "site,name,kind,department,device,type,metrics,param:capacity\nsa-09,溪口景区,tourism,wlj,sa-09-gate,visitor_counter,visitors,1000\n",
    )
    .expect("write");
    std::fs::create_dir(dir.path().join("rules")).expect("mkdir");
    std::fs::copy(
        root().join("rules/tourism.yaml"),
        dir.path().join("rules/tourism.yaml"),
    )
    .expect("copy");
    let out = yujing(&["check", "."], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_has(&text(&out.stdout), "ok: 1 sites, 1 devices, 1 rules");
    let readings: Vec<String> = (0..20)
        .map(|m| {
            format!(
                "{},sa-09,sa-09-gate,visitors,950",
                1_795_795_200_000i64 + m * 60_000
            )
        })
        .collect();
    std::fs::write(dir.path().join("in.csv"), readings.join("\n")).expect("write");
    let out = yujing(&["replay", "-i", "in.csv", "-q"], dir.path());
    let ws = warnings(&text(&out.stdout));
    assert!(
        ws.iter().any(|w| w["rule"] == "scenic_crowding"
            && w["level"] == "orange"
            && w["site"]["name"] == "溪口景区"),
        "{ws:?}"
    );
    // a broken row points at its line and column; two registries are one too many
    std::fs::write(
        dir.path().join("sites.csv"),
        "site,kind,department,device,metrics\nsa-09,lake,wlj,sa-09-gate,visitors\n",
    )
    .expect("write");
    let out = yujing(&["check", "."], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert_has(
        &text(&out.stderr),
        "sites.csv:2:7: unknown site kind `lake`",
    );
    std::fs::copy(root().join("sites.yaml"), dir.path().join("sites.yaml")).expect("copy");
    let out = yujing(&["check", "."], dir.path());
    assert_has(&text(&out.stderr), "both sites.yaml and sites.csv are here");
}

#[test]
fn token_prints_a_token_and_the_entry_that_stores_only_its_hash() {
    let out = yujing(
        &["token", "--name", "duty", "--role", "department:zjj"],
        &root(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    let token = s
        .lines()
        .next()
        .and_then(|l| l.rsplit(' ').next())
        .expect("token line")
        .to_string();
    assert!(token.starts_with("yj_") && token.len() == 35, "{s}");
    assert_has(&s, "role = \"department:zjj\"");
    assert_has(
        &s,
        &format!(
            "sha256 = \"{}\"",
            yujing::dispatch::channel::token_hash(&token)
        ),
    );
    let bad = yujing(&["token", "--name", "x", "--role", "boss"], &root());
    assert_eq!(bad.status.code(), Some(2));
    assert_has(&text(&bad.stderr), "unknown role `boss`");
}

#[test]
fn check_reports_a_broken_routes_file_with_positions() {
    let dir = config_with(&[]);
    let f = "rules/environment.yaml";
    std::fs::copy(root().join(f), dir.path().join(f)).expect("copy rule");
    std::fs::write(
        dir.path().join("routes.yaml"),
        "channels:\n  - {id: h, type: webhook, url: \"http://x/\", secret: nokey}\ndepartments:\n  sthj: {channels: [h, nope]}\nroutes:\n  - match: {rule: [aq_pm25_24hh]}\n",
    )
    .expect("routes");
    let out = yujing(&["check", &dir.path().display().to_string()], &root());
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_has(&err, "routes.yaml:4:24: unknown channel `nope`");
    assert_has(
        &err,
        "unknown rule `aq_pm25_24hh`; did you mean `aq_pm25_24h`?",
    );
    assert_has(
        &err,
        "secret `nokey` is not in the [secrets] table of yujing.toml",
    );
}

#[test]
fn check_names_a_camera_secret_that_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    for f in ["sites.yaml", "routes.yaml"] {
        std::fs::copy(root().join(f), dir.path().join(f)).expect("copy");
    }
    let toml = std::fs::read_to_string(root().join("yujing.toml"))
        .expect("toml")
        .replace("camera-cs-01 = ", "# camera-cs-01 = ");
    std::fs::write(dir.path().join("yujing.toml"), toml).expect("toml");
    std::fs::create_dir(dir.path().join("rules")).expect("mkdir");
    for e in std::fs::read_dir(root().join("rules")).expect("rules") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "yaml") {
            std::fs::copy(
                &p,
                dir.path().join("rules").join(p.file_name().expect("name")),
            )
            .expect("copy rule");
        }
    }
    let out = yujing(&["check", "."], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let line = std::fs::read_to_string(root().join("sites.yaml"))
        .expect("sites")
        .lines()
        .position(|l| l.contains("rtsp_credentials: camera-cs-01"))
        .expect("the sample camera")
        + 1;
    assert_has(
        &err,
        &format!("sites.yaml:{line}:27: camera `cs-01-cam1`: rtsp_credentials names the secret `camera-cs-01`"),
    );
}

#[test]
fn check_wants_kafka_for_a_kafka_channel() {
    let dir = tempfile::tempdir().expect("tempdir");
    for f in ["sites.yaml", "yujing.toml"] {
        std::fs::copy(root().join(f), dir.path().join(f)).expect("copy");
    }
    std::fs::create_dir(dir.path().join("rules")).expect("mkdir");
    std::fs::copy(
        root().join("rules/devices.yaml"),
        dir.path().join("rules/devices.yaml"),
    )
    .expect("rule");
    std::fs::write(
        dir.path().join("routes.yaml"),
        "channels:\n  - {id: bus, type: kafka, topic: yujing.warnings}\ndepartments:\n  zjj: {channels: [bus]}\n",
    )
    .expect("routes");
    let out = yujing(&["check", "."], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert_has(
        &text(&out.stderr),
        "routes.yaml:2:6: channel `bus` is a kafka channel, but yujing.toml has no [kafka] table",
    );
}
