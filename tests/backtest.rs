//! `yujing backtest` as a user runs it: the NAB excerpt in tests/fixtures/nab (scores checked
//! against an independent re-implementation of NAB's sweeper.py, run on the same result files),
//! NAB's result-file layout, the report page; and a replay judged against an incident list.

use std::path::Path;
use std::process::Command;
use yujing::backtest::nab;

fn yujing(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_yujing"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run yujing");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn nab_scores_as_nab_does_and_writes_its_result_files() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("results");
    let html = tmp.path().join("nab.html");
    let (ok, stdout, stderr) = yujing(&[
        "backtest",
        "--nab",
        "tests/fixtures/nab",
        "--out",
        out.to_str().expect("utf8"),
        "--html",
        html.to_str().expect("utf8"),
    ]);
    assert!(ok, "{stderr}");
    for want in [
        "standard                    0.5      50.2      2/3      1",
        "reward_low_FP_rate          0.5      48.4",
        "reward_low_FN_rate          0.5      55.7",
    ] {
        assert!(stdout.contains(want), "{want}\n{stdout}");
    }
    // NAB's layout: <out>/<detector>/<category>/<detector>_<file>.csv
    let file = out.join("yujing/realKnownCause/yujing_rogue_agent_key_hold.csv");
    let text = std::fs::read_to_string(&file).expect("result file");
    assert!(text.starts_with("timestamp,value,anomaly_score,label\n2014-07-06 20:10:00,"));
    assert_eq!(text.lines().count(), 1883);
    // the window rows are labelled
    assert!(text.contains("2014-07-15 04:35:00,"));
    let labelled = text.lines().filter(|l| l.ends_with(",1")).count();
    assert!(labelled > 0);
    let fin = std::fs::read_to_string(out.join("final_results.json")).expect("final");
    assert!(
        fin.contains("\"yujing\"") && fin.contains("\"standard\": 50.19"),
        "{fin}"
    );
    let page = std::fs::read_to_string(&html).expect("html");
    assert!(page.contains("realKnownCause/rogue_agent_key_hold.csv") && page.contains("<svg"));

    // the scores of those files, by NAB's rules as sweeper.py computes them (reference values
    // from an independent Python re-implementation run on these result files)
    let corpus = nab::load(Path::new("tests/fixtures/nab")).expect("corpus");
    let scores: Vec<Vec<f64>> = corpus
        .series
        .iter()
        .map(|s| {
            let text = std::fs::read_to_string(nab::result_path(&out, "yujing", s)).expect("read");
            text.lines()
                .skip(1)
                .map(|l| l.split(',').nth(2).expect("col").parse().expect("num"))
                .collect()
        })
        .collect();
    let want = [
        ("standard", 50.190146837606, 0.011408810256360202),
        (
            "reward_low_FP_rate",
            48.35681350427267,
            -0.09859118974363978,
        ),
        (
            "reward_low_FN_rate",
            55.682320113959555,
            -0.9885911897436399,
        ),
    ];
    for (p, (name, score, raw)) in corpus.profiles.iter().zip(want) {
        assert_eq!(p.name, name);
        let s = nab::score_corpus(&corpus, &scores, p, 0.5);
        assert!((s.score - score).abs() < 1e-9, "{name}: {s:?}");
        assert!((s.raw - raw).abs() < 1e-9, "{name}: {s:?}");
        let o = nab::optimize(&corpus, &scores, p);
        assert!((o.threshold - 0.5036018779128338).abs() < 1e-6, "{o:?}");
    }
}

#[test]
fn a_broken_corpus_is_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(tmp.path().join("labels")).expect("mk");
    std::fs::create_dir_all(tmp.path().join("data/x")).expect("mk");
    std::fs::write(
        tmp.path().join("labels/combined_windows.json"),
        r#"{"x/missing.csv": []}"#,
    )
    .expect("w");
    let (ok, _, stderr) = yujing(&["backtest", "--nab", tmp.path().to_str().expect("utf8")]);
    assert!(!ok);
    assert!(
        stderr.contains("labels name x/missing.csv, which is not in"),
        "{stderr}"
    );
}

/// `yujing fit` on a Logan River excerpt with the technicians' stage flags, then `yujing
/// backtest` of the fitted model against the same flags: the model file is written with its
/// provenance, and the backtest reports the model's precision and recall as fit found them.
#[test]
fn fit_then_backtest_against_technician_flags() {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = tmp.path().join("stage.toml");
    // (the fitted file keeps the id `stage`: it stands in for the config's model of that name)
    let html = tmp.path().join("logan.html");
    let common = [
        "-c",
        "benches/backtest/logan_river",
        "--input",
        "tests/fixtures/logan/mainstreet_stage_2019q2.csv",
        "--mapping",
        "tests/fixtures/logan/mapping.yaml",
        "--site",
        "lr-mainstreet",
        "--flags",
        "stage_qual",
    ];
    let mut args = vec![
        "fit",
        "--model",
        "benches/backtest/logan_river/models/stage.toml",
        "--out",
        model.to_str().expect("utf8"),
    ];
    args.extend(common);
    let (ok, stdout, stderr) = yujing(&args);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("8500 readings of stage at 1 site(s)"),
        "{stdout}"
    );
    assert!(stdout.contains("cadence 15 min"), "{stdout}");
    assert!(
        stdout.contains("learn 672 readings, history 2880, suppress 48"),
        "{stdout}"
    );
    assert!(
        stdout.contains("against 3 incidents: precision 100.0%, recall 33.3%"),
        "{stdout}"
    );
    let text = std::fs::read_to_string(&model).expect("model file");
    assert!(text.starts_with("# Fitted by `yujing fit` from tests/fixtures/logan/"));
    let fitted = yujing::config::models::load_file(&model).expect("the model file loads");
    assert_eq!(fitted.anomaly().map(|p| p.learn), Some(672));
    assert_eq!(fitted.output, "stage_anomaly");

    let mut args = vec![
        "backtest",
        "--model",
        model.to_str().expect("utf8"),
        "--html",
        html.to_str().expect("utf8"),
    ];
    args.extend(common);
    let (ok, stdout, stderr) = yujing(&args);
    assert!(ok, "{stderr}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("model_stage "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    // warnings, right, precision, incidents, caught, recall
    assert_eq!(
        &cells[1..7],
        ["1", "1", "100.0%", "3", "1", "33.3%"],
        "{row}"
    );
    let page = std::fs::read_to_string(&html).expect("html");
    assert!(page.contains("lr-mainstreet stage"));
}

#[test]
fn an_incident_list_with_a_bad_time_is_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let inc = tmp.path().join("incidents.csv");
    std::fs::write(
        &inc,
        "site,start,end\nlr-mainstreet,2019-05-30 13:45,yesterday\n",
    )
    .expect("w");
    let (ok, _, stderr) = yujing(&[
        "backtest",
        "-c",
        "benches/backtest/logan_river",
        "--input",
        "tests/fixtures/logan/mainstreet_stage_2019q2.csv",
        "--mapping",
        "tests/fixtures/logan/mapping.yaml",
        "--incidents",
        inc.to_str().expect("utf8"),
    ]);
    assert!(!ok);
    assert!(stderr.contains("incidents.csv:2: `yesterday`"), "{stderr}");
}
