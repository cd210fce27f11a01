//! The `tenantd` command line: argument parsing and output only. Every
//! command calls the library ([`crate::Orchestrator`]); `--json` prints a
//! machine-readable document, and the exit code says what went wrong:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | internal error |
//! | 2 | invalid input or configuration |
//! | 3 | unknown tenant |
//! | 4 | conflict with the current state (already exists, wrong status) |
//! | 5 | PostgreSQL unreachable: retry later |

mod migrate;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::config::ConfigError;
use crate::config::{ServerSource, Settings};
use crate::devcluster::DevCluster;
use crate::error::{Classify, Error, ErrorKind};
use crate::http::ServeError;
use crate::legacy::LegacyError;
#[cfg(feature = "testing")]
use crate::provision::CrashPoint;
use crate::provision::ProvisionPath;
use crate::tenant::{NewTenant, Plan, Region, Tenant, TenantCode, TenantStatus};
use crate::{Orchestrator, TenantFilter};

/// tenantd — a database-per-tenant orchestrator for PostgreSQL.
///
/// Every société gets its own PostgreSQL database and role, beside an AUTH
/// database (catalog, identity) and a SHARED one (reference data). Settings
/// come from the environment (DATABASE_URL, TENANTD_SECRET, DB_AUTH_NAME,
/// DB_SHARED_NAME, DB_TENANT_PREFIX); with DATABASE_URL unset, tenantd runs an
/// embedded PostgreSQL cluster under ./.tenantd/.
#[derive(Debug, Parser)]
#[command(name = "tenantd", version, propagate_version = true)]
pub struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Testing only (feature `testing`): abort the process at this life-cycle
    /// step (after_role, after_database, after_mark_deleting, after_drop_database).
    #[cfg(feature = "testing")]
    #[arg(long, global = true, env = "TENANTD_CRASH_AT", hide = true)]
    pub crash_at: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create AUTH and SHARED if missing, apply their migrations and build the
    /// tenant template. Safe to run again: a second run changes nothing.
    Init,
    /// Finish or roll back life-cycle work interrupted by a crash.
    Reconcile,
    /// Manage tenant databases.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage the embedded dev cluster (used when DATABASE_URL is unset).
    #[command(subcommand)]
    Dev(DevCommand),
    /// Split the legacy monolith: backup, audit, clean, check, run, verify,
    /// rollback, baseline (each with --config FILE).
    #[command(subcommand)]
    Legacy(crate::legacy::command::LegacyCommand),
    /// Serve the HTTP API on TENANTD_LISTEN (runs init and reconcile first;
    /// prints a bootstrap admin key when the catalog has none).
    Serve,
    /// Manage API keys.
    #[command(subcommand)]
    Apikey(ApikeyCommand),
    /// Fleet migrations: status and runs across every database.
    #[command(subcommand)]
    Migrate(migrate::MigrateCommand),
}

/// `tenantd apikey …`
#[derive(Debug, Subcommand)]
pub enum ApikeyCommand {
    /// Create an API key and print its secret (shown once; only its SHA-256 is stored).
    Create {
        /// admin (every admin route) or tenant (one tenant's routes).
        #[arg(long, value_parser = ["admin", "tenant"])]
        scope: String,
        /// The tenant of a tenant key.
        #[arg(long, value_name = "CODE")]
        tenant: Option<TenantCode>,
        /// Who uses the key.
        #[arg(long)]
        name: String,
    },
}

/// `tenantd tenant …`
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Provision a tenant: role, database (cloned from the template), schema.
    Create(CreateArgs),
    /// List tenants (live ones unless --all or --status).
    List(ListArgs),
    /// Show one tenant.
    Show(CodeArg),
    /// Suspend a tenant: its role can no longer log in, open sessions end.
    Suspend {
        /// The tenant's code.
        code: TenantCode,
        /// Why (kept in the catalog).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume a suspended tenant.
    Resume(CodeArg),
    /// Drop a tenant's database and role (the catalog keeps it as deleted).
    Drop {
        /// The tenant's code.
        code: TenantCode,
        /// Repeat the code to confirm.
        #[arg(long, value_name = "CODE")]
        confirm: String,
    },
    /// Print the tenant's connection URL (its own role; --json for the parts).
    Url(CodeArg),
    /// Give the tenant's role a new password (the next generation of its
    /// derivation) and end every session opened with the old one; tenantd's
    /// pools reconnect with the new one. `tenant url` prints it.
    RotatePassword(CodeArg),
}

/// A tenant code argument.
#[derive(Debug, Args)]
pub struct CodeArg {
    /// The tenant's code.
    pub code: TenantCode,
}

/// `tenantd tenant create`
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The tenant's code: 2-40 chars, [a-z]\[a-z0-9_\]*.
    pub code: TenantCode,
    /// Display name of the société.
    #[arg(long)]
    pub name: String,
    /// Region: DZ, CH, FR, BE or CA.
    #[arg(long, default_value = "FR")]
    pub region: Region,
    /// Plan: free, pro or enterprise.
    #[arg(long, default_value = "free")]
    pub plan: Plan,
    /// Administrator e-mail.
    #[arg(long)]
    pub admin_email: Option<String>,
    /// How to build the database: clone the template (fast) or run the migrations.
    #[arg(long, value_enum, default_value = "template")]
    pub path: PathArg,
}

/// `--path` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PathArg {
    /// Clone the sealed template database.
    Template,
    /// Create an empty database and migrate it.
    Migrate,
}

/// `tenantd tenant list`
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this status.
    #[arg(long)]
    pub status: Option<TenantStatus>,
    /// Only this region.
    #[arg(long)]
    pub region: Option<Region>,
    /// Only this plan.
    #[arg(long)]
    pub plan: Option<Plan>,
    /// Include deleted and failed tenants.
    #[arg(long)]
    pub all: bool,
}

/// `tenantd dev …`
#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Start the dev cluster (initialising it on first use) and print its URL.
    Start,
    /// Stop the dev cluster.
    Stop,
}

/// What a command can fail with: the library's error, a legacy split
/// step's, or the HTTP server's.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An orchestrator call failed.
    #[error(transparent)]
    Library(#[from] Error),
    /// A legacy split step failed.
    #[error(transparent)]
    Legacy(#[from] LegacyError),
    /// `tenantd serve` could not start or failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

impl From<ConfigError> for CliError {
    fn from(error: ConfigError) -> Self {
        Self::Library(error.into())
    }
}

impl Classify for CliError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Library(e) => e.kind(),
            Self::Legacy(e) => e.kind(),
            Self::Serve(e) => e.kind(),
        }
    }
}

/// Runs the command line; returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let json = cli.json;
    match execute(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            report_error(&error, json);
            ExitCode::from(exit_code(error.kind()))
        }
    }
}

/// The exit code of an error class.
pub fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Internal => 1,
        ErrorKind::InvalidInput => 2,
        ErrorKind::NotFound => 3,
        ErrorKind::Conflict => 4,
        ErrorKind::Unavailable => 5,
    }
}

fn report_error(error: &CliError, json: bool) {
    if json {
        let body = serde_json::json!({ "error": error.to_string(), "kind": format!("{:?}", error.kind()) });
        println!("{body}");
    } else {
        eprintln!("error: {error}");
    }
}

async fn execute(cli: Cli) -> Result<(), CliError> {
    let settings = Settings::from_env()?;
    if let Command::Dev(command) = &cli.command {
        return Ok(dev(&settings, command, cli.json).await?);
    }
    if let Command::Serve = &cli.command {
        return Ok(crate::http::serve(settings, cli.json).await?);
    }
    let orchestrator = Orchestrator::connect(settings).await?;
    #[cfg(feature = "testing")]
    let orchestrator = orchestrator.with_crash_point(match cli.crash_at.as_deref() {
        Some(text) => Some(
            CrashPoint::parse(text).ok_or_else(|| crate::config::ConfigError {
                variable: "TENANTD_CRASH_AT",
                problem: format!("unknown crash point {text:?}"),
            })?,
        ),
        None => None,
    });
    let result = dispatch(&orchestrator, cli.command, cli.json).await;
    orchestrator.close();
    result
}

async fn dispatch(
    orchestrator: &Orchestrator,
    command: Command,
    json: bool,
) -> Result<(), CliError> {
    match command {
        Command::Init => {
            let report = orchestrator.init().await?;
            let text = if report.changed_nothing() {
                format!(
                    "nothing to do: AUTH, SHARED and template {} are up to date",
                    report.template
                )
            } else {
                format!(
                    "initialised: created databases {:?}, applied AUTH migrations {:?}, SHARED migrations {:?}, template {}{}",
                    report.created_databases,
                    report.auth_applied,
                    report.shared_applied,
                    report.template,
                    if report.template_built {
                        " (built)"
                    } else {
                        ""
                    }
                )
            };
            let text = match report.revoke_statement() {
                Some(revoke) => format!(
                    "{text}\nwarning: every tenant role may connect to {:?} (CONNECT granted to \
                     PUBLIC); to close them, run as an administrator: {revoke}",
                    report.open_to_public
                ),
                None => text,
            };
            Ok(print(json, &report, &text)?)
        }
        Command::Reconcile => {
            let report = orchestrator.reconcile().await?;
            print(json, &report, &report.to_string())?;
            if report.broken.is_empty() {
                return Ok(());
            }
            let broken = report.broken.into_iter().map(|b| (b.code, b.error));
            Err(Error::from(crate::provision::ProvisionError::Unrepaired(
                broken.collect(),
            ))
            .into())
        }
        Command::Tenant(command) => Ok(tenant(orchestrator, command, json).await?),
        Command::Legacy(command) => {
            Ok(crate::legacy::command::execute(orchestrator, command, json).await?)
        }
        Command::Apikey(command) => Ok(apikey(orchestrator, command, json).await?),
        Command::Dev(_) | Command::Serve => Ok(()),
        Command::Migrate(command) => Ok(migrate::migrate(orchestrator, command, json).await?),
    }
}

async fn tenant(
    orchestrator: &Orchestrator,
    command: TenantCommand,
    json: bool,
) -> Result<(), Error> {
    match command {
        TenantCommand::Create(args) => {
            orchestrator.init().await?;
            orchestrator.reconcile().await?;
            let new = NewTenant {
                code: args.code,
                name: args.name,
                region: args.region,
                plan: args.plan,
                admin_email: args.admin_email,
            };
            let path = match args.path {
                PathArg::Template => ProvisionPath::Template,
                PathArg::Migrate => ProvisionPath::Migrate,
            };
            let tenant = orchestrator.create_tenant_via(new, path, "cli").await?;
            print(
                json,
                &tenant,
                &format!(
                    "created tenant {} (database {})",
                    tenant.code, tenant.database_name
                ),
            )
        }
        TenantCommand::List(args) => {
            let filter = TenantFilter {
                status: args.status,
                region: args.region,
                plan: args.plan,
                include_gone: args.all,
                ..TenantFilter::default()
            };
            let tenants = orchestrator.tenants(&filter).await?;
            print(json, &tenants, &tenant_table(&tenants))
        }
        TenantCommand::Show(CodeArg { code }) => {
            let tenant = orchestrator.tenant(&code).await?;
            print(json, &tenant, &tenant_details(&tenant))
        }
        TenantCommand::Suspend { code, reason } => {
            let tenant = orchestrator
                .suspend_tenant(&code, reason.as_deref())
                .await?;
            print(json, &tenant, &format!("suspended tenant {code}"))
        }
        TenantCommand::Resume(CodeArg { code }) => {
            let tenant = orchestrator.resume_tenant(&code).await?;
            print(json, &tenant, &format!("resumed tenant {code}"))
        }
        TenantCommand::Drop { code, confirm } => {
            if confirm != code.as_str() {
                return Err(crate::config::ConfigError {
                    variable: "--confirm",
                    problem: format!("must repeat the tenant code {code:?} to drop it"),
                }
                .into());
            }
            let tenant = orchestrator.drop_tenant(&code).await?;
            print(
                json,
                &tenant,
                &format!(
                    "dropped tenant {code}: database and role removed, catalog row kept as deleted"
                ),
            )
        }
        TenantCommand::Url(CodeArg { code }) => {
            let connection = orchestrator.tenant_connection(&code).await?;
            print(json, &connection, &connection.url)
        }
        TenantCommand::RotatePassword(CodeArg { code }) => {
            let tenant = orchestrator.rotate_tenant_password_as(&code, "cli").await?;
            let text = format!(
                "rotated the password of tenant {code} (generation {}); its old sessions were ended",
                tenant.password_generation
            );
            print(json, &tenant, &text)
        }
    }
}

async fn apikey(
    orchestrator: &Orchestrator,
    command: ApikeyCommand,
    json: bool,
) -> Result<(), Error> {
    let ApikeyCommand::Create {
        scope,
        tenant,
        name,
    } = command;
    let scope: crate::apikey::ApiKeyScope = scope.parse().map_err(
        |e: crate::apikey::InvalidScope| crate::config::ConfigError {
            variable: "--scope",
            problem: e.to_string(),
        },
    )?;
    let tenant_ok = (scope == crate::apikey::ApiKeyScope::Tenant) == tenant.is_some();
    if !tenant_ok {
        return Err(crate::config::ConfigError {
            variable: "--tenant",
            problem: "required with --scope tenant, refused with --scope admin".to_owned(),
        }
        .into());
    }
    orchestrator.init().await?;
    let issued = orchestrator
        .issue_api_key(&name, scope, tenant.as_ref())
        .await?;
    let text = format!(
        "created {scope} key {} ({}); its secret is shown once, store it now:\n{}",
        issued.record.id, issued.record.key_prefix, issued.secret
    );
    print(json, &crate::http::IssuedKey::from(issued), &text)
}

async fn dev(settings: &Settings, command: &DevCommand, json: bool) -> Result<(), Error> {
    let ServerSource::DevCluster(dir) = &settings.server else {
        return Err(crate::config::ConfigError {
            variable: "DATABASE_URL",
            problem: "is set, so no dev cluster is in use; unset it to use `tenantd dev`"
                .to_owned(),
        }
        .into());
    };
    let cluster = DevCluster::new(dir);
    match command {
        DevCommand::Start => {
            let url = cluster.start().await?;
            print(
                json,
                &serde_json::json!({ "url": url }),
                &format!("dev cluster running at {url}"),
            )
        }
        DevCommand::Stop => {
            let stopped = cluster.stop().await?;
            let text = if stopped {
                "dev cluster stopped"
            } else {
                "dev cluster was not running"
            };
            print(json, &serde_json::json!({ "stopped": stopped }), text)
        }
    }
}

fn print<T: Serialize>(json: bool, value: &T, text: &str) -> Result<(), Error> {
    if json {
        match serde_json::to_string_pretty(value) {
            Ok(doc) => println!("{doc}"),
            Err(e) => eprintln!("error: cannot serialise the result: {e}"),
        }
    } else {
        println!("{text}");
    }
    Ok(())
}

fn tenant_table(tenants: &[Tenant]) -> String {
    let mut out = format!(
        "{:<24} {:<12} {:<6} {:<10} {:>7}  {}\n",
        "CODE", "STATUS", "REGION", "PLAN", "SCHEMA", "NAME"
    );
    for t in tenants {
        let version = t
            .schema_version
            .map_or_else(|| "-".to_owned(), |v| v.to_string());
        out.push_str(&format!(
            "{:<24} {:<12} {:<6} {:<10} {:>7}  {}\n",
            t.code, t.status, t.region, t.plan, version, t.name
        ));
    }
    out.push_str(&format!("{} tenant(s)", tenants.len()));
    out
}

fn tenant_details(t: &Tenant) -> String {
    format!(
        "code:           {}\nid:             {}\nname:           {}\nstatus:         {}{}\nregion:         {}\nplan:           {}\nadmin email:    {}\ndatabase:       {}\nschema version: {}\ncreated:        {}\nupdated:        {}",
        t.code,
        t.id,
        t.name,
        t.status,
        t.status_reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default(),
        t.region,
        t.plan,
        t.admin_email.as_deref().unwrap_or("-"),
        t.database_name,
        t.schema_version
            .map_or_else(|| "-".to_owned(), |v| v.to_string()),
        t.created_at,
        t.updated_at
    )
}
