//! What the façade tells about the running system without changing it:
//! readiness (AUTH answers), the server connections opened as tenant roles,
//! and the audit log's operations with a fleet run's per-tenant results.

use serde::Serialize;
use uuid::Uuid;

use super::Orchestrator;
use crate::catalog::{FleetRunRow, OperationRow};
use crate::error::Error;
use crate::tenant::Tenant;

/// Server connections opened as tenant roles, as PostgreSQL counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TenantConnectionCounts {
    /// Running a statement.
    pub active: i64,
    /// Idle or idle in a transaction.
    pub idle: i64,
}

impl Orchestrator {
    /// Succeeds when the AUTH catalog answers a query.
    pub async fn check_ready(&self) -> Result<(), Error> {
        self.inner.catalog.ping().await?;
        Ok(())
    }

    /// The server connections opened as this deployment's tenant roles
    /// (from `pg_stat_activity`; every pool and every process counted).
    pub async fn tenant_connection_counts(&self) -> Result<TenantConnectionCounts, Error> {
        let prefix = format!("{}_", self.inner.names.prefix());
        let (active, idle) = self.inner.catalog.role_connections(&prefix).await?;
        Ok(TenantConnectionCounts { active, idle })
    }

    /// One operation of the audit log.
    pub async fn operation(&self, id: Uuid) -> Result<Option<OperationRow>, Error> {
        Ok(self.inner.catalog.operation(id).await?)
    }

    /// The per-tenant results a fleet run recorded so far.
    pub async fn fleet_run_results(&self, run: Uuid) -> Result<Vec<FleetRunRow>, Error> {
        Ok(self.inner.catalog.fleet_run_results(run).await?)
    }

    /// The tenant with this id, whatever its status (how a JWT's
    /// `tenant_id` is resolved).
    pub async fn tenant_by_id(&self, id: Uuid) -> Result<Option<Tenant>, Error> {
        Ok(self.inner.catalog.tenant_by_id(id).await?)
    }
}
