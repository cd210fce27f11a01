//! [`AuthFailures`]: failed authentications counted per client address
//! (`TENANTD_AUTH_FAILURES_PER_MIN`, GCRA through `governor`). An address
//! that spends its allowance is refused with 429 + `Retry-After` — before
//! its credentials are looked at — until the allowance refills, so guessing
//! keys or tokens costs neither the catalog nor the verifier anything.
//!
//! The address is the TCP peer as tenantd sees it: behind a reverse proxy
//! every client shares the proxy's address (forwarded headers are not
//! trusted, a client could write them).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use moka::future::Cache;
use tokio::time::Instant;

use super::error::ApiError;

/// Addresses tracked before the limiter forgets those whose allowance is full again.
const RETAIN_ABOVE: usize = 10_000;
/// Refused addresses remembered at most.
const BLOCKED_CAPACITY: u64 = 100_000;

/// Failed authentications per client address.
pub struct AuthFailures {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Addresses refused until the given instant.
    blocked: Cache<IpAddr, Instant>,
    clock: DefaultClock,
}

impl AuthFailures {
    /// Allows `per_minute` failures a minute (and in a burst) per address.
    pub fn new(per_minute: u32) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
            blocked: Cache::builder()
                .max_capacity(BLOCKED_CAPACITY)
                .time_to_live(Duration::from_secs(60))
                .build(),
            clock: DefaultClock::default(),
        }
    }

    /// A 429 when `address` has spent its allowance of failures.
    pub async fn check(&self, address: IpAddr) -> Result<(), ApiError> {
        match self.blocked.get(&address).await {
            Some(until) if until > Instant::now() => {
                Err(refused(until.saturating_duration_since(Instant::now())))
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed authentication from `address`: `Err` (429) when that
    /// spent its allowance.
    pub async fn record(&self, address: IpAddr) -> Result<(), ApiError> {
        if self.limiter.len() > RETAIN_ABOVE {
            self.limiter.retain_recent();
        }
        match self.limiter.check_key(&address) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                self.blocked.insert(address, Instant::now() + wait).await;
                Err(refused(wait))
            }
        }
    }
}

fn refused(wait: Duration) -> ApiError {
    ApiError::rate_limited(
        "too many failed authentications from this address \
         (TENANTD_AUTH_FAILURES_PER_MIN); retry after the Retry-After delay",
        wait,
    )
}
