//! `yujing query` (SQL over the archive) and `yujing report` (the daily report).

use crate::*;

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum QueryFormat {
    Table,
    Csv,
    Json,
}

pub(crate) fn query(
    sql: &str,
    config: &Path,
    archive: Option<PathBuf>,
    format: QueryFormat,
    limit: usize,
) -> Result<ExitCode> {
    use yujing::archive::query;
    let dir = match archive {
        Some(d) => d,
        None => {
            let cfg = match load(toml_dir(config)) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            match &cfg.service.archive {
                Some(a) => a.dir.clone(),
                None => anyhow::bail!(
                    "{} has no [archive] table: nothing is archived (or give --archive DIR)",
                    config.display()
                ),
            }
        }
    };
    let tz = yujing::archive::timezone(&dir).unwrap_or(chrono_tz::Tz::UTC);
    let answer = query::run_isolated(
        dir.clone(),
        sql.to_string(),
        limit,
        query::Limits::CLI,
        tokio_util::sync::CancellationToken::new(),
    );
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            eprintln!("yujing query: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let batches = query::localize(&answer.batches, tz)?;
    let mut out = std::io::stdout().lock();
    match format {
        QueryFormat::Table => {
            writeln!(out, "{}", query::to_table(&batches)?)?;
            eprintln!(
                "{} row{}{}",
                answer.rows(),
                if answer.rows() == 1 { "" } else { "s" },
                if answer.truncated {
                    format!(" (more matched: --limit {limit})")
                } else {
                    String::new()
                }
            );
        }
        QueryFormat::Csv => out.write_all(&query::to_csv(&batches)?)?,
        QueryFormat::Json => {
            out.write_all(&query::to_json(&batches)?)?;
            writeln!(out)?;
        }
    }
    if answer.truncated && !matches!(format, QueryFormat::Table) {
        eprintln!("yujing query: only the first {limit} rows (--limit)");
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn report(
    config: &Path,
    from: &str,
    to: &str,
    csv_out: Option<&Path>,
    html_out: Option<&Path>,
) -> Result<ExitCode> {
    let mut so = std::io::stdout().lock();
    let cfg = match load(toml_dir(config)) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let tz = cfg.settings.timezone;
    let when = |s: &str| -> Result<i64> {
        let full = if s.len() == 10 {
            format!("{s}T00:00:00")
        } else {
            s.to_string()
        };
        yujing::time::parse_ts(&full, tz).map_err(|e| anyhow::anyhow!("`{s}`: {e}"))
    };
    let (f, t) = (when(from)?, when(to)?);
    let path = &cfg.service.store.path;
    if !path.exists() {
        anyhow::bail!(
            "no store at {} ([store] path of {})",
            path.display(),
            config.display()
        );
    }
    let rows = runtime()?.block_on(async {
        let store = yujing::store::Store::open(path, false).await?;
        let cases = yujing::report::cases(&store, f, t).await?;
        store.close().await;
        anyhow::Ok(cases)
    })?;
    let names = yujing::report::department_names(&cfg.registry);
    let report = yujing::report::summarize(&rows, &names);
    let opt = |v: Option<f64>| v.map(|x| format!("{x}")).unwrap_or_else(|| "-".into());
    writeln!(
        so,
        "部门预警处置考评 / department response report, {from} .. {to}"
    )?;
    writeln!(
        so,
        "{:<28} {:>5} {:>4} {:>4} {:>4} {:>4} {:>16} {:>16} {:>7} {:>6} {:>9}",
        "department",
        "total",
        "red",
        "orng",
        "yell",
        "blue",
        "ack min med/p90",
        "handle med/p90",
        "overdue",
        "escal",
        "feedback"
    )?;
    for r in &report {
        let l = |k: &str| r.by_level.get(k).copied().unwrap_or(0);
        writeln!(
            so,
            "{:<28} {:>5} {:>4} {:>4} {:>4} {:>4} {:>16} {:>16} {:>7} {:>6} {:>9}",
            format!("{} {}", r.department, r.name),
            r.warnings,
            l("red"),
            l("orange"),
            l("yellow"),
            l("blue"),
            format!("{}/{}", opt(r.ack_minutes_median), opt(r.ack_minutes_p90)),
            format!(
                "{}/{}",
                opt(r.handle_minutes_median),
                opt(r.handle_minutes_p90)
            ),
            r.overdue,
            r.escalations,
            r.feedback_completeness
                .map(|x| format!("{:.0}%", x * 100.0))
                .unwrap_or_else(|| "-".into()),
        )?;
    }
    if let Some(p) = csv_out {
        std::fs::write(p, yujing::report::csv(&report))
            .with_context(|| format!("writing {}", p.display()))?;
        writeln!(so, "CSV: {}", p.display())?;
    }
    if let Some(p) = html_out {
        std::fs::write(p, yujing::report::html(&report, from, to))
            .with_context(|| format!("writing {}", p.display()))?;
        writeln!(so, "HTML: {}", p.display())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The config directory of a `-c path/to/yujing.toml` argument.
fn toml_dir(toml: &Path) -> &Path {
    toml.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}
