//! The Numenta Anomaly Benchmark: its corpus layout (`data/<category>/<file>.csv`,
//! `labels/combined_windows.json`, `config/profiles.json`), its scoring exactly as NAB's
//! `sweeper.py` and `runner.py` compute it, and its result files.
//!
//! Scoring, per file of `n` rows: the first `min(floor(0.15 n), 750)` rows are a probation
//! period and not scored; a window none of whose rows is scored is not counted. A row is a
//! detection when its anomaly score is at or above the threshold. Inside a window of width `w`
//! whose right edge is row `r`, row `i` is worth `tp * S(-(r - i + 1) / w) / S(-1)`, where
//! `S(y) = 2 / (1 + e^(5y)) - 1` (and `-1` for `y >= 3`); a window scores the best of its
//! detections, or `-fn` without one. A detection outside windows costs `fp * S(d)`: `d = 3`
//! before the first window, else `|i - r| / (w - 1)` from the previous window's right edge `r`
//! and width `w`. The corpus score is the sum over files, normalised as
//! `100 (raw - null) / (perfect - null)` with `null = -fn` per counted window and
//! `perfect = tp` per labelled window. NAB picks, per profile, the threshold (one of the
//! scores) that maximises the corpus score: [`optimize`].

use super::BacktestError;
use crate::time::Ts;
use chrono::NaiveDateTime;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One cost profile of NAB.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub name: String,
    pub tp: f64,
    pub fp: f64,
    pub fn_: f64,
}

/// NAB's three profiles, as its `config/profiles.json` has them.
pub fn default_profiles() -> Vec<Profile> {
    let p = |name: &str, fp: f64, fn_: f64| Profile {
        name: name.into(),
        tp: 1.0,
        fp,
        fn_,
    };
    vec![
        p("standard", 0.11, 1.0),
        p("reward_low_FP_rate", 0.22, 1.0),
        p("reward_low_FN_rate", 0.11, 2.0),
    ]
}

/// One series of the corpus with its anomaly windows (row indexes, inclusive).
#[derive(Clone, Debug)]
pub struct Series {
    /// `category/file.csv`, as the labels name it.
    pub name: String,
    /// Timestamps as the file writes them (result files repeat them).
    pub stamps: Vec<String>,
    pub ts: Vec<Ts>,
    pub values: Vec<f64>,
    pub windows: Vec<(usize, usize)>,
}

impl Series {
    pub fn category(&self) -> &str {
        self.name.split('/').next().unwrap_or("")
    }
    pub fn file(&self) -> &str {
        self.name.rsplit('/').next().unwrap_or(&self.name)
    }
}

/// A NAB corpus: every series, the number of labelled windows, the profiles.
#[derive(Clone, Debug)]
pub struct Corpus {
    pub series: Vec<Series>,
    pub labelled_windows: usize,
    pub profiles: Vec<Profile>,
}

fn parse_stamp(s: &str) -> Option<Ts> {
    let s = s.trim();
    [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .map(|t| t.and_utc().timestamp_millis())
}

/// Load the corpus at `dir` (NAB's repository layout): every series in `data/`, with the
/// windows `labels/combined_windows.json` gives it (none if it names none). Every labelled file
/// must be there and every window edge must be one of its file's timestamps.
pub fn load(dir: &Path) -> Result<Corpus, BacktestError> {
    let labels_path = dir.join("labels").join("combined_windows.json");
    let text =
        std::fs::read_to_string(&labels_path).map_err(|e| BacktestError::io(&labels_path, e))?;
    let labels: BTreeMap<String, Vec<(String, String)>> = serde_json::from_str(&text)
        .map_err(|e| BacktestError::Input(format!("{}: {e}", labels_path.display())))?;
    let profiles = match std::fs::read_to_string(dir.join("config").join("profiles.json")) {
        Ok(t) => parse_profiles(&t)?,
        Err(_) => default_profiles(),
    };
    let data = dir.join("data");
    let mut names: Vec<String> = Vec::new();
    let cats = std::fs::read_dir(&data).map_err(|e| BacktestError::io(&data, e))?;
    for c in cats.flatten().filter(|c| c.path().is_dir()) {
        let files = std::fs::read_dir(c.path()).map_err(|e| BacktestError::io(&c.path(), e))?;
        for f in files.flatten() {
            if f.path().extension().is_some_and(|e| e == "csv") {
                names.push(format!(
                    "{}/{}",
                    c.file_name().to_string_lossy(),
                    f.file_name().to_string_lossy()
                ));
            }
        }
    }
    names.sort();
    if let Some(missing) = labels.keys().find(|k| !names.contains(k)) {
        return Err(BacktestError::Input(format!(
            "{}: labels name {missing}, which is not in {}",
            labels_path.display(),
            data.display()
        )));
    }
    let none = Vec::new();
    let mut series = Vec::with_capacity(names.len());
    let mut labelled_windows = 0;
    for name in &names {
        let windows = labels.get(name).unwrap_or(&none);
        labelled_windows += windows.len();
        let path = data.join(name);
        let mut s = read_series(&path, name)?;
        for (a, b) in windows.iter() {
            let find = |edge: &str| -> Result<usize, BacktestError> {
                let t = parse_stamp(edge).ok_or_else(|| {
                    BacktestError::Input(format!("{name}: window edge `{edge}` is not a time"))
                })?;
                // NAB: `timestamps.index(edge)`, the first row with that time
                s.ts.iter().position(|x| *x == t).ok_or_else(|| {
                    BacktestError::Input(format!("{name}: window edge {edge} is not a row"))
                })
            };
            s.windows.push((find(a)?, find(b)?));
        }
        series.push(s);
    }
    Ok(Corpus {
        series,
        labelled_windows,
        profiles,
    })
}

fn parse_profiles(text: &str) -> Result<Vec<Profile>, BacktestError> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| BacktestError::Input(format!("profiles.json: {e}")))?;
    let mut out = Vec::new();
    if let Some(map) = v.as_object() {
        for (name, p) in map {
            let w = |k: &str| p["CostMatrix"][k].as_f64();
            if let (Some(tp), Some(fp), Some(fn_)) = (w("tpWeight"), w("fpWeight"), w("fnWeight")) {
                out.push(Profile {
                    name: name.clone(),
                    tp,
                    fp,
                    fn_,
                });
            }
        }
    }
    if out.is_empty() {
        return Err(BacktestError::Input(
            "profiles.json names no profile with tpWeight, fpWeight and fnWeight".into(),
        ));
    }
    // NAB's order: standard first
    let rank = |n: &str| {
        ["standard", "reward_low_FP_rate", "reward_low_FN_rate"]
            .iter()
            .position(|x| *x == n)
            .unwrap_or(usize::MAX)
    };
    out.sort_by_key(|p| rank(&p.name));
    Ok(out)
}

/// A `timestamp,value` CSV (NAB's data files).
pub fn read_series(path: &Path, name: &str) -> Result<Series, BacktestError> {
    let mut rd = csv::Reader::from_path(path).map_err(|e| BacktestError::csv(path, e))?;
    let mut s = Series {
        name: name.to_string(),
        stamps: Vec::new(),
        ts: Vec::new(),
        values: Vec::new(),
        windows: Vec::new(),
    };
    for (line, rec) in rd.records().enumerate() {
        let rec = rec.map_err(|e| BacktestError::csv(path, e))?;
        let at = || format!("{}:{}", path.display(), line + 2);
        let (Some(t), Some(v)) = (rec.get(0), rec.get(1)) else {
            return Err(BacktestError::Input(format!(
                "{}: expected timestamp,value",
                at()
            )));
        };
        let ts = parse_stamp(t)
            .ok_or_else(|| BacktestError::Input(format!("{}: `{t}` is not a time", at())))?;
        let value: f64 = v
            .trim()
            .parse()
            .map_err(|_| BacktestError::Input(format!("{}: `{v}` is not a number", at())))?;
        s.stamps.push(t.to_string());
        s.ts.push(ts);
        s.values.push(value);
    }
    Ok(s)
}

fn scaled_sigmoid(y: f64) -> f64 {
    if y >= 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * y).exp()) - 1.0
    }
}

/// Rows NAB does not score at the start of a file of `n` rows.
pub fn probation(n: usize) -> usize {
    // min(floor(0.15 n), 0.15 * 5000), compared as `i >= length`
    ((0.15 * n as f64).floor()).min(750.0) as usize
}

/// What a detection at each scored row is worth, and the window it is in.
#[derive(Clone, Copy, Debug)]
struct Row {
    i: usize,
    sweep: f64,
    window: Option<usize>,
}

/// Sweep scores of a file's scored rows (NAB's `calcSweepScore`).
fn sweep(n: usize, windows: &[(usize, usize)], p: &Profile) -> Vec<Row> {
    let max_tp = scaled_sigmoid(-1.0);
    let prob = probation(n);
    let mut out = Vec::with_capacity(n.saturating_sub(prob));
    let mut next = 0usize;
    let mut cur: Option<(usize, usize, f64)> = None; // (window, right, width)
    let mut prev: Option<(usize, f64)> = None; // (right, width)
    for i in 0..n {
        if next < windows.len() && windows[next].0 == i {
            let (l, r) = windows[next];
            cur = Some((next, r, (r as f64) - (l as f64) + 1.0));
            next += 1;
        }
        let (sweep, window) = match cur {
            Some((w, r, width)) => {
                let pos = -((r as f64) - (i as f64) + 1.0) / width;
                (scaled_sigmoid(pos) * p.tp / max_tp, Some(w))
            }
            None => {
                let pos = match prev {
                    None => 3.0,
                    Some((r, width)) => ((r as f64) - (i as f64)).abs() / (width - 1.0),
                };
                (scaled_sigmoid(pos) * p.fp, None)
            }
        };
        if i >= prob {
            out.push(Row { i, sweep, window });
        }
        if let Some((_, r, width)) = cur {
            if i == r {
                prev = Some((r, width));
                cur = None;
            }
        }
    }
    out
}

/// One file's result at a threshold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileScore {
    pub raw: f64,
    /// Windows scored (not all in probation).
    pub windows: usize,
    pub detected: usize,
    /// Detections outside windows.
    pub false_positives: usize,
}

/// Score one file's anomaly scores at `threshold` (NAB's `scoreDataSet`).
pub fn score_file(
    scores: &[f64],
    windows: &[(usize, usize)],
    p: &Profile,
    threshold: f64,
) -> FileScore {
    let rows = sweep(scores.len(), windows, p);
    let mut best: BTreeMap<usize, f64> = BTreeMap::new();
    for r in &rows {
        if let Some(w) = r.window {
            best.entry(w).or_insert(-p.fn_);
        }
    }
    let mut out = FileScore {
        windows: best.len(),
        ..Default::default()
    };
    let mut fp = 0.0;
    for r in rows.iter().filter(|r| scores[r.i] >= threshold) {
        match r.window {
            Some(w) => {
                if let Some(b) = best.get_mut(&w) {
                    *b = b.max(r.sweep);
                }
            }
            None => {
                fp += r.sweep;
                out.false_positives += 1;
            }
        }
    }
    out.detected = best.values().filter(|b| **b > -p.fn_).count();
    out.raw = fp + best.values().sum::<f64>();
    out
}

/// The corpus result for one profile at one threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct CorpusScore {
    pub profile: String,
    pub threshold: f64,
    pub raw: f64,
    pub null: f64,
    pub perfect: f64,
    /// `100 (raw - null) / (perfect - null)`.
    pub score: f64,
    pub windows: usize,
    pub detected: usize,
    pub false_positives: usize,
}

/// Score every series' anomaly scores (`scores[k]` for `corpus.series[k]`) at `threshold`.
pub fn score_corpus(
    corpus: &Corpus,
    scores: &[Vec<f64>],
    p: &Profile,
    threshold: f64,
) -> CorpusScore {
    let mut total = FileScore::default();
    for (s, sc) in corpus.series.iter().zip(scores) {
        let f = score_file(sc, &s.windows, p, threshold);
        total.raw += f.raw;
        total.windows += f.windows;
        total.detected += f.detected;
        total.false_positives += f.false_positives;
    }
    let null = -p.fn_ * total.windows as f64;
    let perfect = p.tp * corpus.labelled_windows as f64;
    CorpusScore {
        profile: p.name.clone(),
        threshold,
        raw: total.raw,
        null,
        perfect,
        score: 100.0 * (total.raw - null) / (perfect - null),
        windows: total.windows,
        detected: total.detected,
        false_positives: total.false_positives,
    }
}

/// NAB's threshold optimisation: the score value that, as the threshold for every file,
/// maximises the corpus score (the highest such threshold on a tie).
pub fn optimize(corpus: &Corpus, scores: &[Vec<f64>], p: &Profile) -> CorpusScore {
    // every scored row of the corpus: (anomaly score, sweep score, global window)
    let mut all: Vec<(f64, f64, Option<usize>)> = Vec::new();
    let mut parts: Vec<f64> = Vec::new();
    for (s, sc) in corpus.series.iter().zip(scores) {
        let rows = sweep(sc.len(), &s.windows, p);
        let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
        for r in &rows {
            let w = r.window.map(|w| {
                *seen.entry(w).or_insert_with(|| {
                    parts.push(-p.fn_);
                    parts.len() - 1
                })
            });
            all.push((sc[r.i], r.sweep, w));
        }
    }
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut fp = 0.0;
    let mut best = (f64::NEG_INFINITY, 1.1);
    let mut cur = 1.1f64;
    let total = |fp: f64, parts: &[f64]| fp + parts.iter().sum::<f64>();
    let mut running = total(fp, &parts);
    for (score, sweep, w) in &all {
        if *score != cur {
            if running > best.0 {
                best = (running, cur);
            }
            cur = *score;
        }
        match w {
            None => {
                fp += sweep;
                running += sweep;
            }
            Some(w) => {
                let old = parts[*w];
                if *sweep > old {
                    parts[*w] = *sweep;
                    running += sweep - old;
                }
            }
        }
    }
    if running > best.0 {
        best = (running, cur);
    }
    score_corpus(corpus, scores, p, best.1)
}

/// Where NAB's scorer looks for a detector's results: `<out>/<detector>/<category>/
/// <detector>_<file>.csv`.
pub fn result_path(out: &Path, detector: &str, s: &Series) -> PathBuf {
    out.join(detector)
        .join(s.category())
        .join(format!("{detector}_{}", s.file()))
}

/// Write one series' result file: `timestamp,value,anomaly_score,label` (label 1 inside a
/// window).
pub fn write_result(path: &Path, s: &Series, scores: &[f64]) -> Result<(), BacktestError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| BacktestError::io(dir, e))?;
    }
    let mut w = csv::Writer::from_path(path).map_err(|e| BacktestError::csv(path, e))?;
    let mut inside = vec![false; s.values.len()];
    for (a, b) in &s.windows {
        for x in inside.iter_mut().take(*b + 1).skip(*a) {
            *x = true;
        }
    }
    w.write_record(["timestamp", "value", "anomaly_score", "label"])
        .map_err(|e| BacktestError::csv(path, e))?;
    for i in 0..s.values.len() {
        w.write_record([
            s.stamps[i].as_str(),
            &s.values[i].to_string(),
            &scores[i].to_string(),
            if inside[i] { "1" } else { "0" },
        ])
        .map_err(|e| BacktestError::csv(path, e))?;
    }
    w.flush().map_err(|e| BacktestError::io(path, e))
}

/// A backtest of an anomaly model over a NAB corpus.
pub struct Run {
    pub corpus: Corpus,
    /// The model's scores, per series.
    pub scores: Vec<Vec<f64>>,
    /// Per profile: at the model's own threshold, and at NAB's optimised one.
    pub fixed: Vec<CorpusScore>,
    pub optimised: Vec<CorpusScore>,
    pub points: usize,
    pub elapsed: std::time::Duration,
}

/// Score every series of the corpus with the anomaly model `params` (each series learns for
/// NAB's probation length, as NAB tells its detectors) and score the result; `tick` is called
/// after each series (progress).
pub fn run(
    corpus: Corpus,
    params: &crate::model::anomaly::AnomalyParams,
    threshold: f64,
    mut tick: impl FnMut(&Series),
) -> Run {
    let start = std::time::Instant::now();
    let mut scores = Vec::with_capacity(corpus.series.len());
    let mut points = 0;
    for s in &corpus.series {
        let mut m = crate::model::anomaly::Anomaly::new(params, Some(probation(s.values.len())));
        // NAB's timestamps carry no zone: a seasonal baseline takes them as UTC
        let tz = chrono_tz::Tz::UTC;
        scores.push(
            s.values
                .iter()
                .zip(&s.ts)
                .map(|(v, t)| m.update_in(params.seasonal.slot_of(*t, tz), *v))
                .collect::<Vec<f64>>(),
        );
        points += s.values.len();
        tick(s);
    }
    let elapsed = start.elapsed();
    let fixed = corpus
        .profiles
        .iter()
        .map(|p| score_corpus(&corpus, &scores, p, threshold))
        .collect();
    let optimised = corpus
        .profiles
        .iter()
        .map(|p| optimize(&corpus, &scores, p))
        .collect();
    Run {
        corpus,
        scores,
        fixed,
        optimised,
        points,
        elapsed,
    }
}

impl Run {
    /// Standard-profile-style scores per category at `threshold` (normalised within it).
    pub fn by_category(&self, p: &Profile, threshold: f64) -> Vec<(String, CorpusScore)> {
        let mut cats: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (k, s) in self.corpus.series.iter().enumerate() {
            cats.entry(s.category().to_string()).or_default().push(k);
        }
        cats.into_iter()
            .map(|(c, idx)| {
                let sub = Corpus {
                    labelled_windows: idx
                        .iter()
                        .map(|k| self.corpus.series[*k].windows.len())
                        .sum(),
                    series: idx.iter().map(|k| self.corpus.series[*k].clone()).collect(),
                    profiles: Vec::new(),
                };
                let sc: Vec<Vec<f64>> = idx.iter().map(|k| self.scores[*k].clone()).collect();
                (c, score_corpus(&sub, &sc, p, threshold))
            })
            .collect()
    }

    /// NAB's result files for `detector` under `out`, and `final_results.json` as NAB writes
    /// it (the scores at the model's threshold).
    pub fn write(&self, out: &Path, detector: &str) -> Result<(), BacktestError> {
        for (s, sc) in self.corpus.series.iter().zip(&self.scores) {
            write_result(&result_path(out, detector, s), s, sc)?;
        }
        let mut scores = serde_json::Map::new();
        for f in &self.fixed {
            scores.insert(f.profile.clone(), serde_json::json!(f.score));
        }
        let doc = serde_json::json!({ detector: scores });
        let path = out.join("final_results.json");
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n",
        )
        .map_err(|e| BacktestError::io(&path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Corpus {
        // 2,000 rows (probation 300), windows at 500..=599 and 1200..=1299
        let n = 2000;
        let s = Series {
            name: "cat/toy.csv".into(),
            stamps: (0..n).map(|i| i.to_string()).collect(),
            ts: (0..n as i64).collect(),
            values: vec![0.0; n],
            windows: vec![(500, 599), (1200, 1299)],
        };
        Corpus {
            series: vec![s],
            labelled_windows: 2,
            profiles: default_profiles(),
        }
    }

    #[test]
    fn null_scores_0_and_perfect_scores_100() {
        let c = toy();
        let p = &c.profiles[0];
        let null = vec![0.0; 2000];
        assert_eq!(score_corpus(&c, &[null], p, 0.5).score, 0.0);
        let mut perfect = vec![0.0; 2000];
        perfect[500] = 1.0;
        perfect[1200] = 1.0;
        let s = score_corpus(&c, &[perfect], p, 0.5);
        assert!((s.score - 100.0).abs() < 1e-9, "{s:?}");
        assert_eq!((s.detected, s.false_positives), (2, 0));
    }

    #[test]
    fn late_detections_earn_less_and_false_positives_cost_by_distance() {
        let c = toy();
        let p = &c.profiles[0];
        // the middle of the first window: 2 S(-0.5 - 1/100) / S(-1) scaled
        let mut mid = vec![0.0; 2000];
        mid[550] = 1.0;
        let raw = score_corpus(&c, &[mid.clone()], p, 0.5).raw;
        let s = |y: f64| 2.0 / (1.0 + (5.0 * y).exp()) - 1.0;
        let want = s(-(599.0 - 550.0 + 1.0) / 100.0) / s(-1.0) - 1.0;
        assert!((raw - want).abs() < 1e-12, "{raw} {want}");
        // a detection just after the first window costs little, one before any window fp
        let mut after = vec![0.0; 2000];
        after[600] = 1.0;
        let raw = score_corpus(&c, &[after], p, 0.5).raw;
        assert!((raw - (-2.0 + 0.11 * s(1.0 / 99.0))).abs() < 1e-12);
        let mut before = vec![0.0; 2000];
        before[400] = 1.0;
        assert!((score_corpus(&c, &[before], p, 0.5).raw - (-2.11)).abs() < 1e-12);
        // inside the probation period: not scored at all
        let mut early = vec![0.0; 2000];
        early[10] = 1.0;
        assert_eq!(score_corpus(&c, &[early], p, 0.5).raw, -2.0);
        // the threshold is inclusive
        mid[550] = 0.5;
        assert!(score_corpus(&c, &[mid], p, 0.5).detected == 1);
    }

    #[test]
    fn the_optimised_threshold_is_the_best_of_the_scores() {
        let c = toy();
        let p = &c.profiles[0];
        let mut sc = vec![0.1; 2000];
        sc[510] = 0.9;
        sc[1250] = 0.7;
        sc[800] = 0.8; // a false positive between them
        let best = optimize(&c, &[sc.clone()], p);
        for t in [0.05, 0.1, 0.7, 0.8, 0.9, 1.0] {
            assert!(score_corpus(&c, &[sc.clone()], p, t).raw <= best.raw + 1e-12);
        }
        assert_eq!(best.threshold, 0.7);
    }
}
