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
use super::session;
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
    /// Resets the session cheaply: call it pipelined behind the request's
    /// last statement (polled after it, e.g. second in a `join`) and it
    /// costs no extra round trip. Two prepared statements, cached with the
    /// connection: [`session::RESET_SETTINGS`], then [`session::RESET_CHECK`],
    /// which ends `SET ROLE` and advisory locks and tells whether anything
    /// else is left (`LISTEN`, cursors, SQL `PREPARE`s, temporary objects).
    /// Answers whether the session is clean; when it is not, the caller
    /// must [`TenantClient::discard`] the connection (a connection returned
    /// without this call gets the full [`session::RESET`] at its next
    /// checkout instead).
    pub async fn reset_session(&self) -> Result<bool, tokio_postgres::Error> {
        let settings = self.prepare_cached(session::RESET_SETTINGS).await?;
        let check = self.prepare_cached(session::RESET_CHECK).await?;
        let (reset, left) =
            futures::future::join(self.execute(&settings, &[]), self.query_one(&check, &[])).await;
        reset?;
        let clean = !left?.try_get::<_, bool>(0)?;
        if clean {
            self.object.session.reset();
        }
        Ok(clean)
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
