//! `legacy rollback [--validate] [--force]`: undoes a run. It drops exactly
//! the databases and roles the run created — its tenants (through the normal
//! drop path), and AUTH, SHARED, the template and tenantd's private role
//! when they did not exist before the run's first attempt — never any other.
//! When `clean --execute` changed the source, the source is restored from the
//! backup. It refuses when a tenant has been written to since the split
//! (its checksum or count differs from the run's record) unless forced.

use std::path::PathBuf;

use serde::Serialize;
use tokio_postgres::Client;

use super::infra::{self, Infra};
use super::{LegacyConfig, LegacyError, Source, clean, identity, tools, verify};
use crate::Orchestrator;
use crate::catalog::{LegacyRun, RunTenant};
use crate::ident::quote_ident;
use crate::tenant::TenantCode;

/// What a rollback does (or would do, with `--validate`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RollbackPlan {
    /// Tenants whose database and role are dropped.
    pub tenants: Vec<String>,
    /// Other databases and roles dropped (created by the run).
    pub created: Infra,
    /// Tenant tables written to since the split (`tenant.table`).
    pub written_since_split: Vec<String>,
    /// The backup restored into the source, when `clean --execute` ran.
    pub restore_from: Option<PathBuf>,
    /// Whether the rollback was carried out.
    pub done: bool,
}

impl RollbackPlan {
    /// A readable summary.
    pub fn text(&self) -> String {
        format!(
            "{}: tenants {:?}; databases {:?}; roles {:?}; written since split {:?}; restore source from {}",
            if self.done {
                "rolled back"
            } else {
                "would roll back"
            },
            self.tenants,
            self.created.databases,
            self.created.roles,
            self.written_since_split,
            self.restore_from
                .as_ref()
                .map_or_else(|| "-".to_owned(), |p| p.display().to_string())
        )
    }
}

/// What rolling back would do; changes nothing.
pub async fn validate(
    orchestrator: &Orchestrator,
    config: &LegacyConfig,
) -> Result<RollbackPlan, LegacyError> {
    let Some(before) = infra::before(config)? else {
        return Err(LegacyError::Refused(format!(
            "no run of this config has started (no {}); nothing to roll back",
            infra::snapshot_path(config)?.display()
        )));
    };
    let names = orchestrator.names();
    let admin = orchestrator.admin_connection().await?;
    let mut plan = RollbackPlan {
        created: infra::created(&admin, names, &before).await?,
        restore_from: clean::executed_backup(config)?,
        ..RollbackPlan::default()
    };
    if database_exists(&admin, names.auth_db()).await? {
        let progress = orchestrator.legacy_run(&config.source_db()?);
        if progress.exists().await? {
            for tenant in progress.tenants().await? {
                let code = TenantCode::parse(&tenant.code).map_err(crate::Error::from)?;
                if database_exists(&admin, &names.tenant_db(&code)).await? {
                    plan.written_since_split
                        .extend(written(orchestrator, &progress, &tenant).await?);
                    plan.tenants.push(tenant.code);
                }
            }
        }
    }
    Ok(plan)
}

/// Tables of `tenant` whose content differs from the run's record.
async fn written(
    orchestrator: &Orchestrator,
    progress: &LegacyRun,
    tenant: &RunTenant,
) -> Result<Vec<String>, LegacyError> {
    let code = TenantCode::parse(&tenant.code).map_err(crate::Error::from)?;
    let client = orchestrator.tenant_admin_connection(&code).await?;
    let mut changed = Vec::new();
    for ((target, table), done) in progress.done().await? {
        if target != tenant.code {
            continue;
        }
        let (rows, checksum) = verify::fingerprint(&client, &table).await?;
        let same = rows == done.rows && done.checksum.is_none_or(|c| c == checksum);
        if !same {
            changed.push(format!("{target}.{table}"));
        }
    }
    changed.sort();
    Ok(changed)
}

/// Rolls the run back (see the module doc).
#[tracing::instrument(skip_all)]
pub async fn rollback(
    orchestrator: &Orchestrator,
    config: &LegacyConfig,
    force: bool,
) -> Result<RollbackPlan, LegacyError> {
    let mut plan = validate(orchestrator, config).await?;
    if !plan.written_since_split.is_empty() && !force {
        return Err(LegacyError::Refused(format!(
            "tenant tables were written to since the split ({}); rolling back would lose those writes. \
             Export them first, or pass --force",
            plan.written_since_split.join(", ")
        )));
    }
    let names = orchestrator.names().clone();
    for code in &plan.tenants {
        let code = TenantCode::parse(code).map_err(crate::Error::from)?;
        let live = orchestrator
            .tenant(&code)
            .await
            .is_ok_and(|t| t.status.is_live());
        if live {
            orchestrator.drop_tenant(&code).await?;
        }
    }
    let admin = orchestrator.admin_connection().await?;
    if !plan.created.databases.iter().any(|d| d == names.auth_db())
        && database_exists(&admin, names.auth_db()).await?
    {
        forget_in_auth(orchestrator, config).await?;
    }
    orchestrator.close();
    for db in &plan.created.databases {
        drop_database(&admin, db).await?;
    }
    for role in &plan.created.roles {
        admin
            .batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_ident(role)))
            .await
            .map_err(LegacyError::db(format!("drop role {role}")))?;
    }
    if let Some(dump) = &plan.restore_from {
        restore_source(config, dump).await?;
        clean::forget_execution(config)?;
    }
    let snapshot = infra::snapshot_path(config)?;
    std::fs::remove_file(&snapshot).map_err(LegacyError::io(&snapshot))?;
    plan.done = true;
    Ok(plan)
}

/// Removes the run's users and record from an AUTH that stays.
async fn forget_in_auth(
    orchestrator: &Orchestrator,
    config: &LegacyConfig,
) -> Result<(), LegacyError> {
    let src = Source::new(config)?.connect().await?;
    identity::delete_users(&src, orchestrator, config).await?;
    Ok(orchestrator
        .legacy_run(&config.source_db()?)
        .forget()
        .await?)
}

async fn database_exists(admin: &Client, name: &str) -> Result<bool, LegacyError> {
    Ok(admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(LegacyError::db("look up a database"))?
        .is_some())
}

async fn drop_database(admin: &Client, db: &str) -> Result<(), LegacyError> {
    crate::template::drop_database(admin, db)
        .await
        .map_err(LegacyError::db(format!("drop database {db}")))
}

/// Restores the source from the pre-migration backup, in one transaction.
async fn restore_source(config: &LegacyConfig, dump: &std::path::Path) -> Result<(), LegacyError> {
    let source = config.source_config()?;
    let conn = tools::conninfo(&source);
    let file = tools::arg(dump);
    let args = [
        "--clean",
        "--if-exists",
        "--single-transaction",
        "--no-owner",
        "-d",
        &conn,
        &file,
    ];
    tools::run("pg_restore", &args, &source).await?;
    Ok(())
}
