//! [`Orchestrator`]: the library's entry point. It wires settings, the
//! server, the catalog, the provisioner and the pools together; every public
//! operation of tenantd is a method here. It holds no SQL of its own beyond
//! the bootstrap of AUTH and SHARED.

mod api_keys;
mod legacy;
mod observe;

use std::sync::Arc;

use deadpool_postgres::{Object, Pool};
use serde::Serialize;

use crate::catalog::{Catalog, TenantFilter};
use crate::config::{ServerSource, Settings};
use crate::devcluster::DevCluster;
use crate::error::Error;
use crate::ident::quote_ident;
use crate::migrate::{MigrationSet, SchemaSet};
use crate::names::Names;
use crate::notify;
use crate::pool::{PoolDeps, PoolStats, Pools, TenantClient};
#[cfg(feature = "testing")]
use crate::provision::CrashPoint;
use crate::provision::{ProvisionPath, Provisioner};
use crate::reconcile::{ReconcileReport, reconcile};
use crate::server::Server;
use crate::tenant::{NewTenant, Tenant, TenantCode};

pub use observe::TenantConnectionCounts;

/// Admin connections kept for DDL on the maintenance database.
const ADMIN_POOL_SIZE: usize = 4;
/// AUTH connections kept for the catalog (each held lock takes one).
const CATALOG_POOL_SIZE: usize = 16;
/// Read-only SHARED connections.
const SHARED_POOL_SIZE: usize = 4;
/// The catalog listener's dedicated AUTH connection.
const LISTENER_CONNECTIONS: usize = 1;
/// Who the audit log names when the library is called directly.
const LIBRARY_ACTOR: &str = "library";

/// What `init` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InitReport {
    /// Databases created by this run.
    pub created_databases: Vec<String>,
    /// AUTH migrations applied by this run.
    pub auth_applied: Vec<i32>,
    /// SHARED migrations applied by this run.
    pub shared_applied: Vec<i32>,
    /// The tenant template in use.
    pub template: String,
    /// Whether this run built the template.
    pub template_built: bool,
    /// Databases of the server (beside tenantd's) that any role may connect
    /// to — tenant roles included. On the dev cluster tenantd closes them;
    /// on a server it shares, it only reports them (see
    /// [`InitReport::revoke_statement`]).
    pub open_to_public: Vec<String>,
}

impl InitReport {
    /// The statement that closes [`InitReport::open_to_public`] to tenant
    /// roles (for an administrator to run), if any is open.
    pub fn revoke_statement(&self) -> Option<String> {
        (!self.open_to_public.is_empty()).then(|| revoke_public_sql(&self.open_to_public))
    }

    /// True when the run found everything in place.
    pub fn changed_nothing(&self) -> bool {
        self.created_databases.is_empty()
            && self.auth_applied.is_empty()
            && self.shared_applied.is_empty()
            && !self.template_built
    }
}

/// Connection settings of one tenant, for backends that connect by themselves.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TenantConnection {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// The tenant's database.
    pub database: String,
    /// The tenant's role.
    pub user: String,
    /// The role's password (derived, never stored).
    pub password: String,
    /// All of the above as a `postgres://` URL.
    pub url: String,
}

/// The database-per-tenant orchestrator.
#[derive(Clone)]
pub struct Orchestrator {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    server: Server,
    names: Names,
    catalog: Catalog,
    provisioner: Provisioner,
    sets: Sets,
    shared: Pool,
    pools: Pools,
}

struct Sets {
    auth: Arc<MigrationSet>,
    shared: Arc<MigrationSet>,
    tenant: Arc<MigrationSet>,
}

impl Orchestrator {
    /// Builds an orchestrator: starts the dev cluster when `DATABASE_URL` is
    /// unset, loads the migration sets and prepares (lazy) pools. Nothing is
    /// created on the server until [`Orchestrator::init`].
    pub async fn connect(settings: Settings) -> Result<Self, Error> {
        let (admin_config, secret) = match &settings.server {
            ServerSource::Url(config) => ((**config).clone(), settings.secret.clone()),
            ServerSource::DevCluster(dir) => {
                let dev = DevCluster::new(dir);
                let url = dev.start().await?;
                tracing::info!(%url, "using the embedded dev cluster");
                let secret = settings.secret.clone().map_or_else(|| dev.secret(), Ok)?;
                let config = url.parse().map_err(|e| crate::config::ConfigError {
                    variable: "TENANTD_DEV_DIR",
                    problem: format!("the dev cluster's URL {url:?} is invalid: {e}"),
                })?;
                (config, Some(secret))
            }
        };
        let secret = secret.ok_or(crate::config::ConfigError {
            variable: "TENANTD_SECRET",
            problem: "required when DATABASE_URL is set".to_owned(),
        })?;
        let dir = settings.migrations_dir.as_deref();
        let sets = Sets {
            auth: Arc::new(MigrationSet::load(SchemaSet::Auth, dir)?),
            shared: Arc::new(MigrationSet::load(SchemaSet::Shared, dir)?),
            tenant: Arc::new(MigrationSet::load(SchemaSet::Tenant, dir)?),
        };
        let server = Server::new(admin_config);
        let names = Names::new(
            &settings.tenant_prefix,
            &settings.auth_db,
            &settings.shared_db,
        );
        let admin = server.admin_pool(server.maintenance_db(), ADMIN_POOL_SIZE)?;
        let catalog = Catalog::new(server.admin_pool(names.auth_db(), CATALOG_POOL_SIZE)?);
        let mut shared_config = server.admin_config(names.shared_db());
        shared_config.options("-c default_transaction_read_only=on");
        let shared = crate::server::pool(shared_config, SHARED_POOL_SIZE)?;
        let pools = Pools::new(PoolDeps {
            server: server.clone(),
            catalog: catalog.clone(),
            secret: secret.clone(),
            listen_config: server.admin_config(names.auth_db()),
            settings: settings.pool.clone(),
            admin_reserve: ADMIN_POOL_SIZE
                + CATALOG_POOL_SIZE
                + SHARED_POOL_SIZE
                + LISTENER_CONNECTIONS,
        });
        let provisioner = Provisioner::new(
            server.clone(),
            admin,
            catalog.clone(),
            names.clone(),
            secret,
            sets.tenant.clone(),
            settings.tenant_role_connection_limit,
        );
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                server,
                names,
                catalog,
                provisioner,
                sets,
                shared,
                pools,
            }),
        })
    }

    /// Makes the process abort at a life-cycle step (crash-safety tests only).
    #[cfg(feature = "testing")]
    pub fn with_crash_point(mut self, point: Option<CrashPoint>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.provisioner.crash_at(point);
        }
        self
    }

    /// The settings this orchestrator was built from.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The naming scheme of databases and roles.
    pub(crate) fn names(&self) -> &Names {
        &self.inner.names
    }

    /// Creates AUTH and SHARED if missing, applies their migrations, sets up
    /// the roles and grants of the isolation model and builds the tenant
    /// template. Idempotent: a second run changes nothing.
    #[tracing::instrument(skip_all)]
    pub async fn init(&self) -> Result<InitReport, Error> {
        let inner = &self.inner;
        let admin = inner.provisioner.admin().await?;
        let mut report = InitReport::default();
        create_role_if_missing(&admin, &inner.names.shared_reader()).await?;
        create_role_if_missing(&admin, &inner.names.template_owner()).await?;
        for db in [inner.names.auth_db(), inner.names.shared_db()] {
            if create_database_if_missing(&admin, db).await? {
                report.created_databases.push(db.to_owned());
            }
        }
        let auth = quote_ident(inner.names.auth_db());
        let shared = quote_ident(inner.names.shared_db());
        let reader = quote_ident(&inner.names.shared_reader());
        admin
            .batch_execute(&format!(
                "REVOKE CONNECT, TEMPORARY ON DATABASE {auth} FROM PUBLIC; \
                 REVOKE CONNECT, TEMPORARY ON DATABASE {shared} FROM PUBLIC; \
                 GRANT CONNECT ON DATABASE {shared} TO {reader}"
            ))
            .await?;
        let mut client = inner.server.connect(inner.names.auth_db()).await?;
        report.auth_applied = inner
            .sets
            .auth
            .apply(&mut client, inner.names.auth_db(), None)
            .await?
            .versions;
        let mut client = inner.server.connect(inner.names.shared_db()).await?;
        report.shared_applied = inner
            .sets
            .shared
            .apply(&mut client, inner.names.shared_db(), None)
            .await?
            .versions;
        client
            .batch_execute(&format!(
                "GRANT USAGE ON SCHEMA public TO {reader}; \
                 GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader}; \
                 ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {reader}"
            ))
            .await?;
        let (template, built) = inner.provisioner.templates().ensure().await?;
        report.template = template;
        report.template_built = built;
        report.open_to_public = self.close_public_databases(&admin).await?;
        Ok(report)
    }

    /// Databases other than tenantd's own that PUBLIC (so every tenant
    /// role) may connect to. On the dev cluster, which is tenantd's alone,
    /// they are closed (`REVOKE CONNECT … FROM PUBLIC`) and none is
    /// returned; on a server tenantd shares, they are returned and a
    /// warning names the statement that closes them.
    async fn close_public_databases(&self, admin: &Object) -> Result<Vec<String>, Error> {
        const SQL: &str = "SELECT datname::text FROM pg_catalog.pg_database \
             WHERE datallowconn AND NOT starts_with(datname, $1) \
               AND pg_catalog.has_database_privilege('public', oid, 'CONNECT') ORDER BY 1";
        let own = format!("{}_", self.inner.names.prefix());
        let rows = admin.query(SQL, &[&own]).await?;
        let open: Vec<String> = rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        if matches!(self.inner.settings.server, ServerSource::DevCluster(_)) {
            if !open.is_empty() {
                admin.batch_execute(&revoke_public_sql(&open)).await?;
            }
            return Ok(Vec::new());
        }
        if !open.is_empty() {
            tracing::warn!(
                databases = ?open,
                "tenant roles may connect to these databases of the server (CONNECT is granted to PUBLIC); \
                 an administrator closes them with: {}",
                revoke_public_sql(&open)
            );
        }
        Ok(open)
    }

    /// Gives the tenant's role a new password (the next generation of its
    /// derivation), ends the sessions opened with the old one and drops the
    /// tenant's pool here and in every other process, so they reconnect
    /// with the new one. Recorded in the audit log.
    pub async fn rotate_tenant_password(&self, code: &TenantCode) -> Result<Tenant, Error> {
        self.rotate_tenant_password_as(code, LIBRARY_ACTOR).await
    }

    /// [`Orchestrator::rotate_tenant_password`], recording `actor` in the audit log.
    pub async fn rotate_tenant_password_as(
        &self,
        code: &TenantCode,
        actor: &str,
    ) -> Result<Tenant, Error> {
        let result = self.inner.provisioner.rotate_password(code, actor).await;
        self.after_transition(code, &result).await;
        Ok(result?)
    }

    /// Finishes or rolls back interrupted life-cycle work, and puts tenant
    /// databases and roles back in shape. A tenant that cannot be repaired
    /// is in [`ReconcileReport::broken`] (the others are still repaired).
    pub async fn reconcile(&self) -> Result<ReconcileReport, Error> {
        let report = reconcile(&self.inner.provisioner).await?;
        if !report.is_clean() {
            self.announce(None).await;
        }
        Ok(report)
    }

    /// Creates a tenant by cloning the template (the fast path).
    pub async fn create_tenant(&self, new: NewTenant) -> Result<Tenant, Error> {
        self.create_tenant_via(new, ProvisionPath::Template, LIBRARY_ACTOR)
            .await
    }

    /// Creates a tenant by the given path, recording `actor` in the audit log.
    pub async fn create_tenant_via(
        &self,
        new: NewTenant,
        path: ProvisionPath,
        actor: &str,
    ) -> Result<Tenant, Error> {
        let tenant = self.inner.provisioner.create(&new, path, actor).await?;
        self.status_changed(&new.code).await;
        Ok(tenant)
    }

    /// The tenant with this code (the live one, else the newest gone one).
    pub async fn tenant(&self, code: &TenantCode) -> Result<Tenant, Error> {
        self.inner
            .catalog
            .tenant(code)
            .await?
            .ok_or_else(|| crate::provision::ProvisionError::NotFound(code.clone()).into())
    }

    /// Tenants matching `filter`, ordered by code.
    pub async fn tenants(&self, filter: &TenantFilter) -> Result<Vec<Tenant>, Error> {
        Ok(self.inner.catalog.list(filter).await?)
    }

    /// Suspends a tenant: its role cannot log in and its sessions end.
    pub async fn suspend_tenant(
        &self,
        code: &TenantCode,
        reason: Option<&str>,
    ) -> Result<Tenant, Error> {
        let result = self
            .inner
            .provisioner
            .suspend(code, reason, LIBRARY_ACTOR)
            .await;
        self.after_transition(code, &result).await;
        Ok(result?)
    }

    /// Resumes a suspended tenant.
    pub async fn resume_tenant(&self, code: &TenantCode) -> Result<Tenant, Error> {
        let result = self.inner.provisioner.resume(code, LIBRARY_ACTOR).await;
        self.after_transition(code, &result).await;
        Ok(result?)
    }

    /// Drops a tenant's database and role; the catalog keeps it as `deleted`.
    pub async fn drop_tenant(&self, code: &TenantCode) -> Result<Tenant, Error> {
        self.inner.pools.invalidate(code).await;
        let result = self.inner.provisioner.drop(code, LIBRARY_ACTOR).await;
        self.after_transition(code, &result).await;
        Ok(result?)
    }

    /// After a life-cycle step that may have changed the tenant's status:
    /// forget its route and pool here, and tell every other process.
    async fn after_transition(
        &self,
        code: &TenantCode,
        result: &Result<Tenant, crate::provision::ProvisionError>,
    ) {
        use crate::provision::ProvisionError;
        if !matches!(
            result,
            Err(ProvisionError::NotFound(_) | ProvisionError::WrongStatus { .. })
        ) {
            self.status_changed(code).await;
        }
    }

    async fn status_changed(&self, code: &TenantCode) {
        self.inner.pools.invalidate(code).await;
        self.announce(Some(code)).await;
    }

    /// Publishes a catalog change to every tenantd process sharing the catalog.
    async fn announce(&self, code: Option<&TenantCode>) {
        let published = match self.inner.catalog.client().await {
            Ok(client) => notify::publish(&client, code)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = published {
            tracing::warn!(
                tenant = code.map(TenantCode::as_str),
                %error,
                "could not notify other tenantd processes of a tenant change; \
                 they will see it within a minute"
            );
        }
    }

    /// How a backend connects to the tenant's database as the tenant's role.
    pub async fn tenant_connection(&self, code: &TenantCode) -> Result<TenantConnection, Error> {
        let tenant = self.live_tenant(code).await?;
        let server = &self.inner.server;
        let password = self.inner.provisioner.role_password(&tenant);
        Ok(TenantConnection {
            host: server.host(),
            port: server.port(),
            url: server.url(&tenant.database_name, tenant.role_name(), &password),
            database: tenant.database_name.clone(),
            user: tenant.role_name().to_owned(),
            password,
        })
    }

    /// A pooled connection to the tenant's database, as the tenant's role,
    /// from the cached tenant pool (no catalog read once the tenant is known).
    ///
    /// Refused at once for a tenant that is not active (suspended, deleted,
    /// failed…) with [`Error::TenantUnavailable`], and for an unknown code
    /// with a not-found error. Waits at most
    /// `TENANTD_ACQUIRE_TIMEOUT_MS` for a connection within the global
    /// budget, then fails with the retryable [`Error::Busy`].
    pub async fn tenant_client(&self, code: &TenantCode) -> Result<TenantClient, Error> {
        Ok(self.inner.pools.client(code).await?)
    }

    /// Fleet migrations: status, verify and runs across AUTH, SHARED, the
    /// template and every tenant database.
    pub fn fleet(&self) -> crate::fleet::Fleet {
        let inner = &self.inner;
        crate::fleet::Fleet::new(crate::fleet::FleetParts {
            server: inner.server.clone(),
            catalog: inner.catalog.clone(),
            names: inner.names.clone(),
            templates: inner.provisioner.templates().clone(),
            auth: inner.sets.auth.clone(),
            shared: inner.sets.shared.clone(),
            tenant: inner.sets.tenant.clone(),
            connections: inner.settings.migrate_connections,
        })
    }

    /// A pooled, read-only (by default) admin connection to SHARED; waits at
    /// most `TENANTD_ACQUIRE_TIMEOUT_MS`, then fails with [`Error::Busy`].
    pub async fn shared_client(&self) -> Result<Object, Error> {
        let database = self.inner.names.shared_db();
        let wait = self.inner.settings.pool.acquire_timeout;
        match tokio::time::timeout(wait, self.inner.shared.get()).await {
            Ok(client) => client.map_err(|e| Error::Connection {
                database: database.to_owned(),
                reason: crate::pg_error::describe(&e),
            }),
            Err(_) => Err(Error::Busy {
                reason: format!(
                    "all {SHARED_POOL_SIZE} connections to {database} stayed busy for {} ms",
                    wait.as_millis()
                ),
                retry_after: std::time::Duration::from_secs(1),
            }),
        }
    }

    /// Changes a live tenant's descriptive fields (name, region, plan, e-mail, settings).
    #[tracing::instrument(skip_all, fields(tenant = %code))]
    pub async fn update_tenant(
        &self,
        code: &TenantCode,
        patch: &crate::catalog::TenantPatch,
    ) -> Result<Tenant, Error> {
        self.inner
            .catalog
            .update_tenant(code, patch)
            .await?
            .ok_or_else(|| crate::provision::ProvisionError::NotFound(code.clone()).into())
    }

    /// Counters and gauges of the tenant pools (for `/metrics`).
    pub fn pool_stats(&self) -> PoolStats {
        self.inner.pools.stats()
    }

    /// At shutdown: refuses new life-cycle operations (running ones
    /// finish; new ones fail with the retryable shutting-down error), closes
    /// every pool and stops the background tasks.
    pub fn close(&self) {
        self.inner.provisioner.stop_accepting();
        self.inner.pools.close();
        self.inner.shared.close();
    }

    async fn live_tenant(&self, code: &TenantCode) -> Result<Tenant, Error> {
        let tenant = self.tenant(code).await?;
        match tenant.status.is_live() {
            false => Err(crate::provision::ProvisionError::NotFound(code.clone()).into()),
            true => Ok(tenant),
        }
    }
}

/// `REVOKE CONNECT ON DATABASE … FROM PUBLIC;` for each of `databases`.
fn revoke_public_sql(databases: &[String]) -> String {
    databases
        .iter()
        .map(|db| {
            format!(
                "REVOKE CONNECT ON DATABASE {} FROM PUBLIC;",
                quote_ident(db)
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

async fn create_role_if_missing(admin: &Object, role: &str) -> Result<(), Error> {
    let exists = admin
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
        .await?
        .is_some();
    if !exists {
        let created = admin
            .batch_execute(&format!("CREATE ROLE {} NOLOGIN", quote_ident(role)))
            .await;
        ignore_duplicate(created)?;
    }
    Ok(())
}

/// Creates `db` unless it exists; returns whether it was created.
async fn create_database_if_missing(admin: &Object, db: &str) -> Result<bool, Error> {
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
        .await?
        .is_some();
    if exists {
        return Ok(false);
    }
    let created = admin
        .batch_execute(&format!("CREATE DATABASE {}", quote_ident(db)))
        .await;
    Ok(ignore_duplicate(created)?)
}

/// Treats "already exists" from a concurrent creator as success (false).
fn ignore_duplicate(
    result: Result<(), tokio_postgres::Error>,
) -> Result<bool, tokio_postgres::Error> {
    match result {
        Ok(()) => Ok(true),
        Err(e) if crate::pg_error::is_duplicate_object(&e) => Ok(false),
        Err(e) => Err(e),
    }
}
