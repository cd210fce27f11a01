//! Catalog reads and writes of fleet migrations: a tenant's migration result
//! (schema version, quarantine, last error), the per-tenant rows of a run and
//! the run's `operations` row (kind `migrate_run`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::operations::stored_enum;
use super::{Catalog, CatalogError};

stored_enum!(
    /// What a fleet run did to one tenant (stored in
    /// `fleet_run_tenants.outcome`, except `would_migrate`).
    Outcome, "fleet_run_tenants.outcome", {
        /// Migrations were applied.
        Migrated => "migrated",
        /// Already at the newest version (mostly known from the catalog, without a connection).
        Current => "current",
        /// A migration failed; the tenant keeps its previous version.
        Failed => "failed",
        /// Not migrated: not in a migratable status, ahead of the files, or the run stopped.
        Skipped => "skipped",
        /// Dry run: these migrations would be applied (never stored).
        WouldMigrate => "would_migrate",
    }
);

/// One tenant's result in a recorded fleet run.
#[derive(Debug, Clone, Serialize)]
pub struct FleetRunRow {
    /// The tenant's code.
    pub tenant_code: String,
    /// What happened to it.
    pub outcome: Outcome,
    /// Version before the run.
    pub from_version: Option<i32>,
    /// Version after the run.
    pub to_version: Option<i32>,
    /// Versions applied by the run.
    pub applied: Vec<i32>,
    /// Why it failed or was skipped.
    pub error: Option<String>,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
}

/// What a fleet run writes about one tenant.
#[derive(Debug, Clone)]
pub struct MigrationRecord<'a> {
    /// The run's operation.
    pub operation: Uuid,
    /// The tenant.
    pub tenant_id: Uuid,
    /// Its code.
    pub tenant_code: &'a str,
    /// What happened to it.
    pub outcome: Outcome,
    /// Version before.
    pub from_version: Option<i32>,
    /// Version after.
    pub to_version: Option<i32>,
    /// Versions applied.
    pub applied: &'a [i32],
    /// Error or skip reason.
    pub error: Option<&'a str>,
    /// Time spent on the tenant.
    pub elapsed_ms: i32,
}

impl Catalog {
    /// Records a successful migration: the new version, quarantine lifted.
    ///
    /// Committed without waiting for the WAL flush: if a crash loses it, the
    /// catalog still says the older version, so the next run opens the
    /// database, finds nothing pending and records it again — while the
    /// tenant, already migrated, is served normally. (Failures, which
    /// quarantine, are committed synchronously.)
    pub async fn record_migrated(
        &self,
        id: Uuid,
        version: Option<i32>,
    ) -> Result<(), CatalogError> {
        // pg_notify in the same transaction: routers in every process see the
        // new version (and a lifted quarantine) when it commits.
        const SQL: &str = "WITH t AS (UPDATE tenants SET schema_version = $2, quarantined = false, \
             migration_error = NULL, migrated_at = now(), updated_at = now() WHERE id = $1 \
             RETURNING code) SELECT pg_notify($3, code) FROM t";
        self.execute_unflushed(SQL, &[&id, &version, &crate::notify::CHANNEL])
            .await
    }

    /// Runs one statement in a transaction committed with
    /// `synchronous_commit = off` (for records a crash may lose harmlessly).
    async fn execute_unflushed(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<(), CatalogError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.batch_execute("SET LOCAL synchronous_commit = off")
            .await?;
        tx.execute(sql, params).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a failed migration: the version the tenant stayed at (when
    /// known), the error, and whether it is quarantined.
    pub async fn record_migration_failed(
        &self,
        id: Uuid,
        version: Option<i32>,
        error: &str,
        quarantine: bool,
    ) -> Result<(), CatalogError> {
        // pg_notify in the same statement: every process's router learns of
        // the quarantine when it commits, not when its cache expires.
        const SQL: &str = "WITH t AS (UPDATE tenants SET schema_version = COALESCE($2, schema_version), \
             migration_error = $3, quarantined = $4, updated_at = now() WHERE id = $1 \
             RETURNING code) SELECT pg_notify($5, code) FROM t";
        self.client()
            .await?
            .execute(
                SQL,
                &[&id, &version, &error, &quarantine, &crate::notify::CHANNEL],
            )
            .await?;
        Ok(())
    }

    /// Adds one tenant's result to a fleet run (an audit row, committed
    /// without waiting for the WAL flush).
    pub async fn record_fleet_result(&self, r: &MigrationRecord<'_>) -> Result<(), CatalogError> {
        const SQL: &str = "INSERT INTO fleet_run_tenants (operation_id, tenant_id, tenant_code, outcome, \
             from_version, to_version, applied, error, elapsed_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (operation_id, tenant_id) DO NOTHING";
        self.execute_unflushed(
            SQL,
            &[
                &r.operation,
                &r.tenant_id,
                &r.tenant_code,
                &r.outcome.as_str(),
                &r.from_version,
                &r.to_version,
                &r.applied,
                &r.error,
                &r.elapsed_ms,
            ],
        )
        .await
    }

    /// Merges `detail` into an operation's detail (a run's plan or progress).
    pub async fn merge_operation_detail(
        &self,
        id: Uuid,
        detail: &serde_json::Value,
    ) -> Result<(), CatalogError> {
        const SQL: &str = "UPDATE operations SET detail = detail || $2 WHERE id = $1";
        self.client().await?.execute(SQL, &[&id, detail]).await?;
        Ok(())
    }

    /// The per-tenant results recorded for a fleet run, in the order they finished.
    pub async fn fleet_run_results(
        &self,
        operation: Uuid,
    ) -> Result<Vec<FleetRunRow>, CatalogError> {
        const SQL: &str = "SELECT tenant_code, outcome, from_version, to_version, applied, error, \
             finished_at FROM fleet_run_tenants WHERE operation_id = $1 ORDER BY finished_at, tenant_code";
        let rows = self.client().await?.query(SQL, &[&operation]).await?;
        rows.iter()
            .map(|row| {
                let r = super::read::RowReader::new(row, format!("a result of run {operation}"));
                Ok(FleetRunRow {
                    tenant_code: r.get("tenant_code")?,
                    outcome: r.get::<&str>("outcome")?.parse()?,
                    from_version: r.get("from_version")?,
                    to_version: r.get("to_version")?,
                    applied: r.get("applied")?,
                    error: r.get("error")?,
                    finished_at: r.get("finished_at")?,
                })
            })
            .collect()
    }
}
