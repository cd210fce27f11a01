//! Tenant lookups for routing: code → (status, database, role settings),
//! cached so the hot path never reads the catalog, and invalidated by catalog
//! notifications (and, as a safety net, after [`ROUTE_TTL`]).
//!
//! A lookup that raced with an invalidation is read again: the loader notes
//! an epoch before reading the catalog and reads once more if an
//! invalidation happened meanwhile. This module does not open tenant
//! connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache;
use tokio::sync::Semaphore;
use tokio_postgres::Config;
use uuid::Uuid;

use super::PoolError;
use super::metrics::Counters;
use super::session::startup_options;
use crate::catalog::{Catalog, CatalogError};
use crate::secret::MasterSecret;
use crate::server::Server;
use crate::tenant::{Tenant, TenantCode, TenantStatus};

/// Longest a cached lookup is trusted without a notification.
const ROUTE_TTL: Duration = Duration::from_secs(60);
/// Catalog lookups running at once (cold routes), so a burst of new tenants
/// takes few AUTH connections.
const LOAD_CONCURRENCY: usize = 4;
/// Reads of one lookup when invalidations keep racing with it.
const LOAD_ATTEMPTS: usize = 3;

/// Where a tenant's requests go.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // always behind an Arc in the cache
pub(crate) enum Route {
    /// The tenant takes connections.
    Active(ActiveRoute),
    /// The tenant exists but takes no connections in this status.
    Refused(TenantStatus),
    /// The tenant is quarantined after a failed migration (the recorded error).
    Quarantined(String),
    /// No tenant ever had this code.
    Unknown,
}

/// How to reach an active tenant.
#[derive(Debug)]
pub(crate) struct ActiveRoute {
    /// Catalog id.
    pub id: Uuid,
    /// Its database.
    pub database: String,
    /// Connection settings as its own role.
    pub config: Config,
}

/// The cache of tenant lookups.
pub(crate) struct Routes {
    cache: Cache<TenantCode, Arc<Route>>,
    catalog: Catalog,
    server: Server,
    secret: MasterSecret,
    statement_timeout: Duration,
    loads: Semaphore,
    epoch: AtomicU64,
    counters: Arc<Counters>,
}

impl Routes {
    /// An empty cache reading `catalog`.
    pub fn new(
        catalog: Catalog,
        server: Server,
        secret: MasterSecret,
        statement_timeout: Duration,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            cache: Cache::builder().time_to_live(ROUTE_TTL).build(),
            catalog,
            server,
            secret,
            statement_timeout,
            loads: Semaphore::new(LOAD_CONCURRENCY),
            epoch: AtomicU64::new(0),
            counters,
        }
    }

    /// The tenant's route: from the cache, else read once (single-flight).
    pub async fn get(&self, code: &TenantCode) -> Result<Arc<Route>, PoolError> {
        if let Some(route) = self.cache.get(code).await {
            return Ok(route);
        }
        self.cache
            .try_get_with_by_ref(code, self.load(code))
            .await
            .map_err(PoolError::Lookup)
    }

    async fn load(&self, code: &TenantCode) -> Result<Arc<Route>, CatalogError> {
        let _slot = self.loads.acquire().await;
        let mut tenant = None;
        for _ in 0..LOAD_ATTEMPTS {
            let epoch = self.epoch.load(Ordering::Acquire);
            Counters::bump(&self.counters.route_loads);
            tenant = self.catalog.tenant(code).await?;
            if self.epoch.load(Ordering::Acquire) == epoch {
                break;
            }
        }
        Ok(Arc::new(self.route(tenant)))
    }

    fn route(&self, tenant: Option<Tenant>) -> Route {
        let Some(tenant) = tenant else {
            return Route::Unknown;
        };
        match tenant.status {
            TenantStatus::Active if tenant.quarantined => {
                Route::Quarantined(tenant.migration_error.unwrap_or_default())
            }
            TenantStatus::Active => {
                let password = self.secret.role_password(tenant.id);
                let mut config =
                    self.server
                        .role_config(&tenant.database_name, tenant.role_name(), &password);
                let options = startup_options(config.get_options(), self.statement_timeout);
                config.options(&options);
                Route::Active(ActiveRoute {
                    id: tenant.id,
                    database: tenant.database_name,
                    config,
                })
            }
            status => Route::Refused(status),
        }
    }

    /// Forgets the tenant's route.
    pub async fn invalidate(&self, code: &TenantCode) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.cache.invalidate(code).await;
    }

    /// Forgets every route (after notifications may have been missed).
    pub fn invalidate_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.cache.invalidate_all();
    }

    /// Runs the cache's pending expiry work.
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
    }
}
