//! The budget's effective ceiling on a shared server: how many tenant
//! connections tenantd lets itself open when the server cannot give it the
//! whole budget (other clients hold slots, so it refuses new connections
//! with `53300` while the budget still has permits).
//!
//! A refusal lowers the ceiling to the permits in use at that moment but the
//! refused attempt's own (open connections, attempts in flight and closed
//! connections whose backend is still retiring all hold a server slot or
//! are about to: counting only open connections would lower the ceiling one
//! more at every concurrent refusal); the permits above it are *withheld*: taken out of the budget's
//! semaphore as they come back (or at once when they are free), so a full
//! ceiling looks exactly like a full budget to admission — which then closes
//! idle connections of other tenants instead of asking the server for more.
//! After [`QUIET`] without a refusal the ceiling rises by one every
//! [`STEP`] (checked whenever a connection is wanted and by the pools'
//! housekeeping), handing withheld permits back, up to the budget: the next
//! refusal finds where the server's limit is now. This module only counts
//! permits; it never opens or closes connections.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long after the server's last refusal the ceiling starts to rise.
const QUIET: Duration = Duration::from_secs(1);
/// How often the ceiling rises by one connection once it may.
const STEP: Duration = Duration::from_millis(50);

/// The effective ceiling of one budget of `total` permits.
pub(crate) struct Ceiling {
    total: usize,
    /// The ceiling now (read without the lock).
    value: AtomicUsize,
    state: Mutex<State>,
}

struct State {
    ceiling: usize,
    /// Permits taken out of the semaphore (forgotten) to hold the ceiling.
    withheld: usize,
    last_refusal: Option<Instant>,
    last_raise: Instant,
}

impl State {
    fn wanted(&self, total: usize) -> usize {
        total - self.ceiling
    }
}

impl Ceiling {
    /// No ceiling below the budget of `total`.
    pub fn new(total: usize) -> Self {
        Self {
            total,
            value: AtomicUsize::new(total),
            state: Mutex::new(State {
                ceiling: total,
                withheld: 0,
                last_refusal: None,
                last_raise: Instant::now(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The ceiling now: at most the budget, at least 1.
    pub fn get(&self) -> usize {
        self.value.load(Ordering::Relaxed)
    }

    /// The server refused a connection whose attempt holds one of the
    /// permits of `permits`: no more permits out than the others (at least
    /// one) until the ceiling rises again. Free permits above the new
    /// ceiling are withheld at once.
    pub fn server_refused(&self, permits: &Semaphore) {
        let mut state = self.state();
        state.last_refusal = Some(Instant::now());
        let out = self.total
            - permits.available_permits().min(self.total - state.withheld)
            - state.withheld;
        let lowered = out.saturating_sub(1).clamp(1, self.total);
        if lowered < state.ceiling {
            state.ceiling = lowered;
            self.value.store(lowered, Ordering::Relaxed);
            let missing = state.wanted(self.total).saturating_sub(state.withheld);
            state.withheld += permits.forget_permits(missing);
        }
    }

    /// A permit coming back from a closed connection (or a failed attempt):
    /// withheld if the ceiling wants more withheld, else back to the budget.
    pub fn give_back(&self, permit: OwnedSemaphorePermit) {
        if self.get() >= self.total {
            return;
        }
        let mut state = self.state();
        if state.withheld < state.wanted(self.total) {
            state.withheld += 1;
            permit.forget();
        }
    }

    /// Raises the ceiling once the server has not refused for [`QUIET`]: by
    /// one for every [`STEP`] since the quiet time began or the last raise,
    /// whichever is later (so a late call catches up), handing withheld
    /// permits back; whether it rose. Cheap when there is no ceiling.
    pub fn maybe_raise(&self, permits: &Semaphore) -> bool {
        if self.get() >= self.total {
            return false;
        }
        let mut state = self.state();
        let now = Instant::now();
        let quiet_since = state.last_refusal.map(|at| at + QUIET);
        if quiet_since.is_some_and(|since| now < since) {
            return false;
        }
        let base = quiet_since.map_or(state.last_raise, |since| since.max(state.last_raise));
        let steps = now.duration_since(base).as_millis() / STEP.as_millis().max(1);
        let room = self.total - state.ceiling;
        let raise = usize::try_from(steps).unwrap_or(usize::MAX).min(room);
        if raise == 0 {
            return false;
        }
        state.ceiling += raise;
        state.last_raise = now;
        self.value.store(state.ceiling, Ordering::Relaxed);
        let wanted = state.wanted(self.total);
        if state.withheld > wanted {
            let surplus = state.withheld - wanted;
            state.withheld = wanted;
            permits.add_permits(surplus);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_refusal_withholds_free_permits_then_returned_ones() {
        let permits = Arc::new(Semaphore::new(10));
        let ceiling = Ceiling::new(10);
        let held: Vec<_> = (0..6)
            .map(|_| permits.clone().try_acquire_owned())
            .collect::<Result<_, _>>()
            .expect("free permits");
        // 6 out, 4 free; the server refused the attempt holding the sixth
        // (4 open, one more being opened): ceiling 5.
        ceiling.server_refused(&permits);
        assert_eq!(ceiling.get(), 5);
        assert_eq!(
            permits.available_permits(),
            0,
            "the 4 free ones are withheld"
        );
        let mut held = held.into_iter();
        for permit in held.by_ref().take(1) {
            ceiling.give_back(permit);
        }
        assert_eq!(permits.available_permits(), 0, "5 withheld, 5 out");
        for permit in held {
            ceiling.give_back(permit);
        }
        assert_eq!(permits.available_permits(), 5, "back to the ceiling");
        // A refusal with fewer permits out lowers it again; never raises it.
        let one = permits.clone().try_acquire_owned().expect("a free permit");
        ceiling.server_refused(&permits);
        assert_eq!(ceiling.get(), 1, "never below one");
        drop(one);
    }

    #[test]
    fn the_ceiling_rises_after_a_quiet_time() {
        let permits = Semaphore::new(3);
        let ceiling = Ceiling::new(3);
        assert!(
            !ceiling.maybe_raise(&permits),
            "no ceiling: nothing to raise"
        );
        ceiling.server_refused(&permits);
        assert_eq!(ceiling.get(), 1, "never below one");
        assert_eq!(permits.available_permits(), 1);
        assert!(!ceiling.maybe_raise(&permits), "not right after a refusal");
        {
            let mut state = ceiling.state();
            // Quiet for one and a half steps; raised long ago.
            state.last_refusal = Some(Instant::now() - QUIET - STEP - STEP / 2);
            state.last_raise = Instant::now() - STEP * 10;
        }
        assert!(ceiling.maybe_raise(&permits));
        assert_eq!(ceiling.get(), 2);
        assert_eq!(permits.available_permits(), 2);
        assert!(!ceiling.maybe_raise(&permits), "one step per STEP");
        ceiling.state().last_raise = Instant::now() - STEP * 5;
        assert!(ceiling.maybe_raise(&permits));
        assert_eq!(ceiling.get(), 3, "a late call catches up, up to the budget");
        assert_eq!(permits.available_permits(), 3);
    }
}
