//! `yujing backtest` (NAB, incidents) and `yujing fit`.

use crate::*;

/// The model file given, or the config's `models/anomaly.toml`; its errors printed as
/// `file:line:col: message`.
pub(crate) fn model_file(
    model: Option<PathBuf>,
    config: &Path,
) -> Result<yujing::config::models::Model, ExitCode> {
    let path = model.unwrap_or_else(|| config.join("models").join("anomaly.toml"));
    yujing::config::models::load_file(&path).map_err(|diags| {
        for d in diags {
            eprintln!("{d}");
        }
        ExitCode::from(1)
    })
}

pub(crate) fn backtest_nab(
    dir: &Path,
    model: Option<PathBuf>,
    config: &Path,
    out: Option<&Path>,
    detector: &str,
    html: Option<&Path>,
) -> Result<ExitCode> {
    let mut so = std::io::stdout().lock();
    use yujing::backtest::nab;
    let model = match model_file(model, config) {
        Ok(m) => m,
        Err(code) => return Ok(code),
    };
    let Some(params) = model.anomaly().cloned() else {
        anyhow::bail!(
            "{}: NAB scores anomaly models (kind = \"anomaly\")",
            model.file
        );
    };
    let corpus = nab::load(dir)?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(corpus.series.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {wide_bar} {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let run = nab::run(corpus, &params, model.threshold, |s| {
        if let Some(b) = &bar {
            b.set_message(s.name.clone());
            b.inc(1);
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let c = &run.corpus;
    writeln!(
        so,
        "NAB: {} series, {} labelled windows, {} points; model {} ({} points/s)",
        c.series.len(),
        c.labelled_windows,
        run.points,
        model.file,
        (run.points as f64 / run.elapsed.as_secs_f64().max(1e-9)).round()
    )?;
    writeln!(
        so,
        "{:<20} {:>10} {:>9} {:>9} {:>5}   {:>10} {:>9}",
        "profile", "threshold", "score", "detected", "FP", "NAB-opt thr", "score"
    )?;
    for (f, o) in run.fixed.iter().zip(&run.optimised) {
        writeln!(
            so,
            "{:<20} {:>10} {:>9.1} {:>6}/{:<3} {:>4}   {:>10.4} {:>9.1}",
            f.profile,
            f.threshold,
            f.score,
            f.detected,
            f.windows,
            f.false_positives,
            o.threshold,
            o.score
        )?;
    }
    if let Some(std) = c.profiles.first() {
        writeln!(
            so,
            "by category ({}, threshold {}):",
            std.name, model.threshold
        )?;
        for (cat, s) in run.by_category(std, model.threshold) {
            let score = if s.windows == 0 {
                "-".to_string()
            } else {
                format!("{:.1}", s.score)
            };
            writeln!(
                so,
                "  {cat:<24} {score:>6}   {}/{} windows, {} FP",
                s.detected, s.windows, s.false_positives
            )?;
        }
    }
    if let Some(out) = out {
        run.write(out, detector)?;
        writeln!(so, "result files: {}", out.join(detector).display())?;
    }
    if let Some(path) = html {
        nab_page(&run, model.threshold, path)?;
        writeln!(so, "report: {}", path.display())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// What really happened: an incident list, or a column of technician flags in the input.
pub(crate) struct Truth {
    pub(crate) incidents: Option<PathBuf>,
    pub(crate) flags: Option<String>,
    pub(crate) site: Option<String>,
}

impl Truth {
    fn incidents(
        &self,
        input: &Path,
        tz: chrono_tz::Tz,
    ) -> Result<Vec<yujing::backtest::incidents::Incident>> {
        use yujing::backtest::incidents;
        Ok(match (&self.incidents, &self.flags, &self.site) {
            (Some(p), _, _) => incidents::read(p, tz)?,
            (None, Some(col), Some(site)) => incidents::from_flags(input, None, col, site, tz)?,
            _ => Vec::new(),
        })
    }
}

pub(crate) struct FitArgs {
    pub(crate) model: Option<PathBuf>,
    pub(crate) out: PathBuf,
    pub(crate) input: Option<PathBuf>,
    pub(crate) mapping: Option<PathBuf>,
    pub(crate) archive: Option<PathBuf>,
    pub(crate) site: Option<String>,
    pub(crate) truth: Truth,
    pub(crate) config: PathBuf,
    pub(crate) early: String,
}

pub(crate) fn fit(mut a: FitArgs) -> Result<ExitCode> {
    let mut so = std::io::stdout().lock();
    use yujing::backtest::fit;
    let cfg = match load(&a.config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let tz = cfg.settings.timezone;
    let base = match model_file(a.model.clone(), &a.config) {
        Ok(m) => m,
        Err(code) => return Ok(code),
    };
    let early =
        yujing::time::parse_duration(&a.early).map_err(|e| anyhow::anyhow!("--early: {e}"))?;
    let metric = base.metric.clone();
    let mut series: Vec<fit::Series> = Vec::new();
    let source;
    if let Some(input) = &a.input {
        source = input.display().to_string();
        let tmp = std::env::temp_dir().join(format!("yujing-fit-{}.jsonl", std::process::id()));
        let opts = replay::Options {
            input: input.clone(),
            format: None,
            mapping: a.mapping.clone(),
            output: Some(tmp.clone()),
            output_csv: None,
            dead_letter: None,
            progress: std::io::stderr().is_terminal(),
            keep: vec![metric.clone()],
        };
        let summary = replay::run(cfg.clone(), &opts);
        let _ = std::fs::remove_file(&tmp);
        for ((site, _), (ts, values)) in summary?.kept {
            series.push(fit::Series { site, ts, values });
        }
    } else if let Some(dir) = &a.archive {
        source = format!("archive {}", dir.display());
        let q = |s: &str| s.replace('\'', "''");
        let sql = format!(
            "SELECT site, CAST(ts AS BIGINT) AS t, value FROM readings WHERE metric = '{}'{} ORDER BY site, ts",
            q(&metric),
            a.site
                .as_deref()
                .map(|s| format!(" AND site = '{}'", q(s)))
                .unwrap_or_default()
        );
        let answer = yujing::archive::query::run_isolated(
            dir.clone(),
            sql,
            usize::MAX - 1,
            yujing::archive::query::Limits::CLI,
            tokio_util::sync::CancellationToken::new(),
        )?;
        series = yujing::archive::query::series(&answer.batches)
            .into_iter()
            .map(|(site, ts, values)| fit::Series { site, ts, values })
            .collect();
    } else {
        anyhow::bail!("give --input FILE or --archive DIR");
    }
    if let Some(site) = &a.site {
        series.retain(|s| &s.site == site);
    }
    a.truth.site = a.site.clone();
    if series.iter().all(|s| s.values.is_empty()) {
        anyhow::bail!(
            "no readings of `{metric}`{} in {source}",
            a.site
                .as_deref()
                .map(|s| format!(" at {s}"))
                .unwrap_or_default()
        );
    }
    let list = match &a.input {
        Some(input) => a.truth.incidents(input, tz)?,
        None => a.truth.incidents(Path::new(""), tz)?,
    };
    let Some(base_params) = base.anomaly().cloned() else {
        anyhow::bail!("{}: `yujing fit` fits anomaly models", base.file);
    };
    let f = fit::fit(&base_params, base.threshold, &series, &list, early, tz);
    let cadence_min = f.cadence as f64 / 60_000.0;
    writeln!(
        so,
        "fit: {} readings of {metric} at {} site(s) from {source}; cadence {cadence_min} min",
        f.readings,
        series.len()
    )?;
    writeln!(
        so,
        "  learn {} readings, history {}, suppress {}, tolerance {}, threshold {}",
        f.params.learn, f.params.history, f.params.suppress, f.params.tolerance, f.threshold
    )?;
    let mut header = format!(
        "# Fitted by `yujing fit` from {source}: {} readings of {metric}, cadence {cadence_min} min.\n",
        f.readings
    );
    if let Some(v) = &f.verdict {
        let pct = |x: Option<f64>| x.map_or("-".into(), |x| format!("{:.1}%", 100.0 * x));
        let line = format!(
            "against {} incidents: precision {}, recall {} ({} warnings, {} caught)",
            v.incidents,
            pct(v.precision),
            pct(v.recall),
            v.warnings,
            v.caught
        );
        writeln!(so, "  {line}")?;
        header.push_str(&format!("# On the same history, {line}.\n"));
    }
    let doc = yujing::config::models::ModelToml {
        kind: "anomaly".into(),
        metric: Some(metric),
        output: Some(base.output.clone()),
        threshold: Some(f.threshold),
        scope: (!base.kinds.is_empty() || !base.sites.is_empty()).then(|| {
            yujing::config::models::ScopeToml {
                kind: base.kinds.clone(),
                sites: base.sites.clone(),
            }
        }),
        target: None,
        params: toml::Table::try_from(&f.params).context("writing the model")?,
    };
    let text = toml::to_string(&doc).context("writing the model")?;
    std::fs::write(&a.out, header + &text)
        .with_context(|| format!("writing {}", a.out.display()))?;
    writeln!(so, "model: {}", a.out.display())?;
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn backtest_incidents(
    input: &Path,
    truth: Truth,
    mapping: Option<PathBuf>,
    model: Option<PathBuf>,
    config: &Path,
    early: &str,
    min_level: &str,
    html: Option<&Path>,
) -> Result<ExitCode> {
    let mut so = std::io::stdout().lock();
    use yujing::backtest::{self, html as page};
    let Some(min_level) = yujing::event::Level::parse(min_level) else {
        anyhow::bail!("--min-level: `{min_level}` is not blue, yellow, orange or red");
    };
    let cfg = match load(config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let early = yujing::time::parse_duration(early).map_err(|e| anyhow::anyhow!("--early: {e}"))?;
    let mut keep: Vec<String> = cfg.models.iter().map(|m| m.metric.clone()).collect();
    let cfg = match model {
        Some(path) => {
            let m = match model_file(Some(path), config) {
                Ok(m) => m,
                Err(code) => return Ok(code),
            };
            keep.push(m.metric.clone());
            Arc::new(backtest::with_model(&cfg, m)?)
        }
        None => cfg,
    };
    let list = truth.incidents(input, cfg.settings.timezone)?;
    let opts = replay::Options {
        input: input.to_path_buf(),
        format: None,
        mapping,
        output: None,
        output_csv: None,
        dead_letter: None,
        progress: std::io::stderr().is_terminal(),
        keep,
    };
    let judged = backtest::against_incidents(cfg.clone(), opts, &list, early, min_level)?;
    let s = &judged.summary;
    writeln!(
        so,
        "backtest: {} readings ({} processed) at {} sites; {} incidents; {} warnings raised",
        s.readings,
        s.accepted,
        s.spans.len(),
        list.len(),
        judged.alarms.len()
    )?;
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}%", 100.0 * v));
    let num = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    let header = [
        "rule / model",
        "warnings",
        "right",
        "precision",
        "incidents",
        "caught",
        "recall",
        "lead p10/p50/p90 (min)",
        "false/site-week",
    ];
    let rows: Vec<Vec<String>> = judged
        .verdicts
        .iter()
        .map(|v| {
            vec![
                v.rule.clone(),
                v.warnings.to_string(),
                v.right.to_string(),
                pct(v.precision),
                v.incidents.to_string(),
                v.caught.to_string(),
                pct(v.recall),
                format!(
                    "{}/{}/{}",
                    num(v.lead_p10_min),
                    num(v.lead_p50_min),
                    num(v.lead_p90_min)
                ),
                v.false_per_site_week
                    .map_or("-".into(), |f| format!("{f:.2}")),
            ]
        })
        .collect();
    writeln!(
        so,
        "{:<32} {:>8} {:>6} {:>9} {:>9} {:>6} {:>7} {:>24} {:>15}",
        header[0],
        header[1],
        header[2],
        header[3],
        header[4],
        header[5],
        header[6],
        header[7],
        header[8]
    )?;
    for r in &rows {
        writeln!(
            so,
            "{:<32} {:>8} {:>6} {:>9} {:>9} {:>6} {:>7} {:>24} {:>15}",
            r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8]
        )?;
    }
    if rows.is_empty() {
        writeln!(so, "(no rule raised a warning)")?;
    }
    if let Some(path) = html {
        let plots: Vec<page::Plot> = s
            .kept
            .iter()
            .map(|((site, metric), (ts, values))| page::Plot {
                title: format!("{site} {metric}"),
                ts,
                values,
                windows: list
                    .iter()
                    .filter(|i| &i.site == site)
                    .map(|i| (i.start, i.end))
                    .collect(),
                marks: judged
                    .alarms
                    .iter()
                    .filter(|a| &a.site == site)
                    .map(|a| a.at)
                    .collect(),
                note: String::new(),
            })
            .collect();
        let title = format!("回测 / backtest: {}", input.display());
        std::fs::write(
            path,
            page::page(&title, &page::table(&header, &rows), &plots),
        )
        .with_context(|| format!("writing {}", path.display()))?;
        writeln!(so, "report: {}", path.display())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The NAB backtest as an HTML page: the profiles' scores and every series with its windows and
/// the model's detections.
fn nab_page(run: &yujing::backtest::nab::Run, threshold: f64, path: &Path) -> Result<()> {
    use yujing::backtest::{html as page, nab};
    let c = &run.corpus;
    let rows: Vec<Vec<String>> = run
        .fixed
        .iter()
        .zip(&run.optimised)
        .map(|(f, o)| {
            vec![
                f.profile.clone(),
                format!("{}", f.threshold),
                format!("{:.1}", f.score),
                format!("{}/{}", f.detected, f.windows),
                f.false_positives.to_string(),
                format!("{:.4}", o.threshold),
                format!("{:.1}", o.score),
            ]
        })
        .collect();
    let summary = page::table(
        &[
            "profile",
            "threshold",
            "NAB score",
            "windows caught",
            "false positives",
            "optimised threshold",
            "score",
        ],
        &rows,
    );
    let std = c
        .profiles
        .first()
        .cloned()
        .unwrap_or_else(|| nab::default_profiles()[0].clone());
    let plots: Vec<page::Plot> = c
        .series
        .iter()
        .zip(&run.scores)
        .map(|(s, sc)| {
            let f = nab::score_file(sc, &s.windows, &std, threshold);
            page::Plot {
                title: s.name.clone(),
                ts: &s.ts,
                values: &s.values,
                windows: s
                    .windows
                    .iter()
                    .map(|(a, b)| (s.ts[*a], s.ts[*b]))
                    .collect(),
                marks: sc
                    .iter()
                    .enumerate()
                    .filter(|(i, v)| **v >= threshold && *i >= nab::probation(sc.len()))
                    .map(|(i, _)| s.ts[i])
                    .collect(),
                note: format!(
                    "{}/{} windows caught, {} false positives, raw {:.2}",
                    f.detected, f.windows, f.false_positives, f.raw
                ),
            }
        })
        .collect();
    std::fs::write(
        path,
        page::page("NAB 回测 / NAB backtest", &summary, &plots),
    )
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
