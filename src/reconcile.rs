//! The reconciler: makes every interrupted life-cycle step either finish or
//! roll back, so that the server and the catalog agree again.
//!
//! - `provisioning` (a create that died): database and role are dropped, the
//!   row becomes `failed` — a half-built database is never trusted.
//! - `deleting` (a drop that died): the drop is completed, the row becomes `deleted`.
//! - `active` / `suspended`: the role's LOGIN flag is made to match the
//!   status (a suspend or resume that died between its two writes), and a row
//!   whose database has vanished becomes `failed`.
//!
//! A tenant whose lock is held is being worked on by a live process and is
//! left alone.
//!
//! Then every audit-log entry still `running` whose owner is gone is closed
//! as `failed`. Every such entry is written and closed while its process
//! holds an advisory lock on a session of its own — the tenant's life-cycle
//! lock for a tenant's operation, the fleet-run lock for a `migrate_run` —
//! and the server ends that session when the process dies. So an entry is
//! abandoned exactly when its lock can be taken: the reconciler takes it
//! (`pg_try_advisory_lock`), closes the entry if it is still `running`, and
//! releases it. An entry whose lock is held belongs to a live process and is
//! left alone.

use serde::Serialize;

use uuid::Uuid;

use crate::catalog::{Catalog, CatalogError, GlobalLock, OperationKind, RunningOperation};
use crate::provision::{ProvisionError, Provisioner};
use crate::tenant::{Tenant, TenantCode, TenantStatus};

/// What a reconcile pass did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ReconcileReport {
    /// Interrupted creates rolled back (now `failed`).
    pub rolled_back: Vec<TenantCode>,
    /// Interrupted drops completed (now `deleted`).
    pub completed_drops: Vec<TenantCode>,
    /// Roles whose LOGIN flag was corrected to match the status.
    pub login_fixed: Vec<TenantCode>,
    /// Rows whose database was missing (now `failed`).
    pub missing_database: Vec<TenantCode>,
    /// Tenants skipped because another process holds their lock.
    pub busy: Vec<TenantCode>,
    /// Audit-log entries left `running` by a process that died (now `failed`).
    pub abandoned_operations: Vec<Uuid>,
}

impl std::fmt::Display for ReconcileReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_clean() && self.busy.is_empty() {
            return f.write_str("nothing to repair");
        }
        let lines = [
            (
                "rolled back interrupted creates (now failed)",
                &self.rolled_back,
            ),
            (
                "completed interrupted drops (now deleted)",
                &self.completed_drops,
            ),
            ("LOGIN flag corrected to match status", &self.login_fixed),
            (
                "database or role missing (now failed)",
                &self.missing_database,
            ),
            ("skipped, being worked on by another process", &self.busy),
        ];
        let abandoned: Vec<String> = self
            .abandoned_operations
            .iter()
            .map(Uuid::to_string)
            .collect();
        let lines = lines
            .iter()
            .map(|(what, codes)| (*what, codes.iter().map(|c| c.to_string()).collect()))
            .chain([("operations whose process died (now failed)", abandoned)]);
        let mut first = true;
        for (what, codes) in lines.filter(|(_, codes): &(&str, Vec<String>)| !codes.is_empty()) {
            if !first {
                f.write_str("\n")?;
            }
            write!(f, "{what}: {}", codes.join(", "))?;
            first = false;
        }
        Ok(())
    }
}

impl ReconcileReport {
    /// True when nothing needed repair.
    pub fn is_clean(&self) -> bool {
        self.rolled_back.is_empty()
            && self.completed_drops.is_empty()
            && self.login_fixed.is_empty()
            && self.missing_database.is_empty()
            && self.abandoned_operations.is_empty()
    }
}

/// Runs one reconcile pass over every tenant that may need repair.
#[tracing::instrument(skip_all)]
pub async fn reconcile(provisioner: &Provisioner) -> Result<ReconcileReport, ProvisionError> {
    let catalog = provisioner.catalog();
    let mut report = ReconcileReport::default();
    let mut candidates = catalog
        .tenants_in(&[TenantStatus::Provisioning, TenantStatus::Deleting])
        .await?;
    candidates.extend(catalog.live_tenants_out_of_sync().await?);
    for tenant in candidates {
        let Some(lock) = provisioner.try_begin(&tenant.code).await? else {
            report.busy.push(tenant.code.clone());
            continue;
        };
        // Re-read under the lock: the row may have moved since the list was taken.
        let current = catalog.tenant_by_id(tenant.id).await?;
        let outcome = match current {
            Some(current) => repair(provisioner, &current, &mut report).await,
            None => Ok(()),
        };
        lock.release().await?;
        outcome?;
    }
    report.abandoned_operations = close_abandoned(catalog).await?;
    Ok(report)
}

/// Why the reconciler closes an entry.
const ABANDONED: &str = "the process running this operation ended before it finished; \
     marked failed by reconcile";

/// Closes the `running` entries whose lock nobody holds (see the module
/// documentation); returns their ids.
async fn close_abandoned(catalog: &Catalog) -> Result<Vec<Uuid>, CatalogError> {
    let mut closed = Vec::new();
    for operation in catalog.running_operations().await? {
        let Some(lock) = owner_lock(catalog, &operation).await? else {
            continue;
        };
        let outcome = catalog.fail_if_running(operation.id, ABANDONED).await;
        lock.release().await?;
        if outcome? {
            tracing::warn!(operation = %operation.id, tenant = operation.tenant_code.as_deref(),
                "closed an operation whose process died");
            closed.push(operation.id);
        }
    }
    Ok(closed)
}

/// The lock `operation`'s owner would hold, if it is free (its owner is
/// gone); `None` when it is held, or the entry is one this tenantd does
/// not know how to judge.
async fn owner_lock(
    catalog: &Catalog,
    operation: &RunningOperation,
) -> Result<Option<crate::catalog::CatalogLock>, CatalogError> {
    match (operation.kind, operation.tenant_code.as_deref()) {
        (Some(OperationKind::MigrateRun), _) => catalog.try_lock_global(GlobalLock::FleetRun).await,
        (Some(_), Some(code)) => match TenantCode::parse(code) {
            Ok(code) => catalog.try_lock_tenant(&code).await,
            Err(_) => Ok(None),
        },
        _ => Ok(None),
    }
}

async fn repair(
    provisioner: &Provisioner,
    tenant: &Tenant,
    report: &mut ReconcileReport,
) -> Result<(), ProvisionError> {
    let catalog = provisioner.catalog();
    match tenant.status {
        TenantStatus::Provisioning => {
            let admin = provisioner.admin().await?;
            provisioner.teardown(&admin, tenant).await?;
            let reason = "provisioning was interrupted; rolled back by reconcile";
            catalog
                .set_status(tenant.id, TenantStatus::Failed, Some(reason))
                .await?;
            let op = catalog
                .start_operation(
                    Some(tenant),
                    OperationKind::Reconcile,
                    "reconciler",
                    serde_json::json!({ "repair": "rollback_create" }),
                )
                .await?;
            catalog.finish_operation(op, None).await?;
            tracing::warn!(tenant = %tenant.code, "rolled back an interrupted create");
            report.rolled_back.push(tenant.code.clone());
        }
        TenantStatus::Deleting => {
            provisioner.finish_drop(tenant).await?;
            let op = catalog
                .start_operation(
                    Some(tenant),
                    OperationKind::Reconcile,
                    "reconciler",
                    serde_json::json!({ "repair": "complete_drop" }),
                )
                .await?;
            catalog.finish_operation(op, None).await?;
            tracing::warn!(tenant = %tenant.code, "completed an interrupted drop");
            report.completed_drops.push(tenant.code.clone());
        }
        TenantStatus::Active | TenantStatus::Suspended => {
            check_live(provisioner, tenant, report).await?
        }
        TenantStatus::Deleted | TenantStatus::Failed => {}
    }
    Ok(())
}

async fn check_live(
    provisioner: &Provisioner,
    tenant: &Tenant,
    report: &mut ReconcileReport,
) -> Result<(), ProvisionError> {
    const SQL: &str = "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1), \
                              (SELECT rolcanlogin FROM pg_roles WHERE rolname = $2)";
    let admin = provisioner.admin().await?;
    let row = admin
        .query_one(SQL, &[&tenant.database_name, &tenant.role_name()])
        .await?;
    let (db_exists, can_login): (bool, Option<bool>) = (row.try_get(0)?, row.try_get(1)?);
    if !db_exists || can_login.is_none() {
        if !db_exists {
            // No data left to protect: drop the orphaned role too, so the
            // code can be provisioned again.
            provisioner.teardown(&admin, tenant).await?;
        }
        let reason = if db_exists {
            "role missing on the server (database kept); found by reconcile"
        } else {
            "database missing on the server (role dropped); found by reconcile"
        };
        provisioner
            .catalog()
            .set_status(tenant.id, TenantStatus::Failed, Some(reason))
            .await?;
        tracing::error!(tenant = %tenant.code, "tenant database or role is missing; marked failed");
        report.missing_database.push(tenant.code.clone());
        return Ok(());
    }
    let should_login = tenant.status == TenantStatus::Active;
    if can_login != Some(should_login) {
        provisioner.set_login(&admin, tenant, should_login).await?;
        report.login_fixed.push(tenant.code.clone());
    }
    Ok(())
}
