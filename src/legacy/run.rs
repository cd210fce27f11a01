//! `legacy run`: initialises AUTH and SHARED, copies users, provisions one
//! tenant per société (plus the default société) through the normal
//! provisioning path, links memberships, copies the shared tables, then
//! streams each société's rows of every tenant table into its database —
//! tenants in parallel (bounded), parents before children.
//!
//! Every unit of copy is recorded in AUTH when done; a unit not recorded is
//! emptied and copied again inside one target transaction, so a run killed
//! at any moment and started again ends with the same rows, none twice.
//!
//! Progress goes to a [`RunObserver`]; this module prints nothing (the
//! command line draws the bar).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde::Serialize;
use tokio_postgres::Client;

use super::context::Ctx;
pub use super::context::{NoProgress, RunObserver, RunOptions};
use super::copy::{self, TablePlan};
use super::graph::Graph;
use super::schema::Schema;
use super::{
    LegacyConfig, LegacyError, Source, SourceSociete, fanout, identity, infra, normalise_code,
    read_societes,
};
use crate::Orchestrator;
use crate::catalog::{AUTH_TARGET, LegacyRun, RunTenant, SHARED_TARGET};
use crate::ident::quote_ident;
use crate::tenant::TenantCode;

/// What `run` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    /// The source database.
    pub source: String,
    /// Tenant codes of the run.
    pub tenants: Vec<String>,
    /// Source users (all in AUTH).
    pub users: i64,
    /// Memberships linked.
    pub memberships: i64,
    /// Rows copied into SHARED by this invocation.
    pub shared_rows: u64,
    /// Tenant rows copied by this invocation.
    pub tenant_rows: u64,
    /// Units copied by this invocation.
    pub units_copied: usize,
    /// Units found done by an earlier invocation.
    pub units_resumed: usize,
    /// Wall time in milliseconds.
    pub elapsed_ms: u128,
}

/// Runs (or resumes) the split, reporting no progress.
pub async fn run(
    orchestrator: &Orchestrator,
    config: &LegacyConfig,
    options: &RunOptions,
) -> Result<RunReport, LegacyError> {
    run_observed(orchestrator, config, options, &NoProgress).await
}

/// Runs (or resumes) the split, reporting the copy's progress to `observer`.
#[tracing::instrument(skip_all)]
pub async fn run_observed(
    orchestrator: &Orchestrator,
    config: &LegacyConfig,
    options: &RunOptions,
    observer: &dyn RunObserver,
) -> Result<RunReport, LegacyError> {
    let started = Instant::now();
    let source = Source::new(config)?;
    let src = source.connect().await?;
    let schema = Schema::read(&src)
        .await
        .map_err(LegacyError::db("read the source schema"))?;
    let graph = Graph::classify(&schema, config);
    prepare_targets(orchestrator, config).await?;
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis(),
        "AUTH and SHARED ready"
    );
    let progress = orchestrator.legacy_run(&source.database);
    progress.start().await?;
    let done: HashSet<(String, String)> = progress.done().await?.into_keys().collect();
    let mut report = RunReport {
        source: source.database.clone(),
        units_resumed: done.len(),
        ..RunReport::default()
    };
    report.users = identity::copy_users(&src, orchestrator, config).await?;
    let tenants = plan_tenants(&src, config, &progress).await?;
    report.tenants = tenants.iter().map(|(t, _)| t.code.clone()).collect();
    let ctx = Ctx {
        orchestrator,
        config,
        source,
        progress,
        done,
        options,
        copied: AtomicUsize::new(0),
        observer,
    };
    report.shared_rows = copy_shared(&ctx, &src, &schema, &graph).await?;
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis(),
        "shared tables copied"
    );
    report.tenant_rows = fanout::copy_tenants(&ctx, &src, &schema, &graph, &tenants).await?;
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis(),
        "tenants provisioned and copied"
    );
    let ids = tenant_ids(orchestrator, &tenants).await?;
    report.memberships = identity::copy_memberships(&src, orchestrator, config, &ids).await?;
    ctx.progress
        .mark_done(AUTH_TARGET, "users", report.users)
        .await?;
    ctx.progress.finish().await?;
    report.units_copied = ctx.copied.load(Ordering::SeqCst);
    report.elapsed_ms = started.elapsed().as_millis();
    Ok(report)
}

/// Records what exists before the first attempt, then creates (or finds)
/// AUTH, SHARED and the template and finishes interrupted provisioning.
async fn prepare_targets(
    orchestrator: &Orchestrator,
    config: &LegacyConfig,
) -> Result<(), LegacyError> {
    let admin = orchestrator.admin_connection().await?;
    infra::remember_before(config, &admin, orchestrator.names()).await?;
    orchestrator.init().await?;
    orchestrator.reconcile().await?;
    Ok(())
}

/// The tenants of the run: one per source société plus the default société
/// (unless it is one of them). Recorded in AUTH before anything is created.
pub async fn plan_tenants(
    src: &Client,
    config: &LegacyConfig,
    progress: &LegacyRun,
) -> Result<Vec<(RunTenant, String)>, LegacyError> {
    let societes = read_societes(src, config).await?;
    let default = config.default_code()?;
    let mut tenants: Vec<(RunTenant, String)> = Vec::new();
    for societe in societes {
        let SourceSociete {
            key,
            code: raw,
            name,
        } = societe;
        let name = name.ok_or_else(|| {
            LegacyError::Refused(format!(
                "société {raw:?} has no {}; give it a name in the source",
                config.societe.name_column
            ))
        })?;
        let code = normalise_code(&raw);
        TenantCode::parse(&code).map_err(|e| {
            LegacyError::Refused(format!(
                "société {raw:?} gives tenant code {code:?}: {e}; rename it in the source"
            ))
        })?;
        if tenants.iter().any(|(t, _)| t.code == code) {
            return Err(LegacyError::Refused(format!(
                "two sociétés give the tenant code {code:?}; make their codes distinct in the source"
            )));
        }
        let takes_orphans = code == default.as_str();
        tenants.push((
            RunTenant {
                code,
                societe_key: Some(key),
                takes_orphans,
            },
            name,
        ));
    }
    if !tenants.iter().any(|(t, _)| t.takes_orphans) {
        let tenant = RunTenant {
            code: default.as_str().to_owned(),
            societe_key: None,
            takes_orphans: true,
        };
        tenants.push((tenant, config.default_societe.name.clone()));
    }
    for (tenant, _) in &tenants {
        progress.add_tenant(tenant).await?;
    }
    Ok(tenants)
}

/// Tenant ids by société key.
async fn tenant_ids(
    orchestrator: &Orchestrator,
    tenants: &[(RunTenant, String)],
) -> Result<HashMap<String, uuid::Uuid>, LegacyError> {
    let mut ids = HashMap::new();
    for (tenant, _) in tenants {
        if let Some(key) = &tenant.societe_key {
            let code = TenantCode::parse(&tenant.code).map_err(crate::Error::from)?;
            ids.insert(key.clone(), orchestrator.tenant(&code).await?.id);
        }
    }
    Ok(ids)
}

/// Replaces SHARED's copied tables with the source's rows, all in one transaction.
async fn copy_shared(
    ctx: &Ctx<'_>,
    src: &Client,
    schema: &Schema,
    graph: &Graph,
) -> Result<u64, LegacyError> {
    let tables = &graph.shared_order;
    if tables.is_empty()
        || tables
            .iter()
            .all(|t| ctx.done.contains(&(SHARED_TARGET.to_owned(), t.clone())))
    {
        return Ok(0);
    }
    let mut shared = ctx.orchestrator.shared_admin_connection().await?;
    let target = Schema::read(&shared)
        .await
        .map_err(LegacyError::db("read the SHARED schema"))?;
    let plans = tables
        .iter()
        .map(|t| TablePlan::new(t, schema, &target, &[]))
        .collect::<Result<Vec<_>, _>>()?;
    let tx = shared
        .transaction()
        .await
        .map_err(LegacyError::db("open a SHARED transaction"))?;
    let list: Vec<String> = tables.iter().map(|t| quote_ident(t)).collect();
    tx.batch_execute(&format!("TRUNCATE {}", list.join(", ")))
        .await
        .map_err(LegacyError::db("empty the SHARED tables (another SHARED table refers to them: classify it as shared too)"))?;
    let mut counts = Vec::new();
    for plan in &plans {
        counts.push(copy::stream(src, &tx, plan, None).await?);
    }
    tx.commit()
        .await
        .map_err(LegacyError::db("commit the SHARED copy"))?;
    for (table, rows) in tables.iter().zip(&counts) {
        ctx.progress
            .mark_done(
                SHARED_TARGET,
                table,
                i64::try_from(*rows).unwrap_or(i64::MAX),
            )
            .await?;
    }
    Ok(counts.iter().sum())
}
