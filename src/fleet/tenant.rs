//! One tenant in a fleet run: the plan made from its catalog row alone
//! (already current, not migratable), and its migration under its
//! life-cycle lock — as the tenant's own role (`SET ROLE`), so new objects
//! belong to it and a migration can do nothing the tenant could not — with
//! the outcome recorded in the catalog (new version, or the error and the
//! quarantine). A tenant's failure is a result, never a run error.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::report::elapsed_ms;
use super::{Fleet, Outcome, RunOptions, TenantResult};
use crate::catalog::MigrationRecord;
use crate::pg_error::{Backoff, chain_is_transient, describe};
use crate::tenant::{Tenant, TenantStatus};

/// What every tenant task of one run shares.
pub(super) struct RunContext<'a> {
    pub(super) options: &'a RunOptions,
    pub(super) operation: Option<Uuid>,
    pub(super) stop: AtomicBool,
}

/// Connection attempts to a tenant database before it counts as failed.
const CONNECT_ATTEMPTS: u32 = 4;
/// Wait before the first retry, doubled up to [`CONNECT_BACKOFF_MAX`].
const CONNECT_BACKOFF: Duration = Duration::from_millis(250);
const CONNECT_BACKOFF_MAX: Duration = Duration::from_millis(750);

impl Fleet {
    /// Migrates one tenant under its life-cycle lock; never fails the run.
    #[tracing::instrument(skip_all, fields(tenant = %tenant.code))]
    pub(super) async fn migrate_tenant(
        &self,
        ctx: &RunContext<'_>,
        tenant: &Tenant,
    ) -> TenantResult {
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
        let mut client = match self.connect_patiently(database).await {
            Ok(client) => client,
            Err(e) => return self.fail(ctx, &tenant, None, describe(&e)).await,
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
                self.fail(ctx, &tenant, version, describe(&error)).await
            }
        }
    }

    /// Opens an admin connection to `database`, retrying a few times what
    /// [`crate::pg_error::is_transient`] calls transient: on a busy server a
    /// connection slot or a slow fork is a passing problem that must not
    /// quarantine a tenant.
    async fn connect_patiently(
        &self,
        database: &str,
    ) -> Result<tokio_postgres::Client, crate::server::ServerError> {
        let mut attempt = 0;
        let mut backoff = Backoff::new(CONNECT_BACKOFF, CONNECT_BACKOFF_MAX);
        loop {
            match self.server.connect(database).await {
                Ok(client) => return Ok(client),
                Err(error) if attempt + 1 < CONNECT_ATTEMPTS && chain_is_transient(&error) => {
                    attempt += 1;
                    tracing::debug!(%error, attempt, "cannot connect yet; retrying");
                    backoff.wait().await;
                }
                Err(error) => return Err(error),
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

    pub(super) fn would_migrate(&self, tenant: &Tenant) -> TenantResult {
        let mut result = skipped(tenant, "");
        result.outcome = Outcome::WouldMigrate;
        result.error = None;
        result.applied = self.tenant.pending_after(tenant.schema_version);
        result.to_version = Some(self.tenant.latest_version());
        result
    }

    /// Adds a tenant's result to the run's record (not for tenants already current).
    pub(super) async fn record(
        &self,
        ctx: &RunContext<'_>,
        tenant: &Tenant,
        result: &TenantResult,
    ) {
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
            outcome: result.outcome,
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
pub(super) fn plan(tenant: &Tenant, latest: i32) -> Option<TenantResult> {
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

pub(super) fn skipped(tenant: &Tenant, reason: &str) -> TenantResult {
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
