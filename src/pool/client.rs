//! [`TenantClient`]: a checked-out tenant connection. It derefs to
//! deadpool-postgres's [`ClientWrapper`] (and so to a
//! [`tokio_postgres::Client`]); dropping it returns the connection to its
//! pool and tells a request waiting for the budget that an idle connection
//! may now be closed to make room. Its session is reset before anybody else
//! uses it (see [`super::session`]).

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use deadpool_postgres::ClientWrapper;
use tokio::sync::Notify;

use super::budget::Admission;
use super::session::{self, Reset};
use super::tenant_pool::TenantObject;

/// A pooled connection to a tenant's database, as the tenant's own role.
pub struct TenantClient {
    // Field order matters: the connection goes back to its pool first, then
    // the waiters are told.
    object: TenantObject,
    _returned: ReturnSignal,
}

impl TenantClient {
    pub(super) fn new(
        object: TenantObject,
        admission: Arc<Admission>,
        tenant: Arc<Notify>,
    ) -> Self {
        object.session.checked_out();
        Self {
            object,
            _returned: ReturnSignal { admission, tenant },
        }
    }
}

impl TenantClient {
    /// Closes the connection instead of returning it to the pool (its
    /// session state is unknown, e.g. a request cancelled mid-transaction).
    pub fn discard(this: Self) {
        let Self { object, _returned } = this;
        drop(TenantObject::take(object));
    }
}

impl TenantClient {
    /// Resets the session ([`session::RESET`]): call it pipelined behind the
    /// request's last statement (polled after it, e.g. second in a
    /// `join`), and the connection goes back clean at no extra round trip.
    /// A connection returned without it is reset when next checked out.
    pub async fn reset_session(&self) -> Result<(), tokio_postgres::Error> {
        let reply = self.simple_query(session::RESET).await?;
        if Reset::from_reply(&reply) == Reset::Clean {
            self.object.session.reset();
        }
        Ok(())
    }
}

impl std::fmt::Debug for TenantClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantClient").finish_non_exhaustive()
    }
}

impl Deref for TenantClient {
    type Target = ClientWrapper;

    fn deref(&self) -> &ClientWrapper {
        &self.object
    }
}

impl DerefMut for TenantClient {
    fn deref_mut(&mut self) -> &mut ClientWrapper {
        &mut self.object
    }
}

/// Tells waiters that a connection was returned, when dropped: first a
/// request of the same tenant waiting for its own connection, then one
/// waiting for room in the budget.
struct ReturnSignal {
    admission: Arc<Admission>,
    tenant: Arc<Notify>,
}

impl Drop for ReturnSignal {
    fn drop(&mut self) {
        self.tenant.notify_one();
        self.admission.connection_returned();
    }
}
