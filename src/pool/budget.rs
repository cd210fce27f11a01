//! Admission of new server connections: the global budget of open tenant
//! connections and the cap on connections being opened at once.
//!
//! A budget permit is held by an *open connection* (it lives in the task that
//! drives the connection), not by a checkout: it is given back only when the
//! connection is closed, so the number of permits out is the number of open
//! tenant connections. When the budget is full, a tenant below its fair share
//! (budget ÷ tenants holding connections) waits for a permit, and meanwhile
//! closes an idle connection of another tenant to make room (see
//! [`Admission::evict_for`]); a tenant at or above its fair share is told to
//! wait for one of its own connections instead ([`PoolError::Saturated`]): a
//! busy connection is free again in microseconds, a new one costs
//! milliseconds of server work. This module does not decide how long a
//! request may wait; the caller bounds it.
//!
//! On a server shared with other clients the budget may be more than the
//! server can give: a connection refused with `53300` makes room the same
//! way (see [`Admission::server_refused`]) and lowers the budget's
//! effective [`Ceiling`], so later requests close idle connections before
//! asking the server instead of being refused.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use std::sync::{Arc, Weak};

use tokio::sync::{Notify, OnceCell, OwnedSemaphorePermit, Semaphore, SemaphorePermit};

use super::ceiling::Ceiling;
use super::metrics::Counters;
use super::{PoolError, PoolsInner};
use crate::config::PoolSettings;
use crate::server::Server;
use crate::tenant::TenantCode;

/// How often a waiter looks again for an idle connection to close when
/// nothing told it that one was returned.
const EVICTION_RETRY: Duration = Duration::from_millis(20);

/// How long a waiter that closed a connection waits for a permit before it
/// closes another one.
const EVICTED_RETRY: Duration = Duration::from_millis(250);

/// A pool unused for this long belongs to a tenant that left the working
/// set: its idle connections are closed first to make room, its last one
/// included, and a tenant at its fair share may grow into them.
pub(crate) const STALE_AFTER_MS: u64 = 1_000;

/// Share of the server's free connection slots tenantd takes by default (¾).
const DEFAULT_SHARE: (usize, usize) = (3, 4);

/// Reads the server's connection limits: `max_connections` and the slots
/// reserved for superusers (and, from PostgreSQL 16, `reserved_connections`).
const LIMITS_SQL: &str = "SELECT current_setting('max_connections')::int, \
     current_setting('superuser_reserved_connections')::int \
     + coalesce(current_setting('reserved_connections', true), '0')::int";

/// The default budget: ¾ of the slots left once the server's reserved ones
/// and tenantd's own admin pools (`admin_reserve`) are taken out; at least 1.
pub fn default_budget(max_connections: usize, reserved: usize, admin_reserve: usize) -> usize {
    let free = max_connections.saturating_sub(reserved + admin_reserve);
    (free * DEFAULT_SHARE.0 / DEFAULT_SHARE.1).max(1)
}

/// Lets new tenant connections in, within the budget and the cold-start cap.
pub(crate) struct Admission {
    settings: PoolSettings,
    server: Server,
    admin_reserve: usize,
    budget: OnceCell<Arc<Budget>>,
    cold_starts: Semaphore,
    returned: Notify,
    making_room: AtomicUsize,
    pools: Weak<PoolsInner>,
}

/// Counts a request waiting for room in a full budget while it lives.
struct MakingRoom<'a>(&'a AtomicUsize);

impl<'a> MakingRoom<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for MakingRoom<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What [`Admission::evict_for`] (or [`Admission::server_refused`]) did.
pub(crate) enum Eviction {
    /// Closed another tenant's idle connection: a permit is on its way.
    Closed,
    /// Closed nothing, but the requester's own pool has an idle connection
    /// now: it should use that one.
    OwnIdle,
    /// Nothing to close.
    Nothing,
}

/// The semaphore whose permits are open connections, and its ceiling.
struct Budget {
    permits: Arc<Semaphore>,
    total: usize,
    ceiling: Ceiling,
}

/// A budget permit held for one open (or opening) connection; given back
/// through the [`Ceiling`] when dropped (withheld if the ceiling is low).
pub(crate) struct BudgetPermit {
    permit: Option<OwnedSemaphorePermit>,
    budget: Arc<Budget>,
}

impl Drop for BudgetPermit {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.budget.ceiling.give_back(permit);
        }
    }
}

impl Admission {
    /// Admission for the pools of `pools` (used to close idle connections).
    pub fn new(
        settings: PoolSettings,
        server: Server,
        admin_reserve: usize,
        pools: Weak<PoolsInner>,
    ) -> Self {
        Self {
            cold_starts: Semaphore::new(settings.cold_start_concurrency),
            settings,
            server,
            admin_reserve,
            budget: OnceCell::new(),
            returned: Notify::new(),
            making_room: AtomicUsize::new(0),
            pools,
        }
    }

    /// The budget, read from the settings or (once) from the server's limits.
    async fn budget(&self) -> Result<&Arc<Budget>, PoolError> {
        self.budget
            .get_or_try_init(|| async {
                let total = match self.settings.max_connections {
                    Some(total) => total,
                    None => self.budget_from_server().await?,
                };
                Ok::<_, PoolError>(Arc::new(Budget {
                    permits: Arc::new(Semaphore::new(total)),
                    total,
                    ceiling: Ceiling::new(total),
                }))
            })
            .await
    }

    async fn budget_from_server(&self) -> Result<usize, PoolError> {
        let client = self.server.connect(self.server.maintenance_db()).await?;
        let row = client
            .query_one(LIMITS_SQL, &[])
            .await
            .map_err(PoolError::Limits)?;
        let max: i32 = row.get(0);
        let reserved: i32 = row.get(1);
        let total = default_budget(
            usize::try_from(max).unwrap_or(0),
            usize::try_from(reserved).unwrap_or(0),
            self.admin_reserve,
        );
        tracing::info!(
            max_connections = max,
            reserved,
            budget = total,
            "tenant connection budget derived from the server (set TENANTD_MAX_CONNECTIONS to choose it)"
        );
        Ok(total)
    }

    /// The budget's size, 0 until it is known.
    pub fn total(&self) -> usize {
        self.budget.get().map_or(0, |b| b.total)
    }

    /// The budget's effective ceiling (the budget unless the server refused
    /// connections lately), 0 until it is known.
    pub fn ceiling(&self) -> usize {
        self.budget.get().map_or(0, |b| b.ceiling.get())
    }

    /// Raises the ceiling one step if the server has been quiet long enough.
    pub fn maybe_raise_ceiling(&self) {
        if let Some(budget) = self.budget.get()
            && budget.ceiling.maybe_raise(&budget.permits)
        {
            Counters::record_ceiling(budget.ceiling.get());
        }
    }

    /// The server refused a connection for `code` (which has `open`
    /// connections) for want of free slots: counts it, lowers the ceiling to
    /// the other permits out now, and makes room as a full budget
    /// does — closes an idle connection of another tenant, least recently
    /// used first (see [`Admission::evict_for`]).
    pub fn server_refused(&self, code: &TenantCode, open: usize, counters: &Counters) -> Eviction {
        counters.server_refused();
        if let Some(budget) = self.budget.get() {
            budget.ceiling.server_refused(&budget.permits);
            Counters::record_ceiling(budget.ceiling.get());
        }
        self.evict_for(code, open, false)
    }

    /// A permit for one more open connection for `code`, which has `open`
    /// connections: at once if the budget has room; else, below the fair
    /// share, after closing idle connections to make room (waiting as long as
    /// it takes: the caller bounds the wait); else [`PoolError::Saturated`].
    pub async fn admit(
        &self,
        code: &TenantCode,
        open: usize,
        counters: &Counters,
    ) -> Result<BudgetPermit, PoolError> {
        let budget = self.budget().await?;
        if budget.ceiling.maybe_raise(&budget.permits) {
            Counters::record_ceiling(budget.ceiling.get());
        }
        let permit = |permit| BudgetPermit {
            permit: Some(permit),
            budget: budget.clone(),
        };
        // A permit freed by an eviction belongs to the tenant that made room:
        // a growing tenant does not take it while anyone is making room.
        let growing_past_waiters = open > 0 && self.making_room.load(Ordering::Relaxed) > 0;
        if !growing_past_waiters && let Ok(p) = budget.permits.clone().try_acquire_owned() {
            return Ok(permit(p));
        }
        // The fair share is of what the server gives, not of the budget. At
        // its share a tenant grows only into a stale tenant's idle connection.
        let holders = counters.tenants_with_connections.load(Ordering::Relaxed);
        if open > 0 && open >= budget.ceiling.get() / holders.max(1) {
            return self.grow_into_stale(code, open, budget).await.map(permit);
        }
        Counters::bump(&counters.budget_waits);
        let _making_room = MakingRoom::enter(&self.making_room);
        loop {
            // A waiter must not wait out a ceiling the server no longer needs.
            if budget.ceiling.maybe_raise(&budget.permits) {
                Counters::record_ceiling(budget.ceiling.get());
            }
            if let Ok(p) = budget.permits.clone().try_acquire_owned() {
                return Ok(permit(p));
            }
            let returned = self.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            let evicted = match self.evict_for(code, open, false) {
                Eviction::Closed => true,
                Eviction::OwnIdle => return Err(PoolError::Saturated),
                Eviction::Nothing => false,
            };
            // After closing a connection, wait for a permit much longer before
            // closing another: the closed connection's permit is on its way,
            // and evicting again every 20 ms while it comes back would close
            // hot tenants' last connections in a cascade of reconnections.
            // (It may still go to an earlier waiter: then evict again.)
            let retry = if evicted {
                EVICTED_RETRY
            } else {
                EVICTION_RETRY
            };
            tokio::select! {
                p = budget.permits.clone().acquire_owned() => {
                    return p.map(permit).map_err(|_| PoolError::Closed);
                }
                () = &mut returned, if !evicted => {}
                () = tokio::time::sleep(retry) => {}
            }
        }
    }

    /// A tenant at its fair share of a full budget grows only by closing a
    /// stale tenant's idle connection and taking the permit it gives back
    /// (within [`EVICTED_RETRY`]); otherwise it waits for one of its own
    /// connections ([`PoolError::Saturated`]).
    async fn grow_into_stale(
        &self,
        code: &TenantCode,
        open: usize,
        budget: &Budget,
    ) -> Result<OwnedSemaphorePermit, PoolError> {
        if !matches!(self.evict_for(code, open, true), Eviction::Closed) {
            return Err(PoolError::Saturated);
        }
        match tokio::time::timeout(EVICTED_RETRY, budget.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(PoolError::Closed),
            Err(_) => Err(PoolError::Saturated),
        }
    }

    /// A slot to open a connection in (bounded by the cold-start cap) for a
    /// tenant that has `open` connections. A first connection waits for a
    /// slot; growth does not queue behind first connections: without a free
    /// slot it is [`PoolError::Saturated`] (the tenant waits for one of its
    /// own connections, back in microseconds).
    pub async fn cold_start(
        &self,
        open: usize,
        counters: &Counters,
    ) -> Result<SemaphorePermit<'_>, PoolError> {
        match self.cold_starts.try_acquire() {
            Ok(slot) => return Ok(slot),
            Err(tokio::sync::TryAcquireError::Closed) => return Err(PoolError::Closed),
            Err(tokio::sync::TryAcquireError::NoPermits) if open > 0 => {
                Counters::bump(&counters.growth_deferred);
                return Err(PoolError::Saturated);
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => {}
        }
        Counters::bump(&counters.cold_start_waits);
        self.cold_starts
            .acquire()
            .await
            .map_err(|_| PoolError::Closed)
    }

    /// Called when a checked-out connection goes back to its pool: a waiter
    /// may now close it to make room.
    pub fn connection_returned(&self) {
        self.returned.notify_one();
    }

    /// Closes one idle connection of another tenant to make room for `code`,
    /// which has `open` connections. Stale tenants (pools unused for
    /// [`STALE_AFTER_MS`]: they left the working set) go first, their last
    /// connection included; then a tenant with none takes a surplus
    /// connection (of a pool holding two or more) if there is one, else the
    /// last connection of the least recently used pool; a tenant growing
    /// beyond its first connection may only take from pools holding at least
    /// two more than it. Least recently used pools go first. Taking hot
    /// tenants' last connections would make them evict each other in a
    /// cascade of reconnections. With `stale_only`, only stale pools are
    /// candidates (a tenant at its fair share growing).
    fn evict_for(&self, code: &TenantCode, open: usize, stale_only: bool) -> Eviction {
        let Some(inner) = self.pools.upgrade() else {
            return Eviction::Nothing;
        };
        let stale_before = inner.now_ms().saturating_sub(STALE_AFTER_MS);
        let mut own_idle = false;
        let mut candidates: Vec<_> = inner
            .pools
            .iter()
            .filter_map(|(key, pool)| {
                if *key == *code {
                    own_idle |= pool.has_idle();
                    return None;
                }
                let stale = pool.last_used() < stale_before;
                let allowed = stale || (!stale_only && (open == 0 || pool.open() > open + 1));
                (allowed && pool.has_idle())
                    .then(|| ((!stale, pool.open() <= 1, pool.last_used()), pool))
            })
            .collect();
        candidates.sort_by_key(|(order, _)| *order);
        let victim = candidates.iter().find(|(_, pool)| pool.close_one_idle());
        if let Some(((fresh, last, _), _)) = victim {
            let counters = &inner.counters;
            counters.budget_evictions.fetch_add(1, Ordering::Relaxed);
            if !*fresh {
                Counters::bump(&counters.stale_evictions);
            }
            if *last {
                counters
                    .last_connection_evictions
                    .fetch_add(1, Ordering::Relaxed);
            }
            Eviction::Closed
        } else if own_idle {
            Eviction::OwnIdle
        } else {
            Eviction::Nothing
        }
    }

    /// Refuses new connections (at shutdown).
    pub fn close(&self) {
        self.cold_starts.close();
        if let Some(budget) = self.budget.get() {
            budget.permits.close();
        }
        self.returned.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_budget_leaves_room() {
        // 100 slots, 3 for superusers, 25 for tenantd's admin pools: ¾ of 72.
        assert_eq!(default_budget(100, 3, 25), 54);
        assert_eq!(default_budget(10, 3, 25), 1);
        assert_eq!(default_budget(1000, 3, 25), 729);
    }
}
