//! [`TenantClient`]: a checked-out tenant connection. It derefs to
//! deadpool-postgres's [`ClientWrapper`] (and so to a
//! [`tokio_postgres::Client`]); dropping it returns the connection to its
//! pool and tells a request waiting for the budget that an idle connection
//! may now be closed to make room.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use deadpool_postgres::ClientWrapper;
use tokio::sync::Notify;

use super::budget::Admission;
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
    /// Makes `timeout_ms` the session's `statement_timeout`. The setting
    /// stays with the connection, so only the first call on a connection
    /// (or one with another value) costs a round trip; a request that is
    /// cancelled half-way must [`TenantClient::discard`] the connection.
    pub async fn set_statement_timeout(
        &self,
        timeout_ms: u64,
    ) -> Result<(), tokio_postgres::Error> {
        let pooled = &*self.object;
        if pooled.has_statement_timeout(timeout_ms) {
            return Ok(());
        }
        self.batch_execute(&format!("SET statement_timeout = {timeout_ms}"))
            .await?;
        pooled.record_statement_timeout(timeout_ms);
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
