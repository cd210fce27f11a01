//! The tenant life cycle as a persisted state machine:
//! `provisioning → active ⇄ suspended → deleting → deleted` (or `failed`).
//!
//! Every step that touches the server runs under the tenant's advisory lock,
//! and the catalog row is written *before* a database or role exists and
//! marked `deleted` only *after* they are gone — so an interrupted step always
//! leaves a row that [`crate::reconcile`] can finish or undo. This module does
//! not decide when to reconcile, and never touches another tenant's objects.
//!
//! What a tenant's database and role must look like so that the tenant
//! cannot change what tenantd relies on is stated in [`shape`].

mod adopt;
mod rotate;
pub(crate) mod shape;

use crate::error_kind::{Classify, ErrorKind};
use std::sync::Arc;

use deadpool_postgres::{Object, Pool};
use serde_json::json;

use crate::catalog::{Catalog, CatalogError, CatalogLock, OperationKind};
use crate::ident::quote_ident;
use crate::migrate::{MigrateError, MigrationSet};
use crate::names::Names;
use crate::secret::MasterSecret;
use crate::server::{Server, ServerError};
use crate::template::{TemplateError, TemplateKeeper};
use crate::tenant::{NewTenant, Tenant, TenantCode, TenantStatus};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A life-cycle step failed or was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// No tenant has this code.
    #[error("unknown tenant {0}; `tenantd tenant list` shows the existing ones")]
    NotFound(TenantCode),
    /// A live tenant has this code.
    #[error("tenant {0} already exists")]
    AlreadyExists(TenantCode),
    /// A database or role of that name exists on the server but not in the catalog.
    #[error(
        "{kind} {name:?} already exists on the server but belongs to no tenant in the catalog; \
         tenantd will not touch it: drop it by hand or choose another code"
    )]
    NameTaken {
        /// "database" or "role".
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// The tenant is not in a status that allows the action.
    #[error("tenant {code} is {status}; cannot {action} it")]
    WrongStatus {
        /// The tenant.
        code: TenantCode,
        /// Its status.
        status: TenantStatus,
        /// What was asked.
        action: &'static str,
    },
    /// The process is shutting down and takes no new life-cycle work.
    #[error("tenantd is shutting down; retry the operation on another instance or after restart")]
    ShuttingDown,
    /// A catalog read or write failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The template could not be built.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// The tenant migrations failed.
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    /// A connection failed.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// A DDL statement failed.
    #[error("PostgreSQL refused a life-cycle statement: {}", crate::pg_error::describe(.0))]
    Db(#[from] tokio_postgres::Error),
    /// `reconcile` could not repair these tenants (it repaired the others).
    #[error("reconcile could not repair {}: {}", .0.len(), .0.iter().map(|(c, e)| format!("{c} ({e})")).collect::<Vec<_>>().join("; "))]
    Unrepaired(Vec<(TenantCode, String)>),
}

impl Classify for ProvisionError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::AlreadyExists(_) | Self::NameTaken { .. } | Self::WrongStatus { .. } => {
                ErrorKind::Conflict
            }
            Self::ShuttingDown => ErrorKind::Unavailable,
            Self::Catalog(e) => e.kind(),
            Self::Template(e) => e.kind(),
            Self::Migrate(e) => e.kind(),
            Self::Server(e) => e.kind(),
            Self::Db(e) => e.kind(),
            Self::Unrepaired(_) => ErrorKind::Internal,
        }
    }
}

/// How a tenant database is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProvisionPath {
    /// Clone the sealed template (fast).
    Template,
    /// Create an empty database and run the tenant migrations in it.
    Migrate,
}

/// Where a process may be made to die, to test that the reconciler copes
/// (feature `testing` only: the shipped binary has no abort hook).
#[cfg(feature = "testing")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// During create, after the role exists.
    AfterRole,
    /// During create, after the database exists (before activation).
    AfterDatabase,
    /// During drop, after the row is marked `deleting`.
    AfterMarkDeleting,
    /// During drop, after the database is gone.
    AfterDropDatabase,
}

#[cfg(feature = "testing")]
impl CrashPoint {
    /// Parses `after_role`, `after_database`, `after_mark_deleting`, `after_drop_database`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "after_role" => Some(Self::AfterRole),
            "after_database" => Some(Self::AfterDatabase),
            "after_mark_deleting" => Some(Self::AfterMarkDeleting),
            "after_drop_database" => Some(Self::AfterDropDatabase),
            _ => None,
        }
    }
}

/// Creates, suspends, resumes and drops tenant databases and roles.
#[derive(Clone)]
pub struct Provisioner {
    server: Server,
    admin: Pool,
    catalog: Catalog,
    names: Names,
    secret: MasterSecret,
    shape: shape::Shape,
    tenant_set: Arc<MigrationSet>,
    templates: TemplateKeeper,
    operations: Arc<Semaphore>,
    #[cfg(feature = "testing")]
    crash_at: Option<CrashPoint>,
}

/// Life-cycle operations one process runs at once. Each holds up to three
/// AUTH connections (its tenant lock, the template lock, a query) and one
/// admin connection, so this bound keeps the pools from being exhausted by
/// lock holders waiting for each other; further operations queue here,
/// holding nothing.
pub const MAX_CONCURRENT_OPERATIONS: usize = 4;

/// A running life-cycle operation: a slot among
/// [`MAX_CONCURRENT_OPERATIONS`] and the tenant's advisory lock.
pub(crate) struct OperationGuard {
    _slot: OwnedSemaphorePermit,
    lock: CatalogLock,
}

impl OperationGuard {
    /// Releases the tenant lock, then the slot.
    pub(crate) async fn release(self) -> Result<(), ProvisionError> {
        Ok(self.lock.release().await?)
    }
}

impl Provisioner {
    /// A provisioner administering `server` through the `admin` pool.
    pub fn new(
        server: Server,
        admin: Pool,
        catalog: Catalog,
        names: Names,
        secret: MasterSecret,
        tenant_set: Arc<MigrationSet>,
        role_connection_limit: i32,
    ) -> Self {
        let templates = TemplateKeeper::new(
            server.clone(),
            admin.clone(),
            catalog.clone(),
            names.clone(),
            tenant_set.clone(),
        );
        Self {
            server,
            admin,
            catalog,
            names,
            secret,
            shape: shape::Shape {
                connection_limit: role_connection_limit,
            },
            tenant_set,
            templates,
            operations: Arc::new(Semaphore::new(MAX_CONCURRENT_OPERATIONS)),
            #[cfg(feature = "testing")]
            crash_at: None,
        }
    }

    /// Waits for an operation slot, then for the tenant's lock.
    pub(crate) async fn begin(&self, code: &TenantCode) -> Result<OperationGuard, ProvisionError> {
        let slot = self.slot().await?;
        let lock = self.catalog.lock_tenant(code).await?;
        Ok(OperationGuard { _slot: slot, lock })
    }

    /// Waits for an operation slot, then takes the tenant's lock if it is free.
    pub(crate) async fn try_begin(
        &self,
        code: &TenantCode,
    ) -> Result<Option<OperationGuard>, ProvisionError> {
        let slot = self.slot().await?;
        let lock = self.catalog.try_lock_tenant(code).await?;
        Ok(lock.map(|lock| OperationGuard { _slot: slot, lock }))
    }

    async fn slot(&self) -> Result<OwnedSemaphorePermit, ProvisionError> {
        self.operations
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ProvisionError::ShuttingDown)
    }

    /// Refuses new life-cycle operations (at shutdown); running ones finish.
    pub fn stop_accepting(&self) {
        self.operations.close();
    }

    /// Makes the process abort at `point` (crash-safety tests only).
    #[cfg(feature = "testing")]
    pub fn crash_at(&mut self, point: Option<CrashPoint>) {
        self.crash_at = point;
    }

    /// The template keeper.
    pub fn templates(&self) -> &TemplateKeeper {
        &self.templates
    }

    /// The password of a tenant's role (of its current generation).
    pub fn role_password(&self, tenant: &Tenant) -> String {
        self.secret
            .role_password(tenant.id, tenant.password_generation)
    }

    /// What tenant databases and roles must look like.
    pub(crate) fn shape(&self) -> &shape::Shape {
        &self.shape
    }

    /// The server.
    pub(crate) fn server(&self) -> &Server {
        &self.server
    }

    #[cfg(feature = "testing")]
    fn maybe_crash(&self, point: CrashPoint) {
        if self.crash_at == Some(point) {
            tracing::error!(?point, "crash point reached: aborting the process");
            std::process::abort();
        }
    }

    /// Creates a tenant: role, database (by `path`), grants, schema; `active` on success.
    #[tracing::instrument(skip_all, fields(tenant = %new.code, ?path))]
    pub async fn create(
        &self,
        new: &NewTenant,
        path: ProvisionPath,
        actor: &str,
    ) -> Result<Tenant, ProvisionError> {
        let lock = self.begin(&new.code).await?;
        let result = self.create_locked(new, path, actor).await;
        lock.release().await?;
        result
    }

    async fn create_locked(
        &self,
        new: &NewTenant,
        path: ProvisionPath,
        actor: &str,
    ) -> Result<Tenant, ProvisionError> {
        if let Some(existing) = self.catalog.tenant(&new.code).await?
            && existing.status.is_live()
        {
            return Err(ProvisionError::AlreadyExists(new.code.clone()));
        }
        // The template is ensured before this operation takes its admin
        // connection: building one needs an admin connection of its own.
        let template = match path {
            ProvisionPath::Template => Some(self.templates.ensure().await?.0),
            ProvisionPath::Migrate => None,
        };
        let database = self.names.tenant_db(&new.code);
        let admin = self.admin().await?;
        self.ensure_name_free(&admin, &database).await?;
        // Under the tenant lock the check above is final; the partial unique
        // index on live codes backs it up.
        let (tenant, op) = self
            .catalog
            .insert_provisioning(new, &database, actor, json!({ "path": path }))
            .await
            .map_err(|e| match e {
                CatalogError::AlreadyExists(code) => ProvisionError::AlreadyExists(code),
                other => other.into(),
            })?;
        match self.build(&admin, &tenant, template.as_deref()).await {
            Ok(version) => {
                let tenant = self.catalog.activate(tenant.id, version, op).await?;
                tracing::info!(database, version, "tenant provisioned");
                Ok(tenant)
            }
            Err(error) => {
                let reason = format!("provisioning failed: {error}");
                tracing::warn!(%error, "provisioning failed; rolling back");
                self.teardown(&admin, &tenant).await?;
                self.catalog
                    .set_status(tenant.id, TenantStatus::Failed, Some(&reason))
                    .await?;
                self.catalog.finish_operation(op, Some(&reason)).await?;
                Err(error)
            }
        }
    }

    /// Refuses to provision over a database or role that the catalog does not know.
    async fn ensure_name_free(&self, admin: &Object, name: &str) -> Result<(), ProvisionError> {
        const SQL: &str = "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1), \
                                  EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)";
        let row = admin.query_one(SQL, &[&name]).await?;
        let kind = match (row.get::<_, bool>(0), row.get::<_, bool>(1)) {
            (true, _) => "database",
            (_, true) => "role",
            _ => return Ok(()),
        };
        Err(ProvisionError::NameTaken {
            kind,
            name: name.to_owned(),
        })
    }

    /// Makes the role and database of a `provisioning` tenant; returns its
    /// schema version. The database is the admin role's, its objects the
    /// tenant role's (see [`shape`]).
    async fn build(
        &self,
        admin: &Object,
        tenant: &Tenant,
        template: Option<&str>,
    ) -> Result<Option<i32>, ProvisionError> {
        let role = tenant.role_name();
        let reader = self.names.shared_reader();
        let password = self.role_password(tenant);
        admin
            .batch_execute(&self.shape.create_role_sql(role, &password, &reader))
            .await?;
        #[cfg(feature = "testing")]
        self.maybe_crash(CrashPoint::AfterRole);
        let source = match template {
            Some(template) => format!("TEMPLATE {} STRATEGY WAL_LOG", quote_ident(template)),
            None => "TEMPLATE template0".to_owned(),
        };
        let db = quote_ident(&tenant.database_name);
        admin
            .batch_execute(&format!("CREATE DATABASE {db} {source}"))
            .await?;
        admin
            .batch_execute(&database_grants_sql(&tenant.database_name, role))
            .await?;
        #[cfg(feature = "testing")]
        self.maybe_crash(CrashPoint::AfterDatabase);
        let mut client = self.server.connect(&tenant.database_name).await?;
        if template.is_some() {
            // The template's objects are the template owner's: handed to the
            // tenant's role in one statement. The clone sits at the set's
            // newest version by construction.
            client
                .batch_execute(&format!(
                    "REASSIGN OWNED BY {} TO {}",
                    quote_ident(&self.names.template_owner()),
                    quote_ident(role)
                ))
                .await?;
            return Ok(Some(self.tenant_set.latest_version()));
        }
        client
            .batch_execute(&format!(
                "ALTER SCHEMA public OWNER TO {}",
                quote_ident(role)
            ))
            .await?;
        let applied = self
            .tenant_set
            .apply(&mut client, &tenant.database_name, Some(role))
            .await?;
        Ok(applied.current)
    }

    /// Drops the tenant's database and role if they exist (its own objects only:
    /// the names were verified free before the tenant row was written).
    pub(crate) async fn teardown(
        &self,
        admin: &Object,
        tenant: &Tenant,
    ) -> Result<(), ProvisionError> {
        let role = quote_ident(tenant.role_name());
        let role_exists = admin
            .query_opt(
                "SELECT 1 FROM pg_roles WHERE rolname = $1",
                &[&tenant.role_name()],
            )
            .await?
            .is_some();
        if role_exists {
            admin
                .batch_execute(&format!("ALTER ROLE {role} NOLOGIN"))
                .await?;
        }
        // Unsealed first: a database made a template (by hand, or by a
        // tenant of an older tenantd that owned it) cannot be dropped.
        crate::template::drop_database(admin, &tenant.database_name).await?;
        #[cfg(feature = "testing")]
        self.maybe_crash(CrashPoint::AfterDropDatabase);
        admin
            .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
            .await?;
        Ok(())
    }

    /// Suspends an active tenant: its role can no longer log in and its open
    /// sessions are ended.
    #[tracing::instrument(skip_all, fields(tenant = %code))]
    pub async fn suspend(
        &self,
        code: &TenantCode,
        reason: Option<&str>,
        actor: &str,
    ) -> Result<Tenant, ProvisionError> {
        self.transition(
            code,
            OperationKind::Suspend,
            actor,
            TenantStatus::Active,
            TenantStatus::Suspended,
            reason,
        )
        .await
    }

    /// Resumes a suspended tenant.
    #[tracing::instrument(skip_all, fields(tenant = %code))]
    pub async fn resume(&self, code: &TenantCode, actor: &str) -> Result<Tenant, ProvisionError> {
        self.transition(
            code,
            OperationKind::Resume,
            actor,
            TenantStatus::Suspended,
            TenantStatus::Active,
            None,
        )
        .await
    }

    async fn transition(
        &self,
        code: &TenantCode,
        kind: OperationKind,
        actor: &str,
        from: TenantStatus,
        to: TenantStatus,
        reason: Option<&str>,
    ) -> Result<Tenant, ProvisionError> {
        let lock = self.begin(code).await?;
        let result = async {
            let tenant = self.live_tenant(code).await?;
            if tenant.status != from {
                return Err(ProvisionError::WrongStatus {
                    code: code.clone(),
                    status: tenant.status,
                    action: kind.as_str(),
                });
            }
            let op = self
                .catalog
                .start_operation(Some(&tenant), kind, actor, json!({ "reason": reason }))
                .await?;
            let admin = self.admin().await?;
            self.set_login(&admin, &tenant, to == TenantStatus::Active)
                .await?;
            self.catalog.set_status(tenant.id, to, reason).await?;
            self.catalog.finish_operation(op, None).await?;
            self.catalog
                .tenant_by_id(tenant.id)
                .await?
                .ok_or(ProvisionError::NotFound(code.clone()))
        }
        .await;
        lock.release().await?;
        result
    }

    /// Lets the tenant's role log in, or forbids it and ends its sessions.
    pub(crate) async fn set_login(
        &self,
        admin: &Object,
        tenant: &Tenant,
        can_login: bool,
    ) -> Result<(), ProvisionError> {
        let role = quote_ident(tenant.role_name());
        if can_login {
            admin
                .batch_execute(&format!("ALTER ROLE {role} LOGIN"))
                .await?;
        } else {
            admin
                .batch_execute(&format!("ALTER ROLE {role} NOLOGIN"))
                .await?;
            admin
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                    &[&tenant.role_name()],
                )
                .await?;
        }
        Ok(())
    }

    /// Drops a tenant's database and role; the catalog row stays as `deleted`.
    #[tracing::instrument(skip_all, fields(tenant = %code))]
    pub async fn drop(&self, code: &TenantCode, actor: &str) -> Result<Tenant, ProvisionError> {
        let lock = self.begin(code).await?;
        let result = async {
            let tenant = self.live_tenant(code).await?;
            if !matches!(
                tenant.status,
                TenantStatus::Active | TenantStatus::Suspended | TenantStatus::Deleting
            ) {
                return Err(ProvisionError::WrongStatus {
                    code: code.clone(),
                    status: tenant.status,
                    action: "drop",
                });
            }
            let op = self
                .catalog
                .start_operation(Some(&tenant), OperationKind::Drop, actor, json!({}))
                .await?;
            self.catalog
                .set_status(tenant.id, TenantStatus::Deleting, None)
                .await?;
            #[cfg(feature = "testing")]
            self.maybe_crash(CrashPoint::AfterMarkDeleting);
            self.finish_drop(&tenant).await?;
            self.catalog.finish_operation(op, None).await?;
            self.catalog
                .tenant_by_id(tenant.id)
                .await?
                .ok_or(ProvisionError::NotFound(code.clone()))
        }
        .await;
        lock.release().await?;
        result
    }

    /// Completes the drop of a `deleting` tenant.
    pub(crate) async fn finish_drop(&self, tenant: &Tenant) -> Result<(), ProvisionError> {
        let admin = self.admin().await?;
        self.teardown(&admin, tenant).await?;
        self.catalog
            .set_status(tenant.id, TenantStatus::Deleted, None)
            .await?;
        tracing::info!(tenant = %tenant.code, "tenant dropped");
        Ok(())
    }

    /// The tenant with this code, unless it is gone (deleted or failed).
    async fn live_tenant(&self, code: &TenantCode) -> Result<Tenant, ProvisionError> {
        match self.catalog.tenant(code).await? {
            Some(t) if t.status.is_live() => Ok(t),
            _ => Err(ProvisionError::NotFound(code.clone())),
        }
    }

    /// An admin connection to the server's maintenance database.
    pub(crate) async fn admin(&self) -> Result<Object, ProvisionError> {
        Ok(self
            .server
            .checkout(&self.admin, self.server.maintenance_db())
            .await?)
    }

    /// The catalog.
    pub(crate) fn catalog(&self) -> &Catalog {
        &self.catalog
    }
}

/// The privileges of a tenant database: none for PUBLIC; `CONNECT`,
/// `TEMPORARY` and `CREATE` (its own schemas) for the tenant's role, which
/// is not the database's owner.
pub(crate) fn database_grants_sql(database: &str, role: &str) -> String {
    let (db, role) = (quote_ident(database), quote_ident(role));
    format!(
        "REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC; \
         GRANT CONNECT, TEMPORARY, CREATE ON DATABASE {db} TO {role}"
    )
}
