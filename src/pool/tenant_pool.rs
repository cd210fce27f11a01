//! One tenant's pool: a deadpool pool of connections opened as the tenant's
//! own role, whose [`TenantManager`] asks [`Admission`] for a budget permit
//! before each new connection and keeps that permit inside the task driving
//! the connection — so the permit is given back exactly when the connection
//! closes, whatever closes it (eviction, idle trimming, the server).
//!
//! Pools start empty and grow on demand up to the per-tenant cap. This module
//! does not decide which tenant may connect; routing does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use deadpool::managed::{self, Metrics, QueueMode, RecycleError, RecycleResult};
use deadpool_postgres::ClientWrapper;
use tokio::sync::Notify;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{Config, Connection, NoTls, Socket};
use uuid::Uuid;

use super::PoolError;

use super::budget::{Admission, BudgetPermit, Eviction};
use super::metrics::Counters;
use super::session::{self, Reset, SessionState};
use crate::pg_error::{self, Backoff};
use crate::tenant::TenantCode;

/// First delay before connecting again after a transient failure (e.g. a
/// server with no free slot), doubled up to [`CONNECT_RETRY_MAX`].
const CONNECT_RETRY: Duration = Duration::from_millis(20);
const CONNECT_RETRY_MAX: Duration = Duration::from_millis(500);

/// A checked-out connection of a tenant pool.
pub type TenantObject = managed::Object<TenantManager>;

/// Opens and recycles one tenant's connections within the global budget.
pub struct TenantManager {
    code: TenantCode,
    database: String,
    config: Config,
    admission: Arc<Admission>,
    counters: Arc<Counters>,
    open: Arc<AtomicUsize>,
    /// Connections of this tenant being opened right now.
    opening: AtomicUsize,
}

/// Counts a connection being opened while it lives.
struct Opening<'a>(&'a AtomicUsize);

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for TenantManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantManager")
            .field("code", &self.code)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

impl managed::Manager for TenantManager {
    type Type = PooledConnection;
    type Error = PoolError;

    async fn create(&self) -> Result<PooledConnection, PoolError> {
        // Connections being opened count as open: when several first requests
        // of a tenant arrive together, only one makes room in a full budget;
        // the others wait for that connection instead of evicting more.
        let opening = self.opening.fetch_add(1, Ordering::Relaxed);
        let _opening = Opening(&self.opening);
        let open = self.open.load(Ordering::Relaxed) + opening;
        let permit = self
            .admission
            .admit(&self.code, open, &self.counters)
            .await?;
        let (client, connection) = self.connect(open).await?;
        if open > 0 {
            Counters::bump(&self.counters.growth_connections);
        }
        let held = HeldConnection {
            connection,
            _permit: RetiringPermit(Some(permit)),
            _open: OpenConnection::new(self.counters.clone()),
        };
        Ok(PooledConnection {
            client: ClientWrapper::new(client, tokio::spawn(held.drive())),
            session: SessionState::default(),
            _member: PoolMember::new(self.counters.clone(), self.open.clone()),
        })
    }

    async fn recycle(&self, conn: &mut PooledConnection, _: &Metrics) -> RecycleResult<PoolError> {
        if conn.client.is_closed() {
            return Err(RecycleError::message("the server closed the connection"));
        }
        if conn.session.is_dirty() {
            match session::reset(&conn.client).await {
                Ok(Reset::Clean) => conn.session.reset(),
                Ok(Reset::PreparedLeft(left)) => {
                    return Err(RecycleError::message(format!(
                        "the session keeps {left} statement(s) prepared in SQL"
                    )));
                }
                Err(error) => {
                    return Err(RecycleError::message(format!(
                        "the session could not be reset: {}",
                        pg_error::describe(&error)
                    )));
                }
            }
        }
        Ok(())
    }
}

impl TenantManager {
    /// Opens a connection within the cold-start cap, for a tenant that has
    /// `open` connections. A server refusing for want of free slots (other
    /// clients hold them) makes room through [`Admission::server_refused`]
    /// and is tried again shortly; when there is no room to make, a tenant
    /// that has connections waits for its own ([`PoolError::Saturated`]).
    /// Other transient failures ([`pg_error::is_transient`], e.g. a server
    /// starting up) are tried again with a growing delay; the caller's
    /// timeout bounds the wait. Any other failure is returned at once.
    async fn connect(
        &self,
        open: usize,
    ) -> Result<(tokio_postgres::Client, Connection<Socket, NoTlsStream>), PoolError> {
        let mut backoff = Backoff::new(CONNECT_RETRY, CONNECT_RETRY_MAX);
        loop {
            let slot = self.admission.cold_start().await?;
            let in_flight = InFlight::start(&self.counters);
            let connected = self.config.connect(NoTls).await;
            drop((in_flight, slot));
            match connected {
                Ok(pair) => return Ok(pair),
                Err(source) if pg_error::is_too_many_connections(&source) => {
                    tracing::debug!(database = %self.database, "server full; making room");
                    match self
                        .admission
                        .server_refused(&self.code, open, &self.counters)
                    {
                        Eviction::Closed => {}
                        Eviction::OwnIdle => return Err(PoolError::Saturated),
                        Eviction::Nothing if open > 0 => return Err(PoolError::Saturated),
                        Eviction::Nothing => {}
                    }
                    backoff.wait().await;
                }
                Err(source) if pg_error::is_transient(&source) => {
                    Counters::bump(&self.counters.connect_failures);
                    tracing::warn!(database = %self.database, error = %pg_error::describe(&source),
                        "cannot connect yet; connecting again shortly");
                    backoff.wait().await;
                }
                Err(source) => {
                    Counters::bump(&self.counters.connect_failures);
                    return Err(PoolError::Connect {
                        database: self.database.clone(),
                        source,
                    });
                }
            }
        }
    }
}

/// A connection's driver together with what it holds. Dropped when the
/// connection ends or its task is aborted (the client was dropped); fields
/// drop in order, so the socket is closed before the budget permit is given back.
struct HeldConnection {
    connection: Connection<Socket, NoTlsStream>,
    _permit: RetiringPermit,
    _open: OpenConnection,
}

/// How long a closed connection's budget permit stays taken: the server
/// retires a backend a moment after its socket closes, and a new connection
/// admitted before that would briefly put one more tenant connection on the
/// server than the budget allows.
const BACKEND_RETIRE_DELAY: Duration = Duration::from_millis(5);

/// A budget permit given back [`BACKEND_RETIRE_DELAY`] after it is dropped.
struct RetiringPermit(Option<BudgetPermit>);

impl Drop for RetiringPermit {
    fn drop(&mut self) {
        let Some(permit) = self.0.take() else {
            return;
        };
        // Outside a runtime (process exit) the permit simply goes back now.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                tokio::time::sleep(BACKEND_RETIRE_DELAY).await;
                drop(permit);
            });
        }
    }
}

impl HeldConnection {
    async fn drive(mut self) {
        if let Err(error) = (&mut self.connection).await {
            tracing::debug!(%error, "tenant connection ended with an error");
        }
    }
}

/// Counts a connection attempt in flight while it lives.
struct InFlight<'a>(&'a Counters);

impl<'a> InFlight<'a> {
    fn start(counters: &'a Counters) -> Self {
        counters.connect_started();
        Self(counters)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.connects_in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts an open server connection while its driver lives.
struct OpenConnection(Arc<Counters>);

impl OpenConnection {
    fn new(counters: Arc<Counters>) -> Self {
        counters.connection_opened();
        Self(counters)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A tenant connection as its pool keeps it: the client, and its place in
/// the tenant's connection count, given up the moment the pool lets the
/// connection go (eviction decisions must not see connections being closed).
pub struct PooledConnection {
    client: ClientWrapper,
    /// Whether the session must be reset before the next checkout.
    pub(super) session: SessionState,
    _member: PoolMember,
}

impl std::ops::Deref for PooledConnection {
    type Target = ClientWrapper;

    fn deref(&self) -> &ClientWrapper {
        &self.client
    }
}

impl std::ops::DerefMut for PooledConnection {
    fn deref_mut(&mut self) -> &mut ClientWrapper {
        &mut self.client
    }
}

/// Counts a connection in its tenant's pool (and the tenants holding any).
struct PoolMember {
    counters: Arc<Counters>,
    tenant: Arc<AtomicUsize>,
}

impl PoolMember {
    fn new(counters: Arc<Counters>, tenant: Arc<AtomicUsize>) -> Self {
        if tenant.fetch_add(1, Ordering::Relaxed) == 0 {
            counters
                .tenants_with_connections
                .fetch_add(1, Ordering::Relaxed);
        }
        Self { counters, tenant }
    }
}

impl Drop for PoolMember {
    fn drop(&mut self) {
        if self.tenant.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.counters
                .tenants_with_connections
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// What a tenant pool is built from.
pub(crate) struct PoolSpec<'a> {
    /// The tenant.
    pub code: &'a TenantCode,
    /// Its id in the catalog (a recreated tenant gets a new pool).
    pub id: Uuid,
    /// Its database.
    pub database: &'a str,
    /// Connection settings as the tenant's role.
    pub config: &'a Config,
    /// The per-tenant cap.
    pub max_size: usize,
}

/// A tenant's pool as kept in the cache.
pub(crate) struct TenantPool {
    /// The tenant's catalog id.
    pub id: Uuid,
    pool: managed::Pool<TenantManager>,
    open: Arc<AtomicUsize>,
    returned: Arc<Notify>,
    last_used_ms: AtomicU64,
    closed: AtomicBool,
    counters: Arc<Counters>,
}

impl TenantPool {
    /// An empty pool (no connection is opened until one is asked for).
    pub fn new(
        spec: PoolSpec<'_>,
        admission: Arc<Admission>,
        counters: Arc<Counters>,
    ) -> Result<Self, PoolError> {
        let open = Arc::new(AtomicUsize::new(0));
        let manager = TenantManager {
            code: spec.code.clone(),
            database: spec.database.to_owned(),
            config: spec.config.clone(),
            admission,
            counters: counters.clone(),
            open: open.clone(),
            opening: AtomicUsize::new(0),
        };
        let pool = managed::Pool::builder(manager)
            .max_size(spec.max_size)
            .queue_mode(QueueMode::Lifo)
            .build()
            .map_err(|e| PoolError::Checkout(e.to_string()))?;
        counters.open_pools.fetch_add(1, Ordering::Relaxed);
        Counters::bump(&counters.pools_created);
        Ok(Self {
            id: spec.id,
            pool,
            open,
            returned: Arc::new(Notify::new()),
            last_used_ms: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            counters,
        })
    }

    /// Checks a connection out (waits for a free slot of this pool, then for
    /// admission if a new connection is needed).
    pub async fn get(&self) -> Result<TenantObject, managed::PoolError<PoolError>> {
        self.pool.get().await
    }

    /// Signalled when one of this tenant's connections is returned.
    pub fn returned(&self) -> &Arc<Notify> {
        &self.returned
    }

    /// Records a use at `now_ms` (milliseconds on the pool layer's clock).
    pub fn touch(&self, now_ms: u64) {
        self.last_used_ms.store(now_ms, Ordering::Relaxed);
    }

    /// When the pool was last used, on the pool layer's clock.
    pub fn last_used(&self) -> u64 {
        self.last_used_ms.load(Ordering::Relaxed)
    }

    /// Open connections of this tenant.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Whether the pool holds an idle connection.
    pub fn has_idle(&self) -> bool {
        self.pool.status().available > 0
    }

    /// Closes the least recently returned idle connection; false if none is idle.
    pub fn close_one_idle(&self) -> bool {
        let mut taken = false;
        let result = self.pool.retain(|_, _| std::mem::replace(&mut taken, true));
        !result.removed.is_empty()
    }

    /// Closes the connections idle for longer than `idle`; returns how many.
    pub fn close_idle_for(&self, idle: Duration) -> usize {
        self.pool
            .retain(|_, metrics| metrics.last_used() < idle)
            .removed
            .len()
    }

    /// Whether the pool was closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Closes the pool: idle connections now, checked-out ones when returned.
    pub fn close(&self) {
        if !self.closed.swap(true, Ordering::Relaxed) {
            self.pool.close();
            self.counters.open_pools.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for TenantPool {
    fn drop(&mut self) {
        self.close();
    }
}
