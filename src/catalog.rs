//! Every read and write of the AUTH database's catalog: tenants, operations
//! (the audit log) and the advisory locks that serialise work on one tenant
//! across every tenantd process sharing the catalog.
//!
//! SQL lives here as `const` strings with bind parameters; nothing else in the
//! crate queries the catalog tables.

use crate::error_kind::{Classify, ErrorKind};
use deadpool_postgres::{Object, Pool, PoolError};
use tokio_postgres::Row;
use uuid::Uuid;

mod fleet;

pub use fleet::{FleetRunRow, MigrationRecord, Outcome};

use crate::tenant::{NewTenant, Plan, Region, Tenant, TenantCode, TenantError, TenantStatus};

mod api_keys;
mod health;
mod legacy_runs;
mod locks;
mod operations;
mod read;
mod tenant_patch;
mod users;

pub use legacy_runs::{AUTH_TARGET, LegacyRun, RunTenant, SHARED_TARGET};
pub use locks::GlobalLock;
pub use operations::{
    OperationKind, OperationRow, OperationStatus, RunningOperation, UnknownValue,
};
pub use tenant_patch::TenantPatch;
pub use users::{ImportedMembership, ImportedUser};

use locks::{GLOBAL_LOCK_CLASS, TENANT_LOCK_CLASS};

/// A catalog read or write failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The AUTH database could not be reached.
    #[error(
        "cannot reach the AUTH database: {}; check DATABASE_URL and that `tenantd init` has run",
        crate::pg_error::describe(.0)
    )]
    Unavailable(#[source] PoolError),
    /// A live tenant already has this code.
    #[error("tenant {0} already exists")]
    AlreadyExists(TenantCode),
    /// A query failed.
    #[error("catalog query failed: {}", crate::pg_error::describe(.0))]
    Db(#[from] tokio_postgres::Error),
    /// A row holds a value tenantd does not understand.
    #[error("catalog row is invalid: {0}")]
    Corrupt(#[from] TenantError),
    /// A text column holds a value tenantd does not know.
    #[error(transparent)]
    Unknown(#[from] UnknownValue),
    /// A value to write breaks a field's limits (see `crate::tenant::check_name`, …).
    #[error("{0}")]
    Invalid(#[source] TenantError),
    /// A column's stored value cannot be decoded (its type, or a JSON
    /// document `serde_json` cannot read back).
    #[error(
        "cannot read {column} of {of} from the catalog: {}",
        crate::pg_error::describe(source)
    )]
    Unreadable {
        /// The column.
        column: &'static str,
        /// The row (`tenant acme`, `operation …`).
        of: String,
        /// The decoding error.
        #[source]
        source: tokio_postgres::Error,
    },
}

impl Classify for CatalogError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Unavailable(e) => e.kind(),
            Self::AlreadyExists(_) => ErrorKind::Conflict,
            Self::Invalid(_) => ErrorKind::InvalidInput,
            Self::Db(e) => e.kind(),
            Self::Corrupt(_) | Self::Unknown(_) | Self::Unreadable { .. } => ErrorKind::Internal,
        }
    }
}

impl From<PoolError> for CatalogError {
    fn from(error: PoolError) -> Self {
        // A pool only fails when no connection can be opened (or recycled).
        Self::Unavailable(error)
    }
}

/// Filters of `Catalog::list`.
#[derive(Debug, Clone, Default)]
pub struct TenantFilter {
    /// Only tenants in this status.
    pub status: Option<TenantStatus>,
    /// Only tenants in this region.
    pub region: Option<Region>,
    /// Only tenants on this plan.
    pub plan: Option<Plan>,
    /// Include deleted and failed tenants (default: only live ones).
    pub include_gone: bool,
    /// Only codes greater than this (cursor pagination).
    pub after: Option<TenantCode>,
    /// At most this many rows.
    pub limit: Option<i64>,
}

/// The tenant catalog in AUTH.
#[derive(Clone)]
pub struct Catalog {
    pool: Pool,
}

/// The statuses of gone tenants, as an SQL list (`status NOT IN …`); the
/// SQL twin of [`TenantStatus::is_live`].
const GONE_STATUSES: &str = "('deleted', 'failed')";

const TENANT_COLUMNS: &str = "id, code, name, region, plan, status, status_reason, admin_email, \
     settings, database_name, schema_version, created_at, updated_at, quarantined, migration_error, password_generation";

impl Catalog {
    /// A catalog over a pool of AUTH connections.
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// A pooled AUTH connection.
    pub async fn client(&self) -> Result<Object, CatalogError> {
        Ok(self.pool.get().await?)
    }

    /// Records a new tenant in `provisioning` together with the audit-log
    /// entry of its creation (one statement, one commit); fails with
    /// [`CatalogError::AlreadyExists`] if a live tenant has the code.
    pub async fn insert_provisioning(
        &self,
        new: &NewTenant,
        database_name: &str,
        actor: &str,
        detail: serde_json::Value,
    ) -> Result<(Tenant, Uuid), CatalogError> {
        new.validate().map_err(CatalogError::Invalid)?;
        crate::tenant::check_document("detail", &detail).map_err(CatalogError::Invalid)?;
        const SQL: &str = "WITH t AS ( \
               INSERT INTO tenants (id, code, name, region, plan, status, admin_email, database_name) \
               VALUES ($1, $2, $3, $4, $5, 'provisioning', $6, $7) RETURNING *), \
             o AS ( \
               INSERT INTO operations (id, tenant_id, tenant_code, kind, status, actor, detail) \
               SELECT $8, t.id, t.code, 'create', 'running', $9, $10 FROM t) \
             SELECT ";
        let (id, op) = (Uuid::now_v7(), Uuid::now_v7());
        let sql = format!("{SQL}{TENANT_COLUMNS} FROM t");
        let client = self.client().await?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 10] = [
            &id,
            &new.code.as_str(),
            &new.name,
            &new.region.as_str(),
            &new.plan.as_str(),
            &new.admin_email,
            &database_name,
            &op,
            &actor,
            &detail,
        ];
        let row = client.query_one(&sql, &params).await.map_err(|e| {
            match crate::pg_error::is_unique_violation(&e) {
                true => CatalogError::AlreadyExists(new.code.clone()),
                false => CatalogError::Db(e),
            }
        })?;
        Ok((tenant_from_row(&row)?, op))
    }

    /// The tenant with this code: the live one, else the newest gone one.
    pub async fn tenant(&self, code: &TenantCode) -> Result<Option<Tenant>, CatalogError> {
        let sql = format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE code = $1 \
             ORDER BY status IN {GONE_STATUSES}, created_at DESC LIMIT 1"
        );
        // Prepared once per connection: this lookup is on every request's path.
        let client = self.client().await?;
        let statement = client.prepare_cached(&sql).await?;
        let row = client.query_opt(&statement, &[&code.as_str()]).await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    /// The tenant with this id.
    pub async fn tenant_by_id(&self, id: Uuid) -> Result<Option<Tenant>, CatalogError> {
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1");
        let row = self.client().await?.query_opt(&sql, &[&id]).await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    /// Tenants matching `filter`, ordered by code.
    pub async fn list(&self, filter: &TenantFilter) -> Result<Vec<Tenant>, CatalogError> {
        let sql = format!(
            "SELECT {TENANT_COLUMNS} FROM tenants \
             WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR region = $2) \
               AND ($3::text IS NULL OR plan = $3) AND ($4 OR status NOT IN {GONE_STATUSES}) \
               AND ($5::text IS NULL OR code > $5) \
             ORDER BY code, created_at LIMIT $6"
        );
        let rows = self
            .client()
            .await?
            .query(
                &sql,
                &[
                    &filter.status.map(TenantStatus::as_str),
                    &filter.region.map(Region::as_str),
                    &filter.plan.map(Plan::as_str),
                    &(filter.include_gone || filter.status.is_some()),
                    &filter.after.as_ref().map(TenantCode::as_str),
                    &filter.limit,
                ],
            )
            .await?;
        rows.iter().map(tenant_from_row).collect()
    }

    /// Tenants in any of `statuses` (the reconciler's work list).
    pub async fn tenants_in(&self, statuses: &[TenantStatus]) -> Result<Vec<Tenant>, CatalogError> {
        let wanted: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
        let sql = format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE status = ANY($1) ORDER BY created_at"
        );
        let rows = self.client().await?.query(&sql, &[&wanted]).await?;
        rows.iter().map(tenant_from_row).collect()
    }

    /// Active and suspended tenants whose database or role is missing, or
    /// whose role's LOGIN flag disagrees with the status (one query: the
    /// server's `pg_database` and `pg_roles` are visible from AUTH).
    pub async fn live_tenants_out_of_sync(&self) -> Result<Vec<Tenant>, CatalogError> {
        let columns = TENANT_COLUMNS
            .split(", ")
            .map(|c| format!("t.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {columns} FROM tenants t \
             LEFT JOIN pg_database d ON d.datname = t.database_name \
             LEFT JOIN pg_roles r ON r.rolname = t.database_name \
             WHERE t.status IN ('active', 'suspended') \
               AND (d.oid IS NULL OR r.oid IS NULL OR r.rolcanlogin <> (t.status = 'active'))"
        );
        let rows = self.client().await?.query(&sql, &[]).await?;
        rows.iter().map(tenant_from_row).collect()
    }

    /// Bumps a live tenant's password generation; `None` if it is gone.
    pub async fn bump_password_generation(&self, id: Uuid) -> Result<Option<Tenant>, CatalogError> {
        let sql = format!(
            "UPDATE tenants SET password_generation = password_generation + 1, updated_at = now() \
             WHERE id = $1 AND status NOT IN {GONE_STATUSES} RETURNING {TENANT_COLUMNS}"
        );
        let row = self.client().await?.query_opt(&sql, &[&id]).await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    /// Moves a tenant to `status` with an optional reason.
    pub async fn set_status(
        &self,
        id: Uuid,
        status: TenantStatus,
        reason: Option<&str>,
    ) -> Result<(), CatalogError> {
        const SQL: &str =
            "UPDATE tenants SET status = $2, status_reason = $3, updated_at = now() WHERE id = $1";
        if let Some(reason) = reason {
            crate::tenant::check_reason(reason).map_err(CatalogError::Invalid)?;
        }
        self.client()
            .await?
            .execute(SQL, &[&id, &status.as_str(), &reason])
            .await?;
        Ok(())
    }

    /// Marks a provisioned tenant active at `schema_version` and closes the
    /// creation's audit-log entry `op` (one statement, one commit).
    pub async fn activate(
        &self,
        id: Uuid,
        schema_version: Option<i32>,
        op: Uuid,
    ) -> Result<Tenant, CatalogError> {
        const SQL: &str = "WITH o AS ( \
               UPDATE operations SET status = 'succeeded', finished_at = now() WHERE id = $3) \
             UPDATE tenants SET status = 'active', status_reason = NULL, schema_version = $2, \
               updated_at = now() WHERE id = $1 RETURNING ";
        let sql = format!("{SQL}{TENANT_COLUMNS}");
        let row = self
            .client()
            .await?
            .query_one(&sql, &[&id, &schema_version, &op])
            .await?;
        tenant_from_row(&row)
    }

    /// Starts an audit-log entry for a life-cycle action.
    pub async fn start_operation(
        &self,
        tenant: Option<&Tenant>,
        kind: OperationKind,
        actor: &str,
        detail: serde_json::Value,
    ) -> Result<Uuid, CatalogError> {
        let id = Uuid::now_v7();
        self.insert_operation(id, tenant, kind, actor, detail)
            .await?;
        Ok(id)
    }

    /// Closes an audit-log entry with its outcome.
    pub async fn finish_operation(
        &self,
        id: Uuid,
        error: Option<&str>,
    ) -> Result<(), CatalogError> {
        const SQL: &str =
            "UPDATE operations SET status = $2, error = $3, finished_at = now() WHERE id = $1";
        let status = match error {
            Some(_) => OperationStatus::Failed,
            None => OperationStatus::Succeeded,
        };
        // An error message may quote a client's value; `text` refuses NUL.
        let error = error.map(without_nul);
        self.client()
            .await?
            .execute(SQL, &[&id, &status.as_str(), &error])
            .await?;
        Ok(())
    }

    /// Waits for the tenant's life-cycle lock.
    pub async fn lock_tenant(&self, code: &TenantCode) -> Result<CatalogLock, CatalogError> {
        let client = self.client().await?;
        client
            .execute(
                "SELECT pg_advisory_lock($1, hashtext($2))",
                &[&TENANT_LOCK_CLASS, &code.as_str()],
            )
            .await?;
        Ok(CatalogLock {
            client: Some(client),
            key: LockKey::Tenant(code.as_str().to_owned()),
        })
    }

    /// Takes the tenant's life-cycle lock if nobody holds it.
    pub async fn try_lock_tenant(
        &self,
        code: &TenantCode,
    ) -> Result<Option<CatalogLock>, CatalogError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT pg_try_advisory_lock($1, hashtext($2)) AS locked",
                &[&TENANT_LOCK_CLASS, &code.as_str()],
            )
            .await?;
        let locked: bool = read::RowReader::new(&row, "pg_try_advisory_lock").get("locked")?;
        Ok(locked.then(|| CatalogLock {
            client: Some(client),
            key: LockKey::Tenant(code.as_str().to_owned()),
        }))
    }

    /// Waits for a catalog-wide lock.
    pub async fn lock_global(&self, lock: GlobalLock) -> Result<CatalogLock, CatalogError> {
        let object = lock.id();
        let client = self.client().await?;
        client
            .execute(
                "SELECT pg_advisory_lock($1, $2::int4)",
                &[&GLOBAL_LOCK_CLASS, &object],
            )
            .await?;
        Ok(CatalogLock {
            client: Some(client),
            key: LockKey::Global(object),
        })
    }
}

/// `text` with its NUL characters replaced (PostgreSQL's `text` refuses
/// them): for messages tenantd records, which may quote anything.
pub(crate) fn without_nul(text: &str) -> std::borrow::Cow<'_, str> {
    match text.contains('\0') {
        true => text.replace('\0', "\u{FFFD}").into(),
        false => text.into(),
    }
}

impl Catalog {
    /// Takes a catalog-wide lock if nobody holds it.
    pub async fn try_lock_global(
        &self,
        lock: GlobalLock,
    ) -> Result<Option<CatalogLock>, CatalogError> {
        let object = lock.id();
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2::int4) AS locked",
                &[&GLOBAL_LOCK_CLASS, &object],
            )
            .await?;
        let locked: bool = read::RowReader::new(&row, "pg_try_advisory_lock").get("locked")?;
        Ok(locked.then(|| CatalogLock {
            client: Some(client),
            key: LockKey::Global(object),
        }))
    }
}

/// Which advisory lock a [`CatalogLock`] holds.
enum LockKey {
    /// A tenant's life-cycle lock, keyed by its code.
    Tenant(String),
    /// A catalog-wide lock.
    Global(i32),
}

impl LockKey {
    async fn unlock(&self, client: &Object) -> Result<u64, tokio_postgres::Error> {
        match self {
            Self::Tenant(code) => {
                client
                    .execute(
                        "SELECT pg_advisory_unlock($1, hashtext($2))",
                        &[&TENANT_LOCK_CLASS, code],
                    )
                    .await
            }
            Self::Global(object) => {
                client
                    .execute(
                        "SELECT pg_advisory_unlock($1, $2::int4)",
                        &[&GLOBAL_LOCK_CLASS, object],
                    )
                    .await
            }
        }
    }
}

/// A session-level advisory lock on a dedicated AUTH connection. Release it
/// with [`CatalogLock::release`]; if it is dropped instead (an error path, a
/// panic), its connection is closed, which releases the lock too.
pub struct CatalogLock {
    client: Option<Object>,
    key: LockKey,
}

impl CatalogLock {
    /// Releases the lock and returns its connection to the pool.
    pub async fn release(mut self) -> Result<(), CatalogError> {
        let Some(client) = self.client.take() else {
            return Ok(());
        };
        let unlocked = self.key.unlock(&client).await;
        if unlocked.is_err() {
            drop(Object::take(client));
        }
        unlocked.map(|_| ()).map_err(CatalogError::from)
    }
}

impl Drop for CatalogLock {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Closing the session is the only synchronous way to release the lock.
            drop(Object::take(client));
        }
    }
}

fn tenant_from_row(row: &Row) -> Result<Tenant, CatalogError> {
    let mut r = read::RowReader::new(row, "a tenant row");
    let code = TenantCode::parse(r.get("code")?)?;
    r.describe(format!("tenant {code}"));
    Ok(Tenant {
        id: r.get("id")?,
        name: r.get("name")?,
        region: r.get::<&str>("region")?.parse()?,
        plan: r.get::<&str>("plan")?.parse()?,
        status: r.get::<&str>("status")?.parse()?,
        status_reason: r.get("status_reason")?,
        admin_email: r.get("admin_email")?,
        settings: r.get("settings")?,
        database_name: r.get("database_name")?,
        schema_version: r.get("schema_version")?,
        quarantined: r.get("quarantined")?,
        migration_error: r.get("migration_error")?,
        password_generation: r.get("password_generation")?,
        created_at: r.get("created_at")?,
        updated_at: r.get("updated_at")?,
        code,
    })
}
