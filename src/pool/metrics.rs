//! Counters and gauges of the pool layer, kept in atomics so the hot path
//! never takes a lock to count, and read as a [`PoolStats`] snapshot (for the
//! future `/metrics` endpoint, logs and tests). Refusals by the server and
//! the budget's ceiling also go through the `metrics` facade
//! ([`SERVER_REFUSALS`], [`BUDGET_CEILING`]), which `GET /metrics` renders.
//! This module only counts; it decides nothing.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::tenant::TenantCode;

/// Upper bounds (µs) of the acquire-wait histogram buckets; the last bucket is unbounded.
const WAIT_BUCKETS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000,
];

/// Counter (`metrics` facade): tenant connections the server refused for
/// want of free slots (`53300`, other clients hold them).
pub const SERVER_REFUSALS: &str = "tenantd_pool_server_refusals_total";
/// Gauge (`metrics` facade): the budget's effective ceiling (the budget
/// unless the server refused connections lately).
pub const BUDGET_CEILING: &str = "tenantd_pool_budget_ceiling";

/// Live counters shared by every pool of one process.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub open_pools: AtomicUsize,
    pub pools_created: AtomicU64,
    pub open_connections: AtomicUsize,
    pub tenants_with_connections: AtomicUsize,
    pub peak_open_connections: AtomicUsize,
    pub connections_opened: AtomicU64,
    pub connect_failures: AtomicU64,
    pub server_full_retries: AtomicU64,
    pub connects_in_flight: AtomicUsize,
    pub peak_connects_in_flight: AtomicUsize,
    pub idle_pool_evictions: AtomicU64,
    pub idle_connection_closes: AtomicU64,
    pub budget_evictions: AtomicU64,
    pub last_connection_evictions: AtomicU64,
    pub growth_connections: AtomicU64,
    pub invalidations: AtomicU64,
    pub budget_timeouts: AtomicU64,
    pub stale_evictions: AtomicU64,
    pub own_connection_waits: AtomicU64,
    pub budget_waits: AtomicU64,
    pub cold_start_waits: AtomicU64,
    pub growth_deferred: AtomicU64,
    pub fast_checkouts: AtomicU64,
    pub route_loads: AtomicU64,
    pub notify_connected: AtomicUsize,
    pub notify_reconnects: AtomicU64,
    pub notifications: AtomicU64,
    wait_buckets: [AtomicU64; WAIT_BUCKETS_US.len() + 1],
    wait_sum_us: AtomicU64,
}

impl Counters {
    /// Records how long a checkout waited.
    pub fn record_wait(&self, waited: Duration) {
        let us = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        let bucket = WAIT_BUCKETS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(WAIT_BUCKETS_US.len());
        self.wait_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.wait_sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Counts one more open connection (and raises the peak).
    pub fn connection_opened(&self) {
        let now = self.open_connections.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_open_connections.fetch_max(now, Ordering::Relaxed);
        self.connections_opened.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection attempt starting (and raises the peak).
    pub fn connect_started(&self) {
        let now = self.connects_in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_connects_in_flight
            .fetch_max(now, Ordering::Relaxed);
    }

    /// Counts a connection the server refused for want of free slots.
    pub fn server_refused(&self) {
        Self::bump(&self.server_full_retries);
        metrics::counter!(SERVER_REFUSALS).increment(1);
    }

    /// Publishes the budget's effective ceiling.
    pub fn record_ceiling(ceiling: usize) {
        metrics::gauge!(BUDGET_CEILING).set(ceiling as f64);
    }

    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot; `budget`, its `ceiling` and `tenants` come from the pool layer.
    pub fn snapshot(
        &self,
        (budget, ceiling): (usize, usize),
        tenants: Vec<TenantConnections>,
    ) -> PoolStats {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let gauge = |a: &AtomicUsize| a.load(Ordering::Relaxed);
        let mut cumulative = 0;
        let buckets = self
            .wait_buckets
            .iter()
            .enumerate()
            .map(|(i, count)| {
                cumulative += load(count);
                WaitBucket {
                    le_seconds: WAIT_BUCKETS_US
                        .get(i)
                        .map_or(f64::INFINITY, |&us| us as f64 / 1e6),
                    count: cumulative,
                }
            })
            .collect();
        PoolStats {
            budget,
            budget_ceiling: ceiling,
            open_pools: gauge(&self.open_pools),
            pools_created: load(&self.pools_created),
            open_connections: gauge(&self.open_connections),
            peak_open_connections: gauge(&self.peak_open_connections),
            connections_opened: load(&self.connections_opened),
            connect_failures: load(&self.connect_failures),
            server_full_retries: load(&self.server_full_retries),
            connects_in_flight: gauge(&self.connects_in_flight),
            peak_connects_in_flight: gauge(&self.peak_connects_in_flight),
            idle_pool_evictions: load(&self.idle_pool_evictions),
            idle_connection_closes: load(&self.idle_connection_closes),
            budget_evictions: load(&self.budget_evictions),
            last_connection_evictions: load(&self.last_connection_evictions),
            growth_connections: load(&self.growth_connections),
            invalidations: load(&self.invalidations),
            budget_timeouts: load(&self.budget_timeouts),
            stale_evictions: load(&self.stale_evictions),
            waits: WaitReasons {
                own_connection: load(&self.own_connection_waits),
                budget: load(&self.budget_waits),
                cold_start: load(&self.cold_start_waits),
                growth_deferred: load(&self.growth_deferred),
            },
            fast_checkouts: load(&self.fast_checkouts),
            route_loads: load(&self.route_loads),
            notify_connected: gauge(&self.notify_connected) > 0,
            notify_reconnects: load(&self.notify_reconnects),
            notifications: load(&self.notifications),
            acquire_wait: WaitHistogram {
                count: cumulative,
                sum_seconds: load(&self.wait_sum_us) as f64 / 1e6,
                buckets,
            },
            tenants,
        }
    }
}

/// Open connections of one tenant.
#[derive(Debug, Clone, Serialize)]
pub struct TenantConnections {
    /// The tenant.
    pub code: TenantCode,
    /// Its open server connections (idle or checked out).
    pub open: usize,
}

/// One cumulative histogram bucket (Prometheus style).
#[derive(Debug, Clone, Serialize)]
pub struct WaitBucket {
    /// Upper bound in seconds (`inf` for the last).
    pub le_seconds: f64,
    /// Checkouts that waited at most this long.
    pub count: u64,
}

/// How long checkouts waited for a connection.
#[derive(Debug, Clone, Serialize)]
pub struct WaitHistogram {
    /// Checkouts measured.
    pub count: u64,
    /// Total wait in seconds.
    pub sum_seconds: f64,
    /// Cumulative buckets.
    pub buckets: Vec<WaitBucket>,
}

/// Why checkouts waited (each counts a wait that began, not its length).
#[derive(Debug, Clone, Default, Serialize)]
pub struct WaitReasons {
    /// For one of the tenant's own connections to be returned (the tenant
    /// holds its fair share of a full budget, or its cap).
    pub own_connection: u64,
    /// For room in a full budget (or under the ceiling), closing idle
    /// connections of other tenants meanwhile.
    pub budget: u64,
    /// A first connection for a free slot of the cold-start cap.
    pub cold_start: u64,
    /// Growth that found no free cold-start slot and used the tenant's own
    /// connections instead of queueing behind first connections.
    pub growth_deferred: u64,
}

/// A snapshot of the pool layer's counters and gauges.
#[derive(Debug, Clone, Serialize)]
pub struct PoolStats {
    /// The global budget of open tenant connections (0 until it is known).
    pub budget: usize,
    /// The budget's effective ceiling now: lowered when the server refuses
    /// connections (other clients hold its slots), raised back slowly.
    pub budget_ceiling: usize,
    /// Tenant pools open now.
    pub open_pools: usize,
    /// Tenant pools ever created.
    pub pools_created: u64,
    /// Tenant server connections open now.
    pub open_connections: usize,
    /// Most tenant connections ever open at once.
    pub peak_open_connections: usize,
    /// Tenant server connections ever opened.
    pub connections_opened: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Connection attempts the server refused for want of free slots (taken by
    /// other clients): each lowered the ceiling and made room, then was tried
    /// again within the acquire timeout (also `SERVER_REFUSALS`).
    pub server_full_retries: u64,
    /// Connections being opened now.
    pub connects_in_flight: usize,
    /// Most connections ever being opened at once (bounded by the cold-start cap).
    pub peak_connects_in_flight: usize,
    /// Pools closed because nobody used them for the idle time.
    pub idle_pool_evictions: u64,
    /// Connections closed because they stayed idle for the idle time.
    pub idle_connection_closes: u64,
    /// Idle connections closed to make room for another tenant under a full budget.
    pub budget_evictions: u64,
    /// Of those, connections that were their tenant's last one.
    pub last_connection_evictions: u64,
    /// Connections opened for a tenant that already had one (pool growth).
    pub growth_connections: u64,
    /// Pools closed because their tenant changed status (locally or by notification).
    pub invalidations: u64,
    /// Requests that gave up waiting for a connection (retryable busy errors).
    pub budget_timeouts: u64,
    /// Of the budget evictions, connections of stale tenants (pools unused
    /// for a second: they left the working set), closed first.
    pub stale_evictions: u64,
    /// Why checkouts waited.
    pub waits: WaitReasons,
    /// Checkouts served by an idle connection of a pool whose route was
    /// current, without a route lookup, timer or admission.
    pub fast_checkouts: u64,
    /// Tenant lookups that read the catalog (cache misses).
    pub route_loads: u64,
    /// Whether the catalog notification listener is subscribed now.
    pub notify_connected: bool,
    /// Times the listener connected again after losing its connection.
    pub notify_reconnects: u64,
    /// Catalog notifications received.
    pub notifications: u64,
    /// How long checkouts waited.
    pub acquire_wait: WaitHistogram,
    /// Open connections per tenant with a pool.
    pub tenants: Vec<TenantConnections>,
}

impl PoolStats {
    /// Open connections of `code` (0 when it has no pool).
    pub fn tenant_open(&self, code: &TenantCode) -> usize {
        self.tenants
            .iter()
            .find(|t| &t.code == code)
            .map_or(0, |t| t.open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let counters = Counters::default();
        counters.record_wait(Duration::from_micros(50));
        counters.record_wait(Duration::from_millis(3));
        counters.record_wait(Duration::from_secs(60));
        let stats = counters.snapshot((10, 10), Vec::new());
        let h = &stats.acquire_wait;
        assert_eq!(h.count, 3);
        assert_eq!(h.buckets[0].count, 1);
        assert_eq!(h.buckets[5].count, 2, "{h:?}");
        assert_eq!(h.buckets.last().map(|b| b.count), Some(3));
        assert!(h.buckets.last().is_some_and(|b| b.le_seconds.is_infinite()));
    }
}
