//! The `tenantd legacy <step> --config FILE` command line: argument types and
//! output only (the run's progress bar among it); every step is a library call.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::{LegacyConfig, LegacyError};
use crate::Orchestrator;

/// The config file argument every step takes.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The legacy split's TOML config (see legacy.example.toml).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

/// `tenantd legacy …`: backup → audit → clean → check → run → verify, with rollback.
#[derive(Debug, Subcommand)]
pub enum LegacyCommand {
    /// pg_dump the source into <backups>/pre-migration/<timestamp>.dump, with a manifest.
    Backup(ConfigArg),
    /// Classify every table from the foreign-key graph and count what needs attention.
    Audit(ConfigArg),
    /// Count (dry run) or archive and delete (--execute) the test data.
    Clean {
        /// The config.
        #[command(flatten)]
        config: ConfigArg,
        /// Delete the rows (after archiving them). Needs a backup.
        #[arg(long)]
        execute: bool,
        /// Put the rows of this archive directory back instead.
        #[arg(long, value_name = "DIR", conflicts_with = "execute")]
        restore: Option<PathBuf>,
    },
    /// Validate config, environment and targets before a run.
    Check(ConfigArg),
    /// Split the source into AUTH, SHARED and tenant databases (resumable).
    Run {
        /// The config.
        #[command(flatten)]
        config: ConfigArg,
        /// Testing only (feature `testing`): abort after this many tables are copied.
        #[cfg(feature = "testing")]
        #[arg(long, env = "TENANTD_LEGACY_CRASH_AFTER", hide = true)]
        crash_after_tables: Option<usize>,
    },
    /// Compare every tenant's rows with the source; check references.
    Verify(ConfigArg),
    /// Drop what the run created and restore the source if clean changed it.
    Rollback {
        /// The config.
        #[command(flatten)]
        config: ConfigArg,
        /// Only say what would be done.
        #[arg(long)]
        validate: bool,
        /// Roll back even if tenants were written to since the split.
        #[arg(long)]
        force: bool,
    },
    /// Write shared/ and tenant/ V1 migrations from the source's DDL.
    Baseline(ConfigArg),
}

/// Runs a legacy step.
pub async fn execute(
    orchestrator: &Orchestrator,
    command: LegacyCommand,
    json: bool,
) -> Result<(), LegacyError> {
    let progress = !json && std::io::stderr().is_terminal();
    match command {
        LegacyCommand::Backup(c) => {
            let manifest = super::backup::backup(&load(&c)?).await?;
            print(json, &manifest, &manifest.text());
        }
        LegacyCommand::Audit(c) => {
            let report = super::audit::audit(&load(&c)?).await?;
            print(json, &report, &report.text());
        }
        LegacyCommand::Clean {
            config,
            execute,
            restore,
        } => {
            let config = load(&config)?;
            if let Some(dir) = restore {
                let restored = super::clean::restore(&config, &dir).await?;
                print(json, &restored, &format!("restored {restored:?}"));
            } else {
                let report = super::clean::clean(&config, execute).await?;
                print(json, &report, &report.text());
            }
        }
        LegacyCommand::Check(c) => {
            let report = super::check::check(orchestrator, &load(&c)?).await?;
            print(json, &report, &report.text());
            if !report.ok() {
                return Err(LegacyError::Refused(
                    "check failed: fix the items marked FAIL".to_owned(),
                ));
            }
        }
        LegacyCommand::Run {
            config,
            #[cfg(feature = "testing")]
            crash_after_tables,
        } => {
            let options = super::run::RunOptions {
                #[cfg(feature = "testing")]
                crash_after_tables,
            };
            run(orchestrator, &load(&config)?, &options, progress, json).await?;
        }
        LegacyCommand::Verify(c) => verify(orchestrator, &load(&c)?, json).await?,
        LegacyCommand::Rollback {
            config,
            validate,
            force,
        } => {
            let config = load(&config)?;
            let plan = if validate {
                super::rollback::validate(orchestrator, &config).await?
            } else {
                super::rollback::rollback(orchestrator, &config, force).await?
            };
            print(json, &plan, &plan.text());
        }
        LegacyCommand::Baseline(c) => {
            let report = super::baseline::baseline(&load(&c)?).await?;
            print(json, &report, &report.text());
        }
    }
    Ok(())
}

async fn run(
    orchestrator: &Orchestrator,
    config: &LegacyConfig,
    options: &super::run::RunOptions,
    progress: bool,
    json: bool,
) -> Result<(), LegacyError> {
    let bar = BarObserver::new(progress);
    let report = super::run::run_observed(orchestrator, config, options, &bar).await;
    bar.0.finish_and_clear();
    let report = report?;
    let text = format!(
        "split {} into {} tenants: {} tenant rows and {} shared rows copied ({} tables copied, {} resumed) in {} ms",
        report.source,
        report.tenants.len(),
        report.tenant_rows,
        report.shared_rows,
        report.units_copied,
        report.units_resumed,
        report.elapsed_ms
    );
    print(json, &report, &text);
    Ok(())
}

async fn verify(
    orchestrator: &Orchestrator,
    config: &LegacyConfig,
    json: bool,
) -> Result<(), LegacyError> {
    let report = super::verify::verify(orchestrator, config).await?;
    print(json, &report, &report.text());
    if report.ok() {
        Ok(())
    } else {
        Err(LegacyError::VerifyFailed(report.mismatches.len()))
    }
}

/// Draws the run's copy as a bar of tables (hidden unless `visible`).
struct BarObserver(ProgressBar);

impl BarObserver {
    fn new(visible: bool) -> Self {
        if !visible {
            return Self(ProgressBar::hidden());
        }
        let bar = ProgressBar::new(0);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} tables {msg}",
        ) {
            bar.set_style(style);
        }
        Self(bar)
    }
}

impl super::run::RunObserver for BarObserver {
    fn planned(&self, units: u64) {
        self.0.set_length(units);
    }

    fn advanced(&self, units: u64) {
        self.0.inc(units);
    }

    fn copying(&self, tenant: &str, table: &str) {
        self.0.set_message(format!("{tenant} {table}"));
    }
}

fn load(arg: &ConfigArg) -> Result<LegacyConfig, LegacyError> {
    Ok(LegacyConfig::load(&arg.config)?)
}

fn print<T: Serialize>(json: bool, value: &T, text: &str) {
    if json {
        match serde_json::to_string_pretty(value) {
            Ok(doc) => println!("{doc}"),
            Err(e) => eprintln!("error: cannot serialise the result: {e}"),
        }
    } else {
        println!("{text}");
    }
}
