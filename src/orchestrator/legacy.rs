//! What the legacy split needs from the orchestrator (crate-internal): admin
//! connections to the databases it fills, and its records in AUTH — the
//! run, its tenants and units, and the users and memberships it imports.
//! The split never opens AUTH itself.

use tokio_postgres::Client;
use uuid::Uuid;

use super::Orchestrator;
use crate::catalog::{ImportedMembership, ImportedUser, LegacyRun};
use crate::error::Error;
use crate::tenant::TenantCode;

impl Orchestrator {
    /// An admin connection to the server's maintenance database (to create,
    /// list and drop databases and roles).
    pub(crate) async fn admin_connection(&self) -> Result<Client, Error> {
        let server = &self.inner.server;
        Ok(server.connect(server.maintenance_db()).await?)
    }

    /// An admin connection to SHARED, writable.
    pub(crate) async fn shared_admin_connection(&self) -> Result<Client, Error> {
        Ok(self
            .inner
            .server
            .connect(self.inner.names.shared_db())
            .await?)
    }

    /// An admin connection to the tenant's database.
    pub(crate) async fn tenant_admin_connection(&self, code: &TenantCode) -> Result<Client, Error> {
        let database = self.inner.names.tenant_db(code);
        Ok(self.inner.server.connect(&database).await?)
    }

    /// Whether the AUTH database exists yet (before the first `init`, it does not).
    pub(crate) async fn auth_exists(&self) -> Result<bool, Error> {
        let admin = self.admin_connection().await?;
        let found = admin
            .query_opt(
                "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1",
                &[&self.inner.names.auth_db()],
            )
            .await?;
        Ok(found.is_some())
    }

    /// The split's record of the run of the source database `source`.
    pub(crate) fn legacy_run(&self, source: &str) -> LegacyRun {
        LegacyRun::new(self.inner.catalog.clone(), source)
    }

    /// Imports users into AUTH; existing ones (same id) are kept.
    pub(crate) async fn import_users(&self, users: &[ImportedUser<'_>]) -> Result<(), Error> {
        Ok(self.inner.catalog.import_users(users).await?)
    }

    /// Imports memberships into AUTH; existing ones are kept.
    pub(crate) async fn import_memberships(
        &self,
        memberships: &[ImportedMembership],
    ) -> Result<(), Error> {
        Ok(self.inner.catalog.import_memberships(memberships).await?)
    }

    /// How many of these users AUTH holds.
    pub(crate) async fn count_users(&self, ids: &[Uuid]) -> Result<i64, Error> {
        Ok(self.inner.catalog.count_users(ids).await?)
    }

    /// Deletes these users (and their memberships) from AUTH.
    pub(crate) async fn delete_users(&self, ids: &[Uuid]) -> Result<u64, Error> {
        Ok(self.inner.catalog.delete_users(ids).await?)
    }
}
