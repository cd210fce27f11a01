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
use super::{
    DatabaseResult, FLEET_RUN_LOCK, Fleet, FleetError, Outcome, RUN_OPERATION_KIND, RunObserver,
    RunOptions, RunSummary, TemplateResult, TenantResult,
};
use crate::catalog::{MigrationRecord, TenantFilter};
use crate::migrate::{SchemaSet, history_version};
use crate::tenant::{Tenant, TenantStatus};

/// Why tenants were not started after a failure.
const STOPPED: &str =
    "not started: the run stopped after a failure (use --continue-on-error to go on)";
/// Why tenants were not started after a canary failed.
const CANARY_FAILED: &str = "not started: a canary tenant failed";

/// What every tenant task of one run shares.
struct RunContext<'a> {
    options: &'a RunOptions,
    operation: Option<Uuid>,
    stop: AtomicBool,
}

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
            false => Some(self.catalog.lock_global(FLEET_RUN_LOCK).await?),
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
            false => Some(
                self.catalog
                    .start_operation(
                        None,
                        RUN_OPERATION_KIND,
                        &options.actor,
                        json!({ "options": options }),
                    )
                    .await?,
            ),
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
        observer.planned(work.len() + settled.len());
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

    /// Migrates one tenant under its life-cycle lock; never fails the run.
    #[tracing::instrument(skip_all, fields(tenant = %tenant.code))]
    async fn migrate_tenant(&self, ctx: &RunContext<'_>, tenant: &Tenant) -> TenantResult {
        let start = Instant::now();
        let mut result = match self.catalog.lock_tenant(&tenant.code).await {
            Ok(lock) => {
                let result = self.migrate_locked(ctx, tenant).await;
                if let Err(error) = lock.release().await {
                    tracing::warn!(%error, "could not release the tenant lock; its connection is closed");
                }
                result
            }
            Err(error) => failed(
                tenant,
                None,
                format!("cannot lock the tenant: {error}"),
                false,
            ),
        };
        result.elapsed_ms = elapsed_ms(start);
        if result.outcome == Outcome::Failed {
            tracing::warn!(error = result.error.as_deref(), "tenant migration failed");
        }
        result
    }

    async fn migrate_locked(&self, ctx: &RunContext<'_>, tenant: &Tenant) -> TenantResult {
        // Re-read under the lock: the tenant may have moved since the plan.
        let tenant = match self.catalog.tenant_by_id(tenant.id).await {
            Ok(Some(current)) => current,
            Ok(None) => return skipped(tenant, "the tenant vanished from the catalog"),
            Err(e) => return failed(tenant, None, e.to_string(), false),
        };
        if let Some(settled) = plan(&tenant, self.tenant.latest_version()) {
            return settled;
        }
        let database = &tenant.database_name;
        let mut client = match self.server.connect(database).await {
            Ok(client) => client,
            Err(e) => return self.fail(ctx, &tenant, None, error_chain(&e)).await,
        };
        match self
            .tenant
            .apply(&mut client, database, Some(tenant.role_name()))
            .await
        {
            Ok(applied) => {
                if let Err(e) = self
                    .catalog
                    .record_migrated(tenant.id, applied.current)
                    .await
                {
                    let error = format!("migrated, but the catalog was not updated: {e}");
                    return failed(&tenant, applied.current, error, tenant.quarantined);
                }
                let mut result = skipped(&tenant, "");
                result.outcome = match applied.versions.is_empty() {
                    true => Outcome::Current,
                    false => Outcome::Migrated,
                };
                result.error = None;
                result.to_version = applied.current;
                result.applied = applied.versions;
                result
            }
            Err(error) => {
                let version = self.tenant.current_version(&mut client, database).await;
                let version = version.ok().flatten().or(tenant.schema_version);
                self.fail(ctx, &tenant, version, error_chain(&error)).await
            }
        }
    }

    /// Records a failed migration (and the quarantine) in the catalog.
    async fn fail(
        &self,
        ctx: &RunContext<'_>,
        tenant: &Tenant,
        version: Option<i32>,
        error: String,
    ) -> TenantResult {
        let quarantine = ctx.options.quarantine;
        match self
            .catalog
            .record_migration_failed(tenant.id, version, &error, quarantine)
            .await
        {
            Ok(()) => failed(tenant, version, error, quarantine),
            Err(e) => failed(
                tenant,
                version,
                format!("{error}; recording the failure in the catalog failed too: {e}"),
                tenant.quarantined,
            ),
        }
    }

    fn would_migrate(&self, tenant: &Tenant) -> TenantResult {
        let mut result = skipped(tenant, "");
        result.outcome = Outcome::WouldMigrate;
        result.error = None;
        result.applied = self.tenant.pending_after(tenant.schema_version);
        result.to_version = Some(self.tenant.latest_version());
        result
    }

    /// Adds a tenant's result to the run's record (not for tenants already current).
    async fn record(&self, ctx: &RunContext<'_>, tenant: &Tenant, result: &TenantResult) {
        let Some(operation) = ctx.operation else {
            return;
        };
        if result.outcome == Outcome::Current {
            return;
        }
        let record = MigrationRecord {
            operation,
            tenant_id: tenant.id,
            tenant_code: tenant.code.as_str(),
            outcome: result.outcome.as_str(),
            from_version: result.from_version,
            to_version: result.to_version,
            applied: &result.applied,
            error: result.error.as_deref(),
            elapsed_ms: i32::try_from(result.elapsed_ms).unwrap_or(i32::MAX),
        };
        if let Err(error) = self.catalog.record_fleet_result(&record).await {
            tracing::warn!(tenant = %tenant.code, %error, "could not record the tenant's result of the run");
        }
    }
}

/// The result of a tenant that needs no connection, or `None` when it must be migrated.
fn plan(tenant: &Tenant, latest: i32) -> Option<TenantResult> {
    if !matches!(
        tenant.status,
        TenantStatus::Active | TenantStatus::Suspended
    ) {
        let reason = format!(
            "tenant is {}: only active and suspended tenants are migrated",
            tenant.status
        );
        return Some(skipped(tenant, &reason));
    }
    match tenant.schema_version {
        Some(v) if v > latest => Some(skipped(
            tenant,
            &format!(
                "its schema (V{v}) is newer than the migration files (V{latest}): is this tenantd older than the database?"
            ),
        )),
        Some(v) if v == latest && !tenant.quarantined => {
            let mut result = skipped(tenant, "");
            result.outcome = Outcome::Current;
            result.error = None;
            Some(result)
        }
        _ => None,
    }
}

fn skipped(tenant: &Tenant, reason: &str) -> TenantResult {
    TenantResult {
        tenant: tenant.code.clone(),
        database: tenant.database_name.clone(),
        outcome: Outcome::Skipped,
        from_version: tenant.schema_version,
        to_version: tenant.schema_version,
        applied: Vec::new(),
        error: Some(reason.to_owned()),
        quarantined: tenant.quarantined,
        elapsed_ms: 0,
    }
}

fn failed(tenant: &Tenant, version: Option<i32>, error: String, quarantined: bool) -> TenantResult {
    TenantResult {
        outcome: Outcome::Failed,
        to_version: version,
        error: Some(error),
        quarantined,
        ..skipped(tenant, "")
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

/// An error and its sources on one line (the driver's "db error" alone
/// would hide PostgreSQL's message).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}
