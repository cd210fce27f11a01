//! `migrate run`: AUTH, SHARED, the template, then every tenant database that
//! the catalog says is behind, with bounded concurrency, a canary phase and
//! stop-on-failure, under the run's catalog-wide advisory lock. Each
//! tenant is migrated under its life-cycle lock (so a drop or a create never
//! races it) and its database's migration lock (inside `MigrationSet::apply`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures::{StreamExt, stream};
use serde_json::json;
use uuid::Uuid;

use super::report::elapsed_ms;
use super::tenant::{RunContext, plan, skipped};
use super::{
    DatabaseResult, Fleet, FleetError, Outcome, RUN_OPERATION_KIND, RunObserver, RunOptions,
    RunSummary, TemplateResult, TenantResult,
};
use crate::catalog::{GlobalLock, TenantFilter};
use crate::migrate::{SchemaSet, history_version};
use crate::tenant::Tenant;

/// Why tenants were not started after a failure.
const STOPPED: &str =
    "not started: the run stopped after a failure (use --continue-on-error to go on)";
/// Why tenants were not started after a canary failed.
const CANARY_FAILED: &str = "not started: a canary tenant failed";

impl Fleet {
    /// Runs the migrations `options` ask for and reports each tenant to
    /// `observer` as it finishes. Two runs never overlap: the second waits
    /// for the first (then finds its tenants current in the catalog).
    #[tracing::instrument(skip_all, fields(sets = ?options.sets, dry_run = options.dry_run))]
    pub async fn run(
        &self,
        options: &RunOptions,
        observer: &dyn RunObserver,
    ) -> Result<RunSummary, FleetError> {
        let start = Instant::now();
        let lock = match options.dry_run {
            true => None,
            false => Some(self.catalog.lock_global(GlobalLock::FleetRun).await?),
        };
        let result = self.run_locked(options, observer, start).await;
        if let Some(lock) = lock {
            lock.release().await?;
        }
        result
    }

    async fn run_locked(
        &self,
        options: &RunOptions,
        observer: &dyn RunObserver,
        start: Instant,
    ) -> Result<RunSummary, FleetError> {
        let mut summary = RunSummary {
            dry_run: options.dry_run,
            ..RunSummary::default()
        };
        if options.sets.includes(SchemaSet::Auth) {
            let auth = self
                .migrate_database(SchemaSet::Auth, options.dry_run)
                .await?;
            summary.databases.push(auth);
        }
        if options.dry_run || !options.sets.includes(SchemaSet::Auth) {
            self.check_auth_current().await?;
        }
        let operation = match options.dry_run {
            true => None,
            false => Some(self.open_operation(options).await?),
        };
        let ctx = RunContext {
            options,
            operation,
            stop: AtomicBool::new(false),
        };
        let outcome = self.run_sets(&ctx, observer, &mut summary).await;
        summary.operation = operation;
        summary.elapsed_ms = elapsed_ms(start);
        if let Some(op) = operation {
            let error = match &outcome {
                Err(e) => Some(e.to_string()),
                Ok(()) if !summary.failed.is_empty() => {
                    Some(format!("{} tenant(s) failed", summary.failed.len()))
                }
                Ok(()) => None,
            };
            self.catalog
                .merge_operation_detail(op, &json!({ "summary": &summary }))
                .await?;
            self.catalog.finish_operation(op, error.as_deref()).await?;
        }
        outcome.map(|()| summary)
    }

    /// Writes the run's `operations` row, under the id the caller chose if any.
    async fn open_operation(&self, options: &RunOptions) -> Result<Uuid, FleetError> {
        let id = options.operation_id.unwrap_or_else(Uuid::now_v7);
        let detail = json!({ "options": options });
        self.catalog
            .insert_operation(id, None, RUN_OPERATION_KIND, &options.actor, detail)
            .await?;
        Ok(id)
    }

    async fn run_sets(
        &self,
        ctx: &RunContext<'_>,
        observer: &dyn RunObserver,
        summary: &mut RunSummary,
    ) -> Result<(), FleetError> {
        let dry_run = ctx.options.dry_run;
        if ctx.options.sets.includes(SchemaSet::Shared) {
            let shared = self.migrate_database(SchemaSet::Shared, dry_run).await?;
            summary.databases.push(shared);
        }
        if ctx.options.sets.includes(SchemaSet::Tenant) {
            // First the template: tenants created from now on are born current.
            let (name, built) = match dry_run {
                true => {
                    let status = self.template_status().await?;
                    (status.name, !status.present)
                }
                false => self.templates.ensure().await?,
            };
            summary.template = Some(TemplateResult { name, built });
            self.run_tenants(ctx, observer, summary).await?;
        }
        Ok(())
    }

    /// Migrates (or, dry, inspects) AUTH or SHARED.
    async fn migrate_database(
        &self,
        schema: SchemaSet,
        dry_run: bool,
    ) -> Result<DatabaseResult, FleetError> {
        let database = self.database_of(schema).to_owned();
        let set = self.set(schema);
        let mut client = self.server.connect(&database).await?;
        let (version, applied) = if dry_run {
            let history = set.history(&client, &database).await?;
            (history_version(&history), set.pending_in(&history))
        } else {
            let applied = set.apply(&mut client, &database, None).await?;
            (applied.current, applied.versions)
        };
        Ok(DatabaseResult {
            schema,
            database,
            version,
            applied,
        })
    }

    /// Refuses to touch tenants while the catalog's own schema is behind.
    async fn check_auth_current(&self) -> Result<(), FleetError> {
        let client = self.catalog.client().await?;
        let history = self.auth.history(&client, self.names.auth_db()).await?;
        let pending = self.auth.pending_in(&history);
        match pending.is_empty() {
            true => Ok(()),
            false => Err(FleetError::AuthBehind { pending }),
        }
    }

    async fn run_tenants(
        &self,
        ctx: &RunContext<'_>,
        observer: &dyn RunObserver,
        summary: &mut RunSummary,
    ) -> Result<(), FleetError> {
        let tenants = self.select_tenants(ctx.options).await?;
        let latest = self.tenant.latest_version();
        let (work, settled): (Vec<Tenant>, Vec<Tenant>) =
            tenants.into_iter().partition(|t| plan(t, latest).is_none());
        summary.tenants.total = work.len() + settled.len();
        observer.planned(summary.tenants.total);
        if let Some(op) = ctx.operation {
            let plan = json!({ "planned": work.len() + settled.len(), "to_migrate": work.len() });
            self.catalog.merge_operation_detail(op, &plan).await?;
        }
        for tenant in &settled {
            if let Some(result) = plan(tenant, latest) {
                self.record(ctx, tenant, &result).await;
                tally(summary, observer, result);
            }
        }
        if ctx.options.dry_run {
            for tenant in &work {
                tally(summary, observer, self.would_migrate(tenant));
            }
            return Ok(());
        }
        let canary = ctx.options.canary.min(work.len());
        let mut work = work.into_iter();
        if canary > 0 {
            let first: Vec<Tenant> = work.by_ref().take(canary).collect();
            self.execute(ctx, first, true, observer, summary).await;
            if ctx.stop.load(Ordering::SeqCst) {
                summary.stopped = Some("a canary tenant failed".to_owned());
                return self
                    .skip_all(ctx, work, CANARY_FAILED, observer, summary)
                    .await;
            }
        }
        let stop_on_failure = !ctx.options.continue_on_error;
        self.execute(ctx, work.collect(), stop_on_failure, observer, summary)
            .await;
        if ctx.stop.load(Ordering::SeqCst) {
            summary.stopped = Some("a tenant failed (use --continue-on-error to go on)".to_owned());
        }
        Ok(())
    }

    async fn select_tenants(&self, options: &RunOptions) -> Result<Vec<Tenant>, FleetError> {
        if options.tenants.is_empty() {
            return Ok(self.catalog.list(&TenantFilter::default()).await?);
        }
        let mut tenants = Vec::with_capacity(options.tenants.len());
        for code in &options.tenants {
            match self.catalog.tenant(code).await? {
                Some(tenant) => tenants.push(tenant),
                None => return Err(FleetError::UnknownTenant(code.clone())),
            }
        }
        Ok(tenants)
    }

    /// Migrates `batch` with bounded concurrency; with `stop_on_failure`, a
    /// failure stops tenants not started yet (those running finish).
    async fn execute(
        &self,
        ctx: &RunContext<'_>,
        batch: Vec<Tenant>,
        stop_on_failure: bool,
        observer: &dyn RunObserver,
        summary: &mut RunSummary,
    ) {
        let concurrency = self.concurrency(ctx.options.concurrency);
        let mut results = stream::iter(batch)
            .map(|tenant| async move {
                let result = match ctx.stop.load(Ordering::SeqCst) {
                    true => skipped(&tenant, STOPPED),
                    false => self.migrate_tenant(ctx, &tenant).await,
                };
                if result.outcome == Outcome::Failed && stop_on_failure {
                    ctx.stop.store(true, Ordering::SeqCst);
                }
                self.record(ctx, &tenant, &result).await;
                result
            })
            .buffer_unordered(concurrency);
        while let Some(result) = results.next().await {
            tally(summary, observer, result);
        }
    }

    async fn skip_all(
        &self,
        ctx: &RunContext<'_>,
        rest: impl Iterator<Item = Tenant>,
        reason: &str,
        observer: &dyn RunObserver,
        summary: &mut RunSummary,
    ) -> Result<(), FleetError> {
        for tenant in rest {
            let result = skipped(&tenant, reason);
            self.record(ctx, &tenant, &result).await;
            tally(summary, observer, result);
        }
        Ok(())
    }
}

fn tally(summary: &mut RunSummary, observer: &dyn RunObserver, result: TenantResult) {
    summary.tenants.count(result.outcome);
    if summary.tenants.total < summary.tenants.done {
        summary.tenants.total = summary.tenants.done;
    }
    if result.outcome == Outcome::Failed {
        summary.failed.push(result.tenant.clone());
    }
    observer.finished(&result);
}
