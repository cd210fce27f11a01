//! [`TenantClient`]: a checked-out tenant connection. It derefs to
//! deadpool-postgres's [`ClientWrapper`] (and so to a
//! [`tokio_postgres::Client`]); dropping it returns the connection to its
//! pool and tells a request waiting for the budget that an idle connection
//! may now be closed to make room.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use deadpool_postgres::ClientWrapper;
use tokio::sync::Notify;
use tokio_postgres::Statement;

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

/// Makes `$1` (milliseconds, as text) the session's `statement_timeout`.
/// Schema-qualified, so that a tenant's own `set_config` and `search_path`
/// cannot stand in for it.
const SET_STATEMENT_TIMEOUT: &str = "SELECT pg_catalog.set_config('statement_timeout', $1, false)";

impl TenantClient {
    /// The prepared statement that sets the session's `statement_timeout`
    /// (its one parameter is the value in milliseconds, as text), cached
    /// with the connection's other statements. Run it before every
    /// statement whose timeout matters, pipelined in the same write: the
    /// session setting cannot be trusted between two requests, since any
    /// function a tenant calls may change it (`SET` or `set_config` inside
    /// plpgsql). A request that is cancelled half-way must
    /// [`TenantClient::discard`] the connection.
    pub async fn statement_timeout_setter(&self) -> Result<Statement, tokio_postgres::Error> {
        self.prepare_cached(SET_STATEMENT_TIMEOUT).await
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
