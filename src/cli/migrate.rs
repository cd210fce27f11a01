//! `tenantd migrate status|run`: arguments and output only (the work is
//! [`crate::fleet::Fleet`]'s). A progress bar on a terminal; with `--json`,
//! one JSON line per tenant and a closing summary line.

use std::io::IsTerminal;
use std::time::Duration;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::Orchestrator;
use crate::error::Error;
use crate::fleet::{
    FleetError, FleetStatus, Outcome, RunObserver, RunOptions, RunSummary, SetChoice, TenantResult,
    TenantState,
};
use crate::tenant::TenantCode;

/// `tenantd migrate …`
#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Schema versions of AUTH, SHARED, the template and every tenant, read
    /// from the catalog (tenant databases are not opened unless --verify).
    Status(StatusArgs),
    /// Migrate AUTH, SHARED, the template, then every tenant database behind
    /// (bounded concurrency; failures quarantine the tenant).
    Run(RunArgs),
}

/// `tenantd migrate status`
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Also open every tenant database and compare its migration history
    /// with the files and the catalog (reports drift as `divergent`).
    #[arg(long)]
    pub verify: bool,
}

/// `--set` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SetArg {
    /// The AUTH database.
    Auth,
    /// The SHARED database.
    Shared,
    /// The template and every tenant database.
    Tenant,
    /// AUTH, SHARED, then the template and the tenants.
    All,
}

/// `tenantd migrate run`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Which sets to migrate.
    #[arg(long, value_enum, default_value = "all")]
    pub set: SetArg,
    /// Only this tenant (repeat for several).
    #[arg(long = "tenant", value_name = "CODE")]
    pub tenants: Vec<TenantCode>,
    /// Tenants migrated at once (default: twice the core count), capped by
    /// TENANTD_MIGRATE_CONNECTIONS.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Migrate this many tenants first; stop if any of them fails.
    #[arg(long, default_value_t = RunOptions::default().canary)]
    pub canary: usize,
    /// Go on after a tenant fails (default: start no new tenant).
    #[arg(long)]
    pub continue_on_error: bool,
    /// List what would run where and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep serving tenants whose migration failed (default: quarantine them).
    #[arg(long)]
    pub no_quarantine: bool,
}

/// Runs `tenantd migrate …`.
pub async fn migrate(
    orchestrator: &Orchestrator,
    command: MigrateCommand,
    json: bool,
) -> Result<(), Error> {
    match command {
        MigrateCommand::Status(args) => {
            let status = orchestrator.fleet().status(args.verify).await?;
            match json {
                true => println!("{}", to_json(&status)),
                false => println!("{}", status_text(&status)),
            }
            Ok(())
        }
        MigrateCommand::Run(args) => run(orchestrator, args, json).await,
    }
}

async fn run(orchestrator: &Orchestrator, args: RunArgs, json: bool) -> Result<(), Error> {
    let options = RunOptions {
        sets: match args.set {
            SetArg::Auth => SetChoice::Auth,
            SetArg::Shared => SetChoice::Shared,
            SetArg::Tenant => SetChoice::Tenant,
            SetArg::All => SetChoice::All,
        },
        tenants: args.tenants,
        concurrency: args.concurrency,
        canary: args.canary,
        continue_on_error: args.continue_on_error,
        dry_run: args.dry_run,
        quarantine: !args.no_quarantine,
        actor: "cli".to_owned(),
        ..RunOptions::default()
    };
    let observer = CliObserver::new(json);
    let summary = orchestrator.fleet().run(&options, &observer).await;
    observer.bar.finish_and_clear();
    let summary = summary?;
    match json {
        true => println!("{}", to_json(&serde_json::json!({ "summary": &summary }))),
        false => println!("{}", summary_text(&summary)),
    }
    if summary.failed.is_empty() {
        return Ok(());
    }
    let codes: Vec<&str> = summary.failed.iter().map(TenantCode::as_str).collect();
    Err(FleetError::TenantsFailed {
        failed: codes.len(),
        codes: codes.join(", "),
    }
    .into())
}

/// Prints the run as it goes: a bar on a terminal, JSON lines with `--json`.
struct CliObserver {
    bar: ProgressBar,
    json: bool,
}

impl CliObserver {
    fn new(json: bool) -> Self {
        let bar = if json || !std::io::stdout().is_terminal() {
            ProgressBar::hidden()
        } else {
            let bar = ProgressBar::new(0);
            if let Ok(style) = ProgressStyle::with_template(
                "{bar:40} {pos}/{len} tenants  {msg}  elapsed {elapsed}  ETA {eta}",
            ) {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        };
        Self { bar, json }
    }
}

impl RunObserver for CliObserver {
    fn planned(&self, total: usize) {
        self.bar.set_length(total as u64);
    }

    fn finished(&self, result: &TenantResult) {
        self.bar.inc(1);
        if self.json {
            println!("{}", to_json(result));
            return;
        }
        let line = match result.outcome {
            Outcome::Failed => format!(
                "FAILED   {} (stays at {}): {}",
                result.tenant,
                version(result.to_version),
                result.error.as_deref().unwrap_or("")
            ),
            Outcome::WouldMigrate => format!(
                "would migrate {} from {}: {:?}",
                result.tenant,
                version(result.from_version),
                result.applied
            ),
            _ => return,
        };
        if self.bar.is_hidden() {
            println!("{line}");
        } else {
            self.bar.println(line);
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value)
        .unwrap_or_else(|e| format!("{{\"error\":\"cannot serialise the result: {e}\"}}"))
}

fn version(v: Option<i32>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("V{v}"))
}

fn summary_text(s: &RunSummary) -> String {
    let mut out = String::new();
    for db in &s.databases {
        out.push_str(&format!(
            "{:<7} {:<24} {}  applied {:?}\n",
            db.schema.to_string().to_uppercase(),
            db.database,
            version(db.version),
            db.applied
        ));
    }
    if let Some(t) = &s.template {
        let built = if t.built { " (built)" } else { "" };
        out.push_str(&format!("template {}{built}\n", t.name));
    }
    let t = &s.tenants;
    out.push_str(&format!(
        "{}tenants: {} migrated, {} already current, {} failed, {} skipped{} in {:.1} s",
        if s.dry_run {
            "DRY RUN, nothing changed. "
        } else {
            ""
        },
        t.migrated,
        t.current,
        t.failed,
        t.skipped,
        if s.dry_run {
            format!(", {} would migrate", t.would_migrate)
        } else {
            String::new()
        },
        s.elapsed_ms as f64 / 1000.0
    ));
    if let Some(reason) = &s.stopped {
        out.push_str(&format!("\nstopped: {reason}"));
    }
    out
}

fn status_text(s: &FleetStatus) -> String {
    let mut out = String::new();
    for db in &s.databases {
        out.push_str(&format!(
            "{:<8} {:<28} {:<5} {:?}{}\n",
            db.schema.to_string().to_uppercase(),
            db.database,
            version(db.version),
            db.state,
            pending(&db.pending)
        ));
    }
    let template = match s.template.present {
        true => format!("{:<5} Current", version(s.template.version)),
        false => "-     Missing (built by `tenantd migrate run`)".to_owned(),
    };
    out.push_str(&format!(
        "{:<8} {:<28} {template}\n",
        "TEMPLATE", s.template.name
    ));
    out.push_str(&format!(
        "tenants: {} ({}), newest version V{}{}\n",
        s.tenants.len(),
        s.counts
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        s.latest,
        if s.verified {
            ", verified against every database"
        } else {
            ""
        }
    ));
    for t in s.tenants.iter().filter(|t| t.state != TenantState::Current) {
        let detail: Vec<String> = t.drift.iter().map(ToString::to_string).collect();
        let detail = t
            .migration_error
            .iter()
            .chain(t.error.iter())
            .cloned()
            .chain(detail)
            .collect::<Vec<_>>()
            .join("; ");
        out.push_str(&format!(
            "  {:<24} {:<10} {:<5} {:?}{}  {detail}\n",
            t.tenant.as_str(),
            t.status.as_str(),
            version(t.version),
            t.state,
            pending(&t.pending)
        ));
    }
    out.trim_end().to_owned()
}

fn pending(versions: &[i32]) -> String {
    match versions {
        [] => String::new(),
        v => format!(" pending {v:?}"),
    }
}
