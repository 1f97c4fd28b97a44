//! The `yujing` command line.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use yujing::config::{Config, Layout};
use yujing::decode::Format;
use yujing::{replay, ruletest};

#[derive(Parser)]
#[command(
    name = "yujing",
    version,
    about = "预警 yujing: risk warning and IoT monitoring engine"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Everything in one process: embedded MQTT broker and store, a simulator publishing every
    /// sample site's feeds, the rules, dispatch and the HTTP API. No external service needed.
    Demo {
        /// Config directory (sites.yaml, rules/, routes.yaml, yujing.toml). Default: the current
        /// directory when it has a site registry, else the sample county built into the binary
        /// (written out under the demo's data directory first)
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// HTTP address of the API (a free port is chosen if this one is taken)
        #[arg(long, default_value = "127.0.0.1:8088")]
        listen: String,
        /// Port of the embedded MQTT broker on 127.0.0.1 (a free one if taken)
        #[arg(long, default_value_t = 18830)]
        mqtt_port: u16,
        /// How much faster than the clock the simulated feeds run until they catch up with now
        #[arg(long, default_value_t = 180.0)]
        speed: f64,
        /// Where the demo keeps its store and dead letters (default: a new temporary directory)
        #[arg(long)]
        data: Option<PathBuf>,
        /// Instead: replay the simulated sample day through the rules and print the warnings
        #[arg(long)]
        offline: bool,
        /// With --offline: also write the simulated readings as CSV here
        #[arg(long, requires = "offline")]
        write_day: Option<PathBuf>,
        /// With --offline: print warnings in English
        #[arg(long, requires = "offline")]
        en: bool,
    },
    /// The production service: MQTT in, rules, store, dispatch to departments, HTTP API.
    Run {
        /// yujing.toml, or the config directory holding it
        #[arg(short, long, default_value = "yujing.toml")]
        config: PathBuf,
        /// Log filter (tracing syntax), e.g. `info` or `yujing=debug,warn`
        #[arg(long, default_value = "info")]
        log: String,
        /// Listen here instead of `[http] listen` (several instances on one machine)
        #[arg(long)]
        listen: Option<String>,
        /// This instance's name in a cluster instead of `[cluster] instance`
        #[arg(long)]
        instance: Option<String>,
    },
    /// How departments respond to warnings over a period: per department, warnings by level,
    /// time to acknowledge and to handle (median, p90), overdue, escalations, feedback
    /// completeness. Reads the store of yujing.toml; prints a table, writes CSV and HTML.
    Report {
        /// yujing.toml (its [store] path is read)
        #[arg(short, long, default_value = "yujing.toml")]
        config: PathBuf,
        /// Start of the period (date or time, local time zone), inclusive
        #[arg(long)]
        from: String,
        /// End of the period, exclusive
        #[arg(long)]
        to: String,
        /// Write the report as CSV here
        #[arg(long)]
        csv: Option<PathBuf>,
        /// Write the report as an HTML page with charts here
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// SQL over the history archive: tables readings, tickets, warnings, transitions (each with
    /// `day`, the local date) and sites. Read only. Times are shown in the archive's time zone.
    Query {
        /// One SELECT statement, e.g. "SELECT site, day, avg(value) FROM readings GROUP BY 1, 2"
        sql: String,
        /// yujing.toml (its [archive] dir is read)
        #[arg(short, long, default_value = "yujing.toml")]
        config: PathBuf,
        /// The archive folder instead of the one yujing.toml names
        #[arg(long)]
        archive: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "table")]
        format: QueryFormat,
        /// Return at most this many rows
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
    },
    /// Replay labelled history through a model or the rules and score how right they were: the
    /// Numenta Anomaly Benchmark (--nab), or readings with an incident list (--input, --incidents).
    Backtest {
        /// A NAB corpus folder (data/, labels/combined_windows.json, config/profiles.json)
        #[arg(long, conflicts_with_all = ["input", "incidents"])]
        nab: Option<PathBuf>,
        /// The anomaly model file (default: models/anomaly.toml of --config)
        #[arg(long)]
        model: Option<PathBuf>,
        /// Readings (CSV, JSON lines, or a wide CSV with --mapping), as `yujing replay` takes them
        #[arg(short, long)]
        input: Option<PathBuf>,
        /// What really happened: CSV site,start,end
        #[arg(long, requires = "input", conflicts_with = "flags")]
        incidents: Option<PathBuf>,
        /// Or: a column of technician flags in the input (non-empty = anomalous; consecutive
        /// flagged rows are one incident at --site; the first column is the time)
        #[arg(long, requires_all = ["input", "site"])]
        flags: Option<String>,
        /// The site the flags are about
        #[arg(long)]
        site: Option<String>,
        /// Column mapping for a wide CSV input
        #[arg(long)]
        mapping: Option<PathBuf>,
        /// Config directory (sites.yaml, rules/, models/, yujing.toml)
        #[arg(short, long, default_value = ".")]
        config: PathBuf,
        /// A warning this long before an incident starts still counts as right
        #[arg(long, default_value = "1h")]
        early: String,
        /// Count warnings from this level up (blue, yellow, orange, red): raised at it, or
        /// escalated to it
        #[arg(long, default_value = "blue")]
        min_level: String,
        /// NAB: write result files here (<out>/<detector>/<category>/<detector>_<file>.csv)
        #[arg(long)]
        out: Option<PathBuf>,
        /// NAB: the detector's name in result files
        #[arg(long, default_value = "yujing")]
        detector: String,
        /// Write the report page (series, labelled windows, warnings) here
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Fit a model's parameters to history and write the model file: horizons from the
    /// readings' cadence; with incidents (or technician flags), the threshold and tolerance that
    /// catch them best.
    Fit {
        /// The model file to start from (kind, metric, scope; default models/anomaly.toml)
        #[arg(long)]
        model: Option<PathBuf>,
        /// Write the fitted model file here
        #[arg(short, long)]
        out: PathBuf,
        /// Readings from a file (as `yujing replay` takes them)...
        #[arg(short, long, conflicts_with = "archive")]
        input: Option<PathBuf>,
        /// Column mapping for a wide CSV input
        #[arg(long)]
        mapping: Option<PathBuf>,
        /// ...or from the history archive
        #[arg(long)]
        archive: Option<PathBuf>,
        /// Only this site's readings
        #[arg(long)]
        site: Option<String>,
        /// Incidents (CSV site,start,end) to fit the threshold to
        #[arg(long, conflicts_with = "flags")]
        incidents: Option<PathBuf>,
        /// Or: a column of technician flags in the input (with --site)
        #[arg(long, requires_all = ["input", "site"])]
        flags: Option<String>,
        /// Config directory (sites.yaml, rules/, yujing.toml)
        #[arg(short, long, default_value = ".")]
        config: PathBuf,
        /// A warning this long before an incident starts still counts as right
        #[arg(long, default_value = "1h")]
        early: String,
    },
    /// Make an API token: prints the token (give it to its user) and the [[tokens]] entry for
    /// yujing.toml (which keeps only its SHA-256).
    Token {
        /// Who the token is for
        #[arg(long)]
        name: String,
        /// operator, admin, department:<id>, or ingest (the 12345 system: posts tickets only)
        #[arg(long)]
        role: String,
    },
    /// (The service's own: runs one API query in a process of its own; a request on stdin, the
    /// answer on stdout.)
    #[command(hide = true)]
    QueryWorker,
    /// Validate sites and rules; print every error as file:line:col: message.
    Check {
        /// Config directory or its rules/ folder
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Run rule unit tests (rules/tests/*.yaml by default).
    Test {
        /// Test files; default: every *.yaml in <config>/rules/tests
        files: Vec<PathBuf>,
        /// Config directory the rules are loaded from (default: found from the test file)
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Run recorded readings through the rules; warnings out as JSON lines.
    Replay {
        /// Readings: CSV (ts,site,device,metric,value), JSON lines, or a wide CSV with --mapping; `-` for stdin
        #[arg(short, long)]
        input: PathBuf,
        /// Config directory (sites.yaml, rules/, yujing.toml)
        #[arg(short, long, alias = "rules", default_value = ".")]
        config: PathBuf,
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Column mapping for wide CSV files (see mappings/)
        #[arg(long)]
        mapping: Option<PathBuf>,
        /// Write warnings here instead of standard output
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Write every window whose condition held as CSV: subject,window_start_ms,count,avg,max
        #[arg(long)]
        output_csv: Option<PathBuf>,
        /// Where rejected input goes (default: yujing-dead-letter.jsonl beside the output)
        #[arg(long)]
        dead_letter: Option<PathBuf>,
        /// Do not print the summary
        #[arg(short, long)]
        quiet: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Check { dir } => check(&dir),
        Cmd::Test { files, config } => test(files, config),
        Cmd::Replay {
            input,
            config,
            format,
            mapping,
            output,
            output_csv,
            dead_letter,
            quiet,
        } => {
            let opts = replay::Options {
                input,
                format,
                mapping,
                output,
                output_csv,
                dead_letter,
                progress: std::io::stderr().is_terminal() && !quiet,
                keep: Vec::new(),
            };
            run_replay(&config, &opts, quiet)
        }
        Cmd::Demo {
            config,
            offline: true,
            write_day,
            en,
            data,
            ..
        } => demo_config(config, &demo_data(data))
            .and_then(|dir| demo(&dir, write_day.as_deref(), en)),
        Cmd::Demo {
            config,
            listen,
            mqtt_port,
            speed,
            data,
            ..
        } => live_demo(config, listen, mqtt_port, speed, data),
        Cmd::Run {
            config,
            log,
            listen,
            instance,
        } => run(config, &log, listen, instance),
        Cmd::Token { name, role } => token(&name, &role),
        Cmd::QueryWorker => Ok(ExitCode::from(
            yujing::api::query::worker_main().clamp(0, 255) as u8,
        )),
        Cmd::Backtest {
            nab: Some(nab),
            model,
            config,
            out,
            detector,
            html,
            ..
        } => backtest_nab(
            &nab,
            model,
            &config,
            out.as_deref(),
            &detector,
            html.as_deref(),
        ),
        Cmd::Backtest {
            input: Some(input),
            incidents,
            flags,
            site,
            mapping,
            model,
            config,
            early,
            min_level,
            html,
            ..
        } if incidents.is_some() || flags.is_some() => backtest_incidents(
            &input,
            Truth {
                incidents,
                flags,
                site,
            },
            mapping,
            model,
            &config,
            &early,
            &min_level,
            html.as_deref(),
        ),
        Cmd::Backtest { .. } => {
            eprintln!("yujing backtest: give --nab DIR, or --input FILE with --incidents FILE (or --flags COLUMN --site SITE)");
            Ok(ExitCode::from(2))
        }
        Cmd::Fit {
            model,
            out,
            input,
            mapping,
            archive,
            site,
            incidents,
            flags,
            config,
            early,
        } => fit(FitArgs {
            model,
            out,
            input,
            mapping,
            archive,
            site,
            truth: Truth {
                incidents,
                flags,
                site: None,
            },
            config,
            early,
        }),
        Cmd::Query {
            sql,
            config,
            archive,
            format,
            limit,
        } => query(&sql, &config, archive, format, limit),
        Cmd::Report {
            config,
            from,
            to,
            csv,
            html,
        } => report(&config, &from, &to, csv.as_deref(), html.as_deref()),
    };
    match res {
        Ok(code) => code,
        // a closed pipe (`yujing test | head`) is not an error worth a message
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("yujing: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn load(dir: &Path) -> Result<Arc<Config>, ExitCode> {
    Config::load(dir).map(Arc::new).map_err(|diags| {
        for d in &diags {
            eprintln!("{d}");
        }
        eprintln!(
            "{} error{} in {}",
            diags.len(),
            if diags.len() == 1 { "" } else { "s" },
            dir.display()
        );
        ExitCode::from(1)
    })
}

fn check(dir: &Path) -> Result<ExitCode> {
    let mut so = std::io::stdout().lock();
    let cfg = match load(dir) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let routes = if cfg.routes.channels.is_empty() && cfg.routes.routes.is_empty() {
        String::new()
    } else {
        format!(
            ", {} routes over {} channels",
            cfg.routes.routes.len(),
            cfg.routes.channels.len()
        )
    };
    writeln!(
        so,
        "ok: {} sites, {} devices, {} rules{routes} in {}",
        cfg.registry.sites.len(),
        cfg.registry
            .devices
            .iter()
            .filter(|d| !d.is_hotline())
            .count(),
        cfg.rules.len(),
        if cfg.dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &cfg.dir
        }
        .display()
    )?;
    so.flush()?;
    // what `yujing run` would warn about at start (not errors: the demo runs on samples)
    for w in yujing::service::limits::unsafe_settings(&cfg) {
        eprintln!("warning: {w}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The config directory of a test file: the nearest ancestor holding a site registry.
fn config_of(file: &Path) -> PathBuf {
    let mut p = file.parent();
    while let Some(d) = p {
        if d.join("sites.yaml").exists() || d.join("sites.csv").exists() {
            return d.to_path_buf();
        }
        p = d.parent();
    }
    PathBuf::from(".")
}

fn test(files: Vec<PathBuf>, config: Option<PathBuf>) -> Result<ExitCode> {
    let files = if files.is_empty() {
        let layout = Layout::find(config.as_deref().unwrap_or(Path::new(".")));
        let dir = layout.rules_dir.join("tests");
        let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("no test files given and cannot read {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| yujing::config::is_yaml(p))
            .collect();
        v.sort();
        v
    } else {
        files
    };
    let mut out = std::io::stdout().lock();
    let (mut passed, mut failed) = (0, 0);
    let mut configs: std::collections::BTreeMap<PathBuf, Arc<Config>> = Default::default();
    for f in &files {
        let dir = config.clone().unwrap_or_else(|| config_of(f));
        let cfg = match configs.get(&dir) {
            Some(c) => c.clone(),
            None => match load(&dir) {
                Ok(c) => {
                    configs.insert(dir.clone(), c.clone());
                    c
                }
                Err(code) => return Ok(code),
            },
        };
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        let cases = match ruletest::load(&f.display().to_string(), &text, cfg.settings.timezone) {
            Ok(c) => c,
            Err(diags) => {
                for d in &diags {
                    eprintln!("{d}");
                }
                failed += 1;
                continue;
            }
        };
        for case in &cases {
            let o = ruletest::run(&cfg, case);
            match &o.failure {
                None => {
                    passed += 1;
                    writeln!(out, "PASS {} {}", o.location, o.name)?;
                }
                Some(why) => {
                    failed += 1;
                    writeln!(out, "FAIL {} {}\n{}", o.location, o.name, why.trim_end())?;
                }
            }
        }
    }
    writeln!(out, "{passed} passed, {failed} failed")?;
    Ok(if failed == 0 && passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn run_replay(dir: &Path, opts: &replay::Options, quiet: bool) -> Result<ExitCode> {
    let cfg = match load(dir) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let summary = replay::run(cfg, opts)?;
    if !quiet {
        summary.print(&mut std::io::stderr())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Where a demo keeps what it writes: `--data`, else a new directory under the system's
/// temporary one.
fn demo_data(data: Option<PathBuf>) -> PathBuf {
    data.unwrap_or_else(|| std::env::temp_dir().join(format!("yujing-demo-{}", std::process::id())))
}

/// The demo's configuration: `--config`, else the current directory when it has a site
/// registry (the repository's samples), else the sample county built into the binary, written
/// out under `data` (an installed binary, a container).
fn demo_config(config: Option<PathBuf>, data: &Path) -> Result<PathBuf> {
    if let Some(dir) = config {
        return Ok(dir);
    }
    let here = PathBuf::from(".");
    if yujing::config::has_registry(&here) {
        return Ok(here);
    }
    let dir = data.join("config");
    let done = yujing::config::sample::write(&dir)
        .with_context(|| format!("writing the sample configuration to {}", dir.display()))?;
    if done.kept == 0 {
        eprintln!(
            "yujing demo: no sites.yaml or sites.csv here; running the built-in sample county (its files: {})",
            dir.display()
        );
    } else {
        // a reused --data directory: what is there may have been edited, and is what runs
        eprintln!(
            "yujing demo: no sites.yaml or sites.csv here; running the configuration in {} ({} files kept as they were, {} written from the built-in sample county)",
            dir.display(),
            done.kept,
            done.written
        );
    }
    Ok(dir)
}

fn demo(dir: &Path, write_day: Option<&Path>, en: bool) -> Result<ExitCode> {
    let cfg = match load(dir) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    yujing::sim::demo(cfg, write_day, en, &mut std::io::stdout())?;
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

fn run(
    config: PathBuf,
    log: &str,
    listen: Option<String>,
    instance: Option<String>,
) -> Result<ExitCode> {
    init_logging(log);
    let dir = if config.is_file() || config.extension().is_some_and(|e| e == "toml") {
        config
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    } else {
        config
    };
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    if let Some(l) = &listen {
        l.parse::<std::net::SocketAddr>()
            .with_context(|| format!("--listen {l}: not an address like 127.0.0.1:8088"))?;
    }
    let opts = yujing::service::Options {
        config_dir: dir,
        overlay: Arc::new(move |c| {
            if let Some(l) = &listen {
                c.service.http.listen = l.clone();
            }
            if let (Some(i), Some(cl)) = (&instance, c.service.cluster.as_mut()) {
                cl.instance = i.clone();
            }
        }),
        demo: None,
    };
    runtime()?.block_on(yujing::service::run(opts))?;
    Ok(ExitCode::SUCCESS)
}

/// The model file given, or the config's `models/anomaly.toml`; its errors printed as
/// `file:line:col: message`.
fn model_file(
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

fn backtest_nab(
    dir: &Path,
    model: Option<PathBuf>,
    config: &Path,
    out: Option<&Path>,
    detector: &str,
    html: Option<&Path>,
) -> Result<ExitCode> {
    let mut so = std::io::stdout().lock();
    use yujing::backtest::{html as page, nab};
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
                let f = nab::score_file(sc, &s.windows, &std, model.threshold);
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
                        .filter(|(i, v)| **v >= model.threshold && *i >= nab::probation(sc.len()))
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
        writeln!(so, "report: {}", path.display())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// What really happened: an incident list, or a column of technician flags in the input.
struct Truth {
    incidents: Option<PathBuf>,
    flags: Option<String>,
    site: Option<String>,
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

struct FitArgs {
    model: Option<PathBuf>,
    out: PathBuf,
    input: Option<PathBuf>,
    mapping: Option<PathBuf>,
    archive: Option<PathBuf>,
    site: Option<String>,
    truth: Truth,
    config: PathBuf,
    early: String,
}

fn fit(mut a: FitArgs) -> Result<ExitCode> {
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
fn backtest_incidents(
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

/// The config directory of a `-c path/to/yujing.toml` argument.
fn toml_dir(toml: &Path) -> &Path {
    toml.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum QueryFormat {
    Table,
    Csv,
    Json,
}

fn query(
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

fn report(
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
    let names = cfg
        .registry
        .departments
        .iter()
        .map(|d| (d.id.clone(), d.name.clone()))
        .collect();
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

/// 16 random bytes as hex, from the operating system's generator.
fn random_token() -> Result<String> {
    yujing::api::session::random_hex(16).context("reading /dev/urandom")
}

fn token(name: &str, role: &str) -> Result<ExitCode> {
    let mut so = std::io::stdout().lock();
    if yujing::config::service::Role::parse(role).is_none() {
        eprintln!("yujing: unknown role `{role}` (operator, admin, ingest or department:<id>)");
        return Ok(ExitCode::from(2));
    }
    let t = format!("yj_{}", random_token()?);
    writeln!(so, "token (give this to {name}; it is shown only now): {t}")?;
    writeln!(so)?;
    writeln!(so, "[[tokens]]")?;
    writeln!(so, "name = {:?}", name)?;
    writeln!(so, "role = {:?}", role)?;
    writeln!(
        so,
        "sha256 = {:?}",
        yujing::dispatch::channel::token_hash(&t)
    )?;
    Ok(ExitCode::SUCCESS)
}

fn live_demo(
    config: Option<PathBuf>,
    listen: String,
    mqtt_port: u16,
    speed: f64,
    data: Option<PathBuf>,
) -> Result<ExitCode> {
    use yujing::config::routes::{Channel, ChannelKind};
    use yujing::config::service::{Hj212Settings, MqttSettings, Role, Token};
    use yujing_connectors::broker;
    init_logging("warn");
    let data = demo_data(data);
    let config = demo_config(config, &data)?;
    // check the configuration before starting anything
    if let Err(code) = load(&config) {
        return Ok(code);
    }
    let mut addr: std::net::SocketAddr = listen
        .parse()
        .with_context(|| format!("--listen {listen}: not an address like 127.0.0.1:8088"))?;
    if addr.port() == 0 || std::net::TcpListener::bind(addr).is_err() {
        let free = broker::free_port()?;
        if addr.port() != 0 {
            eprintln!("yujing demo: {addr} is taken; using port {free}");
        }
        addr.set_port(free);
    }
    let mqtt_port = if mqtt_port != 0 && broker::port_is_free(mqtt_port) {
        mqtt_port
    } else {
        let free = broker::free_port()?;
        if mqtt_port != 0 {
            eprintln!("yujing demo: MQTT port {mqtt_port} is taken; using {free}");
        }
        free
    };
    broker::start(mqtt_port, 1 << 20)?;
    let hj212_port = broker::free_port()?;
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let hook_secret = random_token()?;
    let tokens = [
        ("demo-operator", Role::Operator, random_token()?),
        ("demo-zjj", Role::Department("zjj".into()), random_token()?),
        ("demo-slj", Role::Department("slj".into()), random_token()?),
        ("demo-admin", Role::Admin, random_token()?),
        // the simulated 12345 system: it may post tickets, nothing else
        ("demo-hotline", Role::Ingest, random_token()?),
    ];
    let token_table: Vec<Token> = tokens
        .iter()
        .map(|(n, r, t)| Token {
            name: n.to_string(),
            role: r.clone(),
            sha256: yujing::dispatch::channel::token_hash(t),
        })
        .collect();
    let secret = hook_secret.clone();
    let store_dir = data.clone();
    let overlay: yujing::service::Overlay = Arc::new(move |c: &mut Config| {
        c.service.http.listen = addr.to_string();
        c.service.mqtt = Some(MqttSettings {
            host: "127.0.0.1".into(),
            port: mqtt_port,
            client_id: "yujing-demo".into(),
            username: None,
            password: None,
            ca_file: None,
            topics: vec![
                "yujing/sensors/+/+".into(),
                "yujing/cameras/+/events".into(),
            ],
            persistent: true,
            keep_alive: 30_000,
            max_payload: 64 * 1024,
            dead_letter_topic: Some("yujing/dead-letter".into()),
        });
        // HJ 212 monitors connect to the demo on loopback; the sample cameras' RTSP addresses
        // are on a site network the demo cannot reach, so their analytics and health come from
        // the simulator as an edge AI box would send them
        c.service.hj212 = Some(Hj212Settings {
            listen: format!("127.0.0.1:{hj212_port}"),
            max_connections: 1000,
            max_connections_per_address: 32,
            first_packet_timeout: 120_000,
            idle_timeout: 10 * 60_000,
            accept_flags: vec!['N', 'T'],
        });
        c.service.cameras.enabled = false;
        c.service.store.path = store_dir.join("yujing-demo.db");
        c.service.store.dead_letter = store_dir.join("dead-letter.jsonl");
        // history for `yujing query`, sealed every 10 s so the demo's archive fills quickly
        c.service.archive = Some(yujing::config::service::ArchiveSettings {
            dir: store_dir.join("archive"),
            retention_days: c.service.archive.as_ref().map_or(400, |a| a.retention_days),
            flush_every: 10_000,
            query_memory_mib: 512,
            query_answer_mib: 16,
            query_timeout: 30_000,
        });
        c.service.tokens = token_table.clone();
        c.service.secrets.insert("demo-hook".into(), secret.clone());
        // every department: a signed webhook to the demo itself, and MQTT
        c.routes.channels = vec![Channel {
            id: "mqtt".into(),
            kind: ChannelKind::Mqtt,
            url: None,
            secret: None,
            topic: None,
        }];
        c.routes.departments.clear();
        for d in &c.registry.departments {
            let id = format!("hook-{}", d.id);
            c.routes.channels.push(Channel {
                id: id.clone(),
                kind: ChannelKind::Webhook,
                url: Some(format!("http://{addr}/demo/hooks/{}", d.id)),
                secret: Some("demo-hook".into()),
                topic: None,
            });
            c.routes
                .departments
                .push((d.id.clone(), vec![id, "mqtt".into()]));
        }
    });
    let t = |n: &str| {
        tokens
            .iter()
            .find(|x| x.0 == n)
            .map(|x| x.2.clone())
            .unwrap_or_default()
    };
    let banner = format!(
        "
预警 yujing demo: every sample site publishes over MQTT; simulated time runs {speed}x from
yesterday 00:00 until it catches up with now. Warnings appear within the first minutes.

  Dashboard    {{http}}/   (open it in a browser; log in with a token below)
  API          {{http}}/api/v1/warnings   (OpenAPI: {{http}}/api/v1/openapi.json)
  live stream  {{http}}/api/v1/stream
  metrics      {{http}}/metrics
  MQTT broker  127.0.0.1:{mqtt_port}   (warnings also on yujing/warnings/<department>)
  HJ 212       127.0.0.1:{hj212_port}   (dust monitors of cs-02 and the aq-02 station report here)
  a site       {{http}}/api/v1/sites/cs-02   (HJ 212 readings; sa-01: camera counts and events)
  data         {data}
  history      yujing query --archive {data}/archive \\
                 \"SELECT site, day, max(value) FROM readings WHERE metric = 'pm10' GROUP BY site, day\"

Tokens (valid for this run):
  operator          {op}
  department zjj    {zjj}   (住房和城乡建设局: construction sites)
  department slj    {slj}   (水利局: reservoirs and rivers)
  admin             {admin}
  12345 system      {hotline}   (ingest: posts tickets only)

Try:
  curl -s -H 'Authorization: Bearer {op}' '{{http}}/api/v1/warnings?status=open'
  curl -N -H 'Authorization: Bearer {zjj}' {{http}}/api/v1/stream
  curl -s -X POST -H 'Authorization: Bearer {zjj}' {{http}}/api/v1/warnings/<id>/ack
  curl -s -X POST -H 'Authorization: Bearer {zjj}' -H 'Content-Type: application/json' \\
       -d '{{\"measures\":\"洒水降尘，停止土方作业\",\"result\":\"PM10已回落\"}}' {{http}}/api/v1/warnings/<id>/feedback
  curl -s -H 'Authorization: Bearer {zjj}' {{http}}/api/v1/warnings/<id>      (the timeline)
  mosquitto_sub -p {mqtt_port} -t 'yujing/warnings/#'
  curl -s -X POST -H 'Authorization: Bearer {hotline}' -H 'Content-Type: application/json' \\
       -d '{{\"number\":\"12345-0001\",\"category\":\"夜间施工噪声\",\"received_at\":'$(date +%s000)',\"content\":\"工地半夜施工\",\"address\":\"滨江路\"}}' {{http}}/api/v1/hotline/tickets
  mosquitto_pub -p {mqtt_port} -t yujing/sensors/cs-01/cs-01-noise -m '{{\"ts\": '$(date +%s000)', \"metric\": \"noise\", \"value\": 88}}'
  mosquitto_pub -p {mqtt_port} -t yujing/cameras/cs-01-cam1/events -m '{{\"ts\": '$(date +%s000)', \"event\": \"helmet_violation\"}}'

Webhooks the departments receive are printed below. Ctrl-C stops.
",
        data = data.display(),
        op = t("demo-operator"),
        zjj = t("demo-zjj"),
        slj = t("demo-slj"),
        admin = t("demo-admin"),
        hotline = t("demo-hotline"),
    );
    let opts = yujing::service::Options {
        config_dir: config,
        overlay,
        demo: Some(yujing::service::DemoOptions {
            hook_secret,
            hotline_token: t("demo-hotline"),
            speed,
            banner,
        }),
    };
    runtime()?.block_on(yujing::service::run(opts))?;
    Ok(ExitCode::SUCCESS)
}
