//! Catalog reads and writes of the `operations` table (the audit log) by id:
//! inserting an entry under an id chosen by the caller (so an HTTP response
//! can name an operation before it is written) and reading one entry back.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Catalog, CatalogError};
use crate::tenant::Tenant;

/// One audit-log entry.
#[derive(Debug, Clone)]
pub struct OperationRow {
    /// Its id.
    pub id: Uuid,
    /// What it did (`create`, `drop`, `migrate_run`, …).
    pub kind: String,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// The tenant it is about, if any.
    pub tenant_code: Option<String>,
    /// Who started it.
    pub actor: String,
    /// Free-form detail (a run's options, plan and summary).
    pub detail: serde_json::Value,
    /// Why it failed.
    pub error: Option<String>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
}

impl Catalog {
    /// Starts an audit-log entry with the id `id` (status `running`).
    pub async fn insert_operation(
        &self,
        id: Uuid,
        tenant: Option<&Tenant>,
        kind: &str,
        actor: &str,
        detail: serde_json::Value,
    ) -> Result<(), CatalogError> {
        const SQL: &str = "INSERT INTO operations (id, tenant_id, tenant_code, kind, status, actor, detail) \
             VALUES ($1, $2, $3, $4, 'running', $5, $6)";
        let (tenant_id, code) = (tenant.map(|t| t.id), tenant.map(|t| t.code.as_str()));
        self.client()
            .await?
            .execute(SQL, &[&id, &tenant_id, &code, &kind, &actor, &detail])
            .await?;
        Ok(())
    }

    /// The audit-log entry with this id.
    pub async fn operation(&self, id: Uuid) -> Result<Option<OperationRow>, CatalogError> {
        const SQL: &str = "SELECT id, kind, status, tenant_code, actor, detail, error, started_at, \
             finished_at FROM operations WHERE id = $1";
        let row = self.client().await?.query_opt(SQL, &[&id]).await?;
        Ok(row.map(|row| OperationRow {
            id: row.get(0),
            kind: row.get(1),
            status: row.get(2),
            tenant_code: row.get(3),
            actor: row.get(4),
            detail: row.get(5),
            error: row.get(6),
            started_at: row.get(7),
            finished_at: row.get(8),
        }))
    }
}
