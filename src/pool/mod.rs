//! Routing of requests to tenant databases through cached, bounded pools.
//!
//! - [`route`]: tenant lookups (status, database, role), cached and invalidated
//!   by catalog notifications — the hot path never reads the catalog.
//! - [`tenant_pool`]: one deadpool pool per active tenant, connected as the
//!   tenant's own role, created once (single-flight, moka `try_get_with`),
//!   empty at first and grown on demand up to `TENANTD_TENANT_MAX_CONNECTIONS`.
//! - [`budget`]: one global budget of open tenant connections
//!   (`TENANTD_MAX_CONNECTIONS`) whose permits are held by open connections,
//!   and the cap on connections being opened at once; a full budget closes
//!   idle connections of other tenants to make room.
//! - [`ceiling`]: the budget's effective ceiling on a shared server, lowered
//!   when the server refuses connections (`53300`), raised back slowly.
//! - [`metrics`]: counters and gauges, read as [`PoolStats`].
//! - [`session`]: what a request may leave in a session, and the reset that
//!   undoes it before the connection is used again; the statement timeout
//!   as a startup option of every tenant connection.
//!
//! Pools unused for `TENANTD_POOL_IDLE_SECS` are evicted and closed (a
//! housekeeping task drives moka's expiry); so are connections idle that long.
//! A request waits at most `TENANTD_ACQUIRE_TIMEOUT_MS`, then fails with the
//! retryable [`crate::Error::Busy`]. This module never changes the catalog.

mod budget;
mod ceiling;
mod client;
mod metrics;
mod route;
mod session;
mod tenant_pool;

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::notification::RemovalCause;
use tokio::sync::{Notify, mpsc, watch};

pub use client::TenantClient;
pub use metrics::{PoolStats, TenantConnections, WaitBucket, WaitHistogram};

use budget::Admission;
use metrics::Counters;
use route::{ActiveRoute, Route, Routes};
use tenant_pool::{PoolSpec, TenantObject, TenantPool};

use crate::catalog::{Catalog, CatalogError};
use crate::config::PoolSettings;
use crate::notify::{self, CatalogEvent, ListenerStatus};
use crate::secret::MasterSecret;
use crate::server::{Server, ServerError};
use crate::tenant::{TenantCode, TenantStatus};

/// What a retry after a busy error should wait.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Second invalidation after a notification, for a lookup that read the
/// catalog just before the change and stored its result just after.
const REINVALIDATE_AFTER: Duration = Duration::from_millis(100);
/// Checkouts tried when the pool found was closed under our feet.
const CHECKOUT_ATTEMPTS: usize = 3;
/// Longest wait for one of the tenant's own connections before trying again
/// (a connection closing elsewhere frees budget without a signal).
const OWN_CONNECTION_RETRY: Duration = Duration::from_millis(20);

/// A tenant connection could not be had.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The budget (or the tenant's cap) stayed full for the whole acquire timeout.
    #[error(
        "no connection to tenant {code} within {} ms: the {budget} server connections of the \
         tenant budget (TENANTD_MAX_CONNECTIONS) or the tenant's own cap \
         (TENANTD_TENANT_MAX_CONNECTIONS) are all busy",
        waited.as_millis()
    )]
    Busy {
        /// The tenant.
        code: TenantCode,
        /// How long the request waited.
        waited: Duration,
        /// The global budget.
        budget: usize,
    },
    /// No live tenant has this code.
    #[error("unknown tenant {0}")]
    Unknown(TenantCode),
    /// The tenant takes no connections in its status.
    #[error("tenant {code} is {status}: it takes no connections")]
    Refused {
        /// The tenant.
        code: TenantCode,
        /// Its status.
        status: TenantStatus,
    },
    /// The tenant is quarantined after a failed migration.
    #[error("tenant {code} is under maintenance: {reason}")]
    UnderMaintenance {
        /// The tenant.
        code: TenantCode,
        /// The recorded migration error.
        reason: String,
    },
    /// The tenant's database did not accept the connection.
    #[error("cannot connect to tenant database {database:?}: {source}")]
    Connect {
        /// The database.
        database: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The catalog lookup failed.
    #[error("tenant lookup failed: {0}")]
    Lookup(Arc<CatalogError>),
    /// The server's connection limits could not be read.
    #[error(
        "cannot read the server's max_connections to size the tenant budget: {0}; \
         set TENANTD_MAX_CONNECTIONS"
    )]
    Limits(#[source] tokio_postgres::Error),
    /// The server could not be reached.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The pool failed in an unexpected way.
    #[error("tenant pool failure: {0}")]
    Checkout(String),
    /// tenantd is shutting down.
    #[error("the tenant pools are closed: tenantd is shutting down")]
    Closed,
    /// The budget is full and the tenant holds its fair share: wait for one
    /// of its own connections (handled inside the pool layer).
    #[error("the connection budget is full and this tenant holds its fair share")]
    Saturated,
}

impl From<PoolError> for crate::Error {
    fn from(error: PoolError) -> Self {
        use crate::provision::ProvisionError;
        match error {
            PoolError::Busy { .. } => Self::Busy {
                reason: error.to_string(),
                retry_after: RETRY_AFTER,
            },
            PoolError::Unknown(code) => ProvisionError::NotFound(code).into(),
            PoolError::Refused { code, status } => Self::TenantUnavailable { code, status },
            PoolError::UnderMaintenance { code, reason } => Self::UnderMaintenance { code, reason },
            PoolError::Connect { database, source } => Self::Connection {
                database,
                reason: crate::pg_error::describe(&source),
            },
            PoolError::Lookup(shared) => match Arc::try_unwrap(shared) {
                Ok(catalog) => catalog.into(),
                Err(shared) => Self::Connection {
                    database: "AUTH (tenant catalog)".to_owned(),
                    reason: shared.to_string(),
                },
            },
            PoolError::Server(e) => e.into(),
            other => Self::Connection {
                database: "tenant database".to_owned(),
                reason: other.to_string(),
            },
        }
    }
}

/// What the pools are built from.
pub struct PoolDeps {
    /// The server (tenant connection settings, limits).
    pub server: Server,
    /// The catalog (tenant lookups).
    pub catalog: Catalog,
    /// Derives tenant role passwords.
    pub secret: MasterSecret,
    /// Settings of the listener's AUTH connection.
    pub listen_config: tokio_postgres::Config,
    /// Limits.
    pub settings: PoolSettings,
    /// Connections tenantd's own admin pools may open (kept out of the default budget).
    pub admin_reserve: usize,
}

/// The tenant pools of one process (a cheap handle).
#[derive(Clone)]
pub struct Pools {
    inner: Arc<PoolsInner>,
}

pub(crate) struct PoolsInner {
    admission: Arc<Admission>,
    counters: Arc<Counters>,
    routes: Routes,
    pools: Cache<TenantCode, Arc<TenantPool>>,
    settings: PoolSettings,
    listen_config: tokio_postgres::Config,
    listener: OnceLock<Arc<ListenerStatus>>,
    shutdown: watch::Sender<bool>,
    clock: Instant,
}

impl Pools {
    /// Empty pools; nothing connects until the first request.
    pub fn new(deps: PoolDeps) -> Self {
        let counters = Arc::new(Counters::default());
        let inner = Arc::new_cyclic(|weak: &Weak<PoolsInner>| PoolsInner {
            admission: Arc::new(Admission::new(
                deps.settings.clone(),
                deps.server.clone(),
                deps.admin_reserve,
                weak.clone(),
            )),
            routes: Routes::new(
                deps.catalog,
                deps.server,
                deps.secret,
                deps.settings.statement_timeout,
                counters.clone(),
            ),
            pools: pool_cache(deps.settings.idle, counters.clone()),
            counters,
            settings: deps.settings,
            listen_config: deps.listen_config,
            listener: OnceLock::new(),
            shutdown: watch::Sender::new(false),
            clock: Instant::now(),
        });
        Self { inner }
    }

    /// A pooled connection to an active tenant's database, as its own role.
    pub async fn client(&self, code: &TenantCode) -> Result<TenantClient, PoolError> {
        let inner = &self.inner;
        inner.start_background();
        let started = Instant::now();
        let route = inner.routes.get(code).await?;
        let active = match &*route {
            Route::Active(active) => active,
            Route::Refused(status) => {
                return Err(PoolError::Refused {
                    code: code.clone(),
                    status: *status,
                });
            }
            Route::Unknown => return Err(PoolError::Unknown(code.clone())),
            Route::Quarantined(reason) => {
                return Err(PoolError::UnderMaintenance {
                    code: code.clone(),
                    reason: reason.clone(),
                });
            }
        };
        let wait = inner.settings.acquire_timeout;
        match tokio::time::timeout(wait, inner.checkout(code, active)).await {
            Ok(object) => {
                let object = object?;
                inner.counters.record_wait(started.elapsed());
                let (object, returned) = object;
                Ok(TenantClient::new(object, inner.admission.clone(), returned))
            }
            Err(_) => {
                Counters::bump(&inner.counters.budget_timeouts);
                Err(PoolError::Busy {
                    code: code.clone(),
                    waited: wait,
                    budget: inner.admission.total(),
                })
            }
        }
    }

    /// Forgets the tenant's lookup and closes its pool (its status changed).
    pub async fn invalidate(&self, code: &TenantCode) {
        self.inner.invalidate(code).await;
    }

    /// Counters and gauges.
    pub fn stats(&self) -> PoolStats {
        let inner = &self.inner;
        let mut tenants: Vec<_> = inner
            .pools
            .iter()
            .map(|(code, pool)| TenantConnections {
                code: (*code).clone(),
                open: pool.open(),
            })
            .collect();
        tenants.sort_by(|a, b| a.code.cmp(&b.code));
        let mut stats = inner.counters.snapshot(
            (inner.admission.total(), inner.admission.ceiling()),
            tenants,
        );
        if let Some(listener) = inner.listener.get() {
            stats.notify_connected = listener.connected();
            stats.notify_reconnects = listener.reconnects();
            stats.notifications = listener.received();
        }
        stats
    }

    /// Stops the background tasks and closes every pool (at shutdown).
    pub fn close(&self) {
        let inner = &self.inner;
        inner.shutdown.send_replace(true);
        inner.admission.close();
        for (_, pool) in inner.pools.iter() {
            pool.close();
        }
        inner.pools.invalidate_all();
        inner.routes.invalidate_all();
    }
}

fn pool_cache(idle: Duration, counters: Arc<Counters>) -> Cache<TenantCode, Arc<TenantPool>> {
    Cache::builder()
        .time_to_idle(idle)
        .eviction_listener(move |_code, pool: Arc<TenantPool>, cause| {
            if cause == RemovalCause::Expired && !pool.is_closed() {
                Counters::bump(&counters.idle_pool_evictions);
            }
            pool.close();
        })
        .build()
}

impl PoolsInner {
    /// Milliseconds since the pools were made (the LRU clock).
    fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A connection of the tenant's pool (and the pool's return signal).
    /// When the budget is full and the tenant holds its fair share, waits
    /// for one of its own connections to come back.
    async fn checkout(
        &self,
        code: &TenantCode,
        route: &ActiveRoute,
    ) -> Result<(TenantObject, Arc<Notify>), PoolError> {
        let mut closed = 0;
        while closed < CHECKOUT_ATTEMPTS {
            let pool = self.pool(code, route).await?;
            pool.touch(self.now_ms());
            let returned = pool.returned().notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            match pool.get().await {
                Ok(object) => return Ok((object, pool.returned().clone())),
                Err(deadpool::managed::PoolError::Backend(PoolError::Saturated)) => {
                    let _ = tokio::time::timeout(OWN_CONNECTION_RETRY, returned).await;
                }
                Err(deadpool::managed::PoolError::Closed) => closed += 1,
                Err(deadpool::managed::PoolError::Backend(error)) => return Err(error),
                Err(other) => return Err(PoolError::Checkout(other.to_string())),
            }
        }
        Err(PoolError::Closed)
    }

    /// The tenant's pool, created once however many requests ask at the same time.
    async fn pool(
        &self,
        code: &TenantCode,
        route: &ActiveRoute,
    ) -> Result<Arc<TenantPool>, PoolError> {
        if let Some(pool) = self.pools.get(code).await {
            if pool.id == route.id && !pool.is_closed() {
                return Ok(pool);
            }
            // A closed pool, or one of a dropped tenant whose code was reused.
            self.pools.invalidate(code).await;
        }
        let build = async {
            let spec = PoolSpec {
                code,
                id: route.id,
                database: &route.database,
                config: &route.config,
                max_size: self.settings.tenant_max_connections,
            };
            TenantPool::new(spec, self.admission.clone(), self.counters.clone()).map(Arc::new)
        };
        self.pools
            .try_get_with_by_ref(code, build)
            .await
            .map_err(|e| PoolError::Checkout(e.to_string()))
    }

    async fn invalidate(&self, code: &TenantCode) {
        self.routes.invalidate(code).await;
        if let Some(pool) = self.pools.remove(code).await {
            if !pool.is_closed() {
                Counters::bump(&self.counters.invalidations);
            }
            pool.close();
        }
    }

    /// Starts the housekeeping task and the catalog listener, once.
    fn start_background(self: &Arc<Self>) {
        if self.listener.get().is_some() || *self.shutdown.borrow() {
            return;
        }
        let mut started = false;
        self.listener.get_or_init(|| {
            started = true;
            let (events, status) =
                notify::spawn_listener(self.listen_config.clone(), self.shutdown.subscribe());
            tokio::spawn(apply_events(Arc::downgrade(self), events));
            status
        });
        if started {
            tokio::spawn(housekeep(Arc::downgrade(self), self.shutdown.subscribe()));
        }
    }

    /// Runs moka's expiry and closes connections idle for the idle time.
    async fn housekeep_once(&self) {
        self.admission.maybe_raise_ceiling();
        self.pools.run_pending_tasks().await;
        self.routes.run_pending_tasks().await;
        let idle = self.settings.idle;
        let closed: usize = self
            .pools
            .iter()
            .map(|(_, pool)| pool.close_idle_for(idle))
            .sum();
        self.counters
            .idle_connection_closes
            .fetch_add(closed as u64, Ordering::Relaxed);
    }
}

/// Applies catalog notifications until the pools are gone.
async fn apply_events(pools: Weak<PoolsInner>, mut events: mpsc::UnboundedReceiver<CatalogEvent>) {
    while let Some(event) = events.recv().await {
        let Some(inner) = pools.upgrade() else {
            return;
        };
        match event {
            CatalogEvent::Tenant(code) => {
                inner.invalidate(&code).await;
                let again = Arc::downgrade(&inner);
                tokio::spawn(async move {
                    tokio::time::sleep(REINVALIDATE_AFTER).await;
                    if let Some(inner) = again.upgrade() {
                        inner.routes.invalidate(&code).await;
                    }
                });
            }
            CatalogEvent::All => inner.routes.invalidate_all(),
        }
    }
}

/// Drives idle expiry every quarter of the idle time (between 100 ms and 1 s).
async fn housekeep(pools: Weak<PoolsInner>, mut shutdown: watch::Receiver<bool>) {
    let period = {
        let Some(inner) = pools.upgrade() else {
            return;
        };
        (inner.settings.idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(1))
    };
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.changed() => return,
        }
        let Some(inner) = pools.upgrade() else {
            return;
        };
        inner.housekeep_once().await;
    }
}
