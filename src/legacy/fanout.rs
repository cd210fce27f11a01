//! The heart of `legacy run`: each société's rows of every tenant table,
//! streamed into its tenant database. Tenants go in parallel (bounded by
//! `run.parallel`); each is provisioned through the normal path, then its
//! tables are copied parents first, each in one target transaction that
//! first empties what an interrupted attempt left. A unit is recorded in
//! AUTH after its commit: a crash in between only means it is copied again.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use tokio::sync::Semaphore;
use tokio_postgres::Client;

use super::LegacyError;
use super::context::Ctx;
use super::copy::{self, TablePlan};
use super::graph::{Graph, owner_condition};
use super::schema::Schema;
use crate::catalog::RunTenant;
use crate::provision::ProvisionPath;
use crate::tenant::{NewTenant, TenantCode, TenantStatus};

/// Who the audit log names for tenants the run creates.
const ACTOR: &str = "legacy-run";
/// Tenants provisioned at the same time: each creation holds several
/// catalog connections (its advisory lock among them), and more concurrent
/// creations than the catalog pool can serve wait on each other forever.
const MAX_PARALLEL_PROVISIONING: usize = 4;

/// Provisions and fills every tenant; returns the rows copied.
pub(super) async fn copy_tenants(
    ctx: &Ctx<'_>,
    src: &Client,
    schema: &Schema,
    graph: &Graph,
    tenants: &[(RunTenant, String)],
) -> Result<u64, LegacyError> {
    let Some((first, name)) = tenants.first() else {
        return Ok(0);
    };
    // The first tenant is made alone: its database gives the target schema.
    provision(ctx, first, name).await?;
    let client = connect_tenant(ctx, &first.code).await?;
    let target = Schema::read(&client)
        .await
        .map_err(LegacyError::db("read the tenant schema"))?;
    let mut plans = graph
        .tenant_order
        .iter()
        .map(|t| TablePlan::new(t, schema, &target, graph.path(t)))
        .collect::<Result<Vec<_>, _>>()?;
    copy::load_secondary_indexes(&client, &mut plans).await?;
    drop(client);
    let names: Vec<&str> = plans.iter().map(|p| p.table.as_str()).collect();
    let in_source: HashSet<String> = copy::non_empty(src, &names).await?.into_iter().collect();
    ctx.observer.planned((plans.len() * tenants.len()) as u64);
    let provisioning = Semaphore::new(MAX_PARALLEL_PROVISIONING);
    let rows: Vec<u64> = futures::stream::iter(tenants.iter().map(|(tenant, name)| async {
        {
            let _permit = provisioning
                .acquire()
                .await
                .map_err(|e| LegacyError::Refused(format!("provisioning stopped: {e}")))?;
            provision(ctx, tenant, name).await?;
        }
        copy_tenant(ctx, tenant, &plans, &in_source).await
    }))
    .buffer_unordered(ctx.config.run.parallel)
    .try_collect()
    .await?;
    Ok(rows.iter().sum())
}

/// Creates the tenant unless it is active already.
async fn provision(ctx: &Ctx<'_>, tenant: &RunTenant, name: &str) -> Result<(), LegacyError> {
    let code = TenantCode::parse(&tenant.code).map_err(crate::Error::from)?;
    if let Ok(existing) = ctx.orchestrator.tenant(&code).await
        && existing.status == TenantStatus::Active
    {
        return Ok(());
    }
    let new = NewTenant::new(code, name);
    ctx.orchestrator
        .create_tenant_via(new, ProvisionPath::Template, ACTOR)
        .await?;
    Ok(())
}

async fn connect_tenant(ctx: &Ctx<'_>, code: &str) -> Result<Client, LegacyError> {
    let code = TenantCode::parse(code).map_err(crate::Error::from)?;
    Ok(ctx.orchestrator.tenant_admin_connection(&code).await?)
}

/// Connections for one tenant's copy: source and target, tuned for bulk work.
async fn connections(ctx: &Ctx<'_>, code: &str) -> Result<(Client, Client), LegacyError> {
    let src = ctx.source.connect().await?;
    // Tenants are copied side by side already: parallel workers per query
    // would only fight them for the same cores.
    src.batch_execute("SET max_parallel_workers_per_gather = 0")
        .await
        .map_err(LegacyError::db("set up a source connection"))?;
    let dst = connect_tenant(ctx, code).await?;
    // Foreign keys are checked by verify; skipping their triggers makes the
    // copy faster. Needs a superuser: without one, PostgreSQL checks them.
    let _ = dst
        .batch_execute("SET session_replication_role = replica")
        .await;
    // One server, one WAL: an asynchronous commit here is flushed before the
    // later AUTH record of it, so a crash never leaves a unit marked done
    // whose rows are lost.
    dst.batch_execute("SET synchronous_commit = off")
        .await
        .map_err(LegacyError::db("set up a tenant connection"))?;
    Ok((src, dst))
}

/// Copies one tenant's tables in order; each not-done table in its own transaction.
#[tracing::instrument(skip_all, fields(tenant = %tenant.code))]
async fn copy_tenant(
    ctx: &Ctx<'_>,
    tenant: &RunTenant,
    plans: &[TablePlan],
    in_source: &HashSet<String>,
) -> Result<u64, LegacyError> {
    let code = &tenant.code;
    let todo: Vec<&TablePlan> = plans
        .iter()
        .filter(|p| !ctx.done.contains(&(code.clone(), p.table.clone())))
        .collect();
    ctx.observer.advanced((plans.len() - todo.len()) as u64);
    // Tables empty in the whole source are done at once, for every tenant.
    let (todo, empty): (Vec<&TablePlan>, Vec<&TablePlan>) =
        todo.into_iter().partition(|p| in_source.contains(&p.table));
    let empty: Vec<String> = empty.iter().map(|p| p.table.clone()).collect();
    ctx.progress.mark_empty(code, &empty).await?;
    ctx.observer.advanced(empty.len() as u64);
    if todo.is_empty() {
        return Ok(0);
    }
    let (src, mut dst) = connections(ctx, code).await?;
    let names: Vec<&str> = todo.iter().map(|p| p.table.as_str()).collect();
    let leftovers: HashSet<String> = copy::non_empty(&dst, &names).await?.into_iter().collect();
    let mut total = 0;
    for plan in todo {
        ctx.observer.copying(code, &plan.table);
        let started = Instant::now();
        let condition = owner_condition(
            &plan.owner(),
            tenant.societe_key.as_deref(),
            tenant.takes_orphans,
        );
        let tx = dst
            .transaction()
            .await
            .map_err(LegacyError::db("open a tenant transaction"))?;
        let has_rows = leftovers.contains(&plan.table);
        let rows = copy::replace(&src, &tx, plan, Some(&condition), has_rows).await?;
        tx.commit()
            .await
            .map_err(LegacyError::db(format!("commit {} of {code}", plan.table)))?;
        tracing::debug!(table = %plan.table, rows, elapsed_us = started.elapsed().as_micros(), "table copied");
        let _copied = ctx.copied.fetch_add(1, Ordering::SeqCst) + 1;
        #[cfg(feature = "testing")]
        if ctx.options.crash_after_tables.is_some_and(|n| _copied >= n) {
            tracing::error!(
                copied = _copied,
                "legacy crash point reached: aborting the process"
            );
            std::process::abort();
        }
        ctx.progress
            .mark_done(code, &plan.table, i64::try_from(rows).unwrap_or(i64::MAX))
            .await?;
        ctx.observer.advanced(1);
        total += rows;
    }
    Ok(total)
}
