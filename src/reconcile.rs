//! The reconciler: makes every interrupted life-cycle step either finish or
//! roll back, so that the server and the catalog agree again.
//!
//! - `provisioning` (a create that died): database and role are dropped, the
//!   row becomes `failed` — a half-built database is never trusted.
//! - `deleting` (a drop that died): the drop is completed, the row becomes `deleted`.
//! - `active` / `suspended`: the role's LOGIN flag is made to match the
//!   status (a suspend or resume that died between its two writes), a row
//!   whose database has vanished becomes `failed`, and whatever differs from
//!   what tenantd relies on (`provision::shape`: a password or role setting
//!   the tenant changed, a sealed database…) is put back.
//!
//! A tenant whose lock is held is being worked on by a live process and is
//! left alone. A tenant that cannot be repaired is reported in
//! [`ReconcileReport::broken`] and the pass goes on with the others: one
//! broken tenant never stops a reconcile, nor `serve`, which runs one at
//! start. Only an unreachable server or catalog stops the pass.
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
use crate::error_kind::{Classify, ErrorKind};
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
    /// Tenants whose database or role had drifted from what tenantd relies
    /// on, and what was put back.
    pub drift_repaired: Vec<DriftRepair>,
    /// Tenants this pass could not repair (it went on with the others).
    pub broken: Vec<BrokenTenant>,
}

/// A tenant whose database or role was put back in shape.
#[derive(Debug, Clone, Serialize)]
pub struct DriftRepair {
    /// The tenant.
    pub code: TenantCode,
    /// What had drifted (e.g. "role password", "role-level settings").
    pub repaired: Vec<String>,
}

/// A tenant reconcile could not repair.
#[derive(Debug, Clone, Serialize)]
pub struct BrokenTenant {
    /// The tenant.
    pub code: TenantCode,
    /// Why, with PostgreSQL's message.
    pub error: String,
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
        let drift: Vec<String> = self
            .drift_repaired
            .iter()
            .map(|d| format!("{} ({})", d.code, d.repaired.join(", ")))
            .collect();
        let broken: Vec<String> = self
            .broken
            .iter()
            .map(|b| format!("{} ({})", b.code, b.error))
            .collect();
        let lines = lines.chain([
            ("put back in shape", drift),
            (
                "COULD NOT REPAIR (see the errors; reconcile went on)",
                broken,
            ),
        ]);
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
            && self.drift_repaired.is_empty()
            && self.broken.is_empty()
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
    candidates.extend(live_tenants_needing_work(provisioner).await?);
    for tenant in candidates {
        let Some(lock) = provisioner.try_begin(&tenant.code).await? else {
            report.busy.push(tenant.code.clone());
            continue;
        };
        // Re-read under the lock: the row may have moved since the list was taken.
        let outcome = match catalog.tenant_by_id(tenant.id).await {
            Ok(Some(current)) => repair(provisioner, &current, &mut report).await,
            Ok(None) => Ok(()),
            Err(e) => Err(e.into()),
        };
        lock.release().await?;
        match outcome {
            Ok(()) => {}
            // Nothing else can be repaired either: the pass stops.
            Err(error) if error.kind() == ErrorKind::Unavailable => return Err(error),
            Err(error) => {
                let error = crate::pg_error::describe(&error);
                tracing::error!(tenant = %tenant.code, %error,
                    "reconcile cannot repair this tenant; going on with the others");
                report.broken.push(BrokenTenant {
                    code: tenant.code.clone(),
                    error,
                });
            }
        }
    }
    report.abandoned_operations = close_abandoned(catalog).await?;
    Ok(report)
}

/// Live tenants whose database or role is missing, whose LOGIN flag is
/// wrong, or whose database or role has drifted from its shape (read
/// without the tenant's lock; repairs re-read under it).
async fn live_tenants_needing_work(
    provisioner: &Provisioner,
) -> Result<Vec<Tenant>, ProvisionError> {
    let catalog = provisioner.catalog();
    let out_of_sync = catalog.live_tenants_out_of_sync().await?;
    let live = catalog
        .tenants_in(&[TenantStatus::Active, TenantStatus::Suspended])
        .await?;
    let admin = provisioner.admin().await?;
    let mut needing = Vec::new();
    for tenant in live {
        let drifted = out_of_sync.iter().any(|t| t.id == tenant.id)
            || !provisioner
                .shape()
                .inspect(&admin, &tenant, &provisioner.role_password(&tenant))
                .await?
                .is_empty();
        if drifted {
            needing.push(tenant);
        }
    }
    Ok(needing)
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
    repair_drift(provisioner, &admin, tenant, report).await
}

/// Puts the tenant's database and role back in shape, if they drifted.
async fn repair_drift(
    provisioner: &Provisioner,
    admin: &deadpool_postgres::Object,
    tenant: &Tenant,
    report: &mut ReconcileReport,
) -> Result<(), ProvisionError> {
    let shape = provisioner.shape();
    let password = provisioner.role_password(tenant);
    let drift = shape.inspect(admin, tenant, &password).await?;
    if drift.is_empty() {
        return Ok(());
    }
    let repaired: Vec<String> = drift.iter().map(ToString::to_string).collect();
    tracing::warn!(tenant = %tenant.code, ?repaired, "tenant database or role drifted; putting it back");
    shape
        .repair(provisioner.server(), admin, tenant, &password, &drift)
        .await?;
    let catalog = provisioner.catalog();
    let op = catalog
        .start_operation(
            Some(tenant),
            OperationKind::Reconcile,
            "reconciler",
            serde_json::json!({ "repair": "drift", "drift": repaired }),
        )
        .await?;
    catalog.finish_operation(op, None).await?;
    report.drift_repaired.push(DriftRepair {
        code: tenant.code.clone(),
        repaired,
    });
    Ok(())
}
