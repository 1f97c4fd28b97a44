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
    /// Replay a simulated sample day of the bundled county through the sample rules.
    Demo {
        /// Config directory (sites.yaml, rules/, yujing.toml)
        #[arg(short, long, default_value = ".")]
        config: PathBuf,
        /// Also write the simulated readings as CSV here
        #[arg(long)]
        write_day: Option<PathBuf>,
        /// Print warnings in English
        #[arg(long)]
        en: bool,
    },
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
            };
            run_replay(&config, &opts, quiet)
        }
        Cmd::Demo {
            config,
            write_day,
            en,
        } => demo(&config, write_day.as_deref(), en),
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
    let cfg = match load(dir) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    println!(
        "ok: {} sites, {} devices, {} rules in {}",
        cfg.registry.sites.len(),
        cfg.registry.devices.len(),
        cfg.rules.len(),
        if cfg.dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &cfg.dir
        }
        .display()
    );
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

fn demo(dir: &Path, write_day: Option<&Path>, en: bool) -> Result<ExitCode> {
    let cfg = match load(dir) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    yujing::sim::demo(cfg, write_day, en, &mut std::io::stdout())?;
    Ok(ExitCode::SUCCESS)
}
