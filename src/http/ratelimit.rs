//! Per-tenant rate limits by plan (GCRA through `governor`): each tenant gets
//! its plan's requests per second, with a burst of the same size.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

use crate::tenant::Plan;

/// One keyed limiter per plan.
pub struct RateLimits {
    free: DefaultKeyedRateLimiter<Uuid>,
    pro: DefaultKeyedRateLimiter<Uuid>,
    enterprise: DefaultKeyedRateLimiter<Uuid>,
    clock: DefaultClock,
}

impl RateLimits {
    /// Limiters allowing `[free, pro, enterprise]` requests per second.
    pub fn new(per_second: [u32; 3]) -> Self {
        let limiter = |n: u32| {
            let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
            RateLimiter::keyed(Quota::per_second(n))
        };
        Self {
            free: limiter(per_second[0]),
            pro: limiter(per_second[1]),
            enterprise: limiter(per_second[2]),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request from the tenant's allowance; `Err(wait)` when it is spent.
    pub fn check(&self, tenant: Uuid, plan: Plan) -> Result<(), Duration> {
        let limiter = match plan {
            Plan::Free => &self.free,
            Plan::Pro => &self.pro,
            Plan::Enterprise => &self.enterprise,
        };
        limiter
            .check_key(&tenant)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}
