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

mod commands;

use commands::backtest::{backtest_incidents, backtest_nab, fit, FitArgs, Truth};
use commands::demo::live_demo;
use commands::query::{query, report, QueryFormat};

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
    match command(cli.cmd) {
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

/// One command, run.
fn command(cmd: Cmd) -> Result<ExitCode> {
    match cmd {
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
