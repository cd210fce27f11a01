//! The legacy split's record in AUTH (tables of
//! `migrations/auth/V2__legacy.sql`): which tenants a run provisions, which
//! units (a tenant's table, a shared table, the users…) are copied, and their
//! verified checksums. A unit without a row is not done: the run truncates
//! and copies it again.

use std::collections::HashMap;

use super::{Catalog, CatalogError};

/// The `target` of AUTH units.
pub const AUTH_TARGET: &str = "auth";
/// The `target` of SHARED units.
pub const SHARED_TARGET: &str = "shared";

/// A tenant the run provisions.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunTenant {
    /// Its tenant code.
    pub code: String,
    /// The société key in the source (`None` for a new default société).
    pub societe_key: Option<String>,
    /// Receives the rows owned by no société.
    pub takes_orphans: bool,
}

/// A finished unit.
#[derive(Debug, Clone)]
pub struct Done {
    /// Rows copied.
    pub rows: i64,
    /// Checksum recorded by verify.
    pub checksum: Option<i64>,
}

/// The split's record of one source database.
pub struct LegacyRun {
    catalog: Catalog,
    source: String,
}

impl LegacyRun {
    /// The record of the run of `source`.
    pub fn new(catalog: Catalog, source: &str) -> Self {
        Self {
            catalog,
            source: source.to_owned(),
        }
    }

    /// Creates the run's row unless it exists; true when it already existed.
    pub async fn start(&self) -> Result<bool, CatalogError> {
        let inserted = self
            .catalog
            .client()
            .await?
            .execute(
                "INSERT INTO legacy_runs (source) VALUES ($1) ON CONFLICT DO NOTHING",
                &[&self.source],
            )
            .await?;
        Ok(inserted == 0)
    }

    /// Whether AUTH holds a run of this source.
    pub async fn exists(&self) -> Result<bool, CatalogError> {
        let found = self
            .catalog
            .client()
            .await?
            .query_opt(
                "SELECT 1 FROM legacy_runs WHERE source = $1",
                &[&self.source],
            )
            .await?;
        Ok(found.is_some())
    }

    /// Marks the run finished.
    pub async fn finish(&self) -> Result<(), CatalogError> {
        self.catalog
            .client()
            .await?
            .execute(
                "UPDATE legacy_runs SET finished_at = now() WHERE source = $1",
                &[&self.source],
            )
            .await?;
        Ok(())
    }

    /// Records a tenant before it is provisioned.
    pub async fn add_tenant(&self, tenant: &RunTenant) -> Result<(), CatalogError> {
        self.catalog
            .client()
            .await?
            .execute(
                "INSERT INTO legacy_tenants (source, tenant_code, societe_key, takes_orphans)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[
                    &self.source,
                    &tenant.code,
                    &tenant.societe_key,
                    &tenant.takes_orphans,
                ],
            )
            .await?;
        Ok(())
    }

    /// The tenants of the run, by code.
    pub async fn tenants(&self) -> Result<Vec<RunTenant>, CatalogError> {
        let rows = self
            .catalog
            .client()
            .await?
            .query(
                "SELECT tenant_code, societe_key, takes_orphans FROM legacy_tenants
                 WHERE source = $1 ORDER BY tenant_code",
                &[&self.source],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RunTenant {
                    code: r.try_get(0)?,
                    societe_key: r.try_get(1)?,
                    takes_orphans: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// Every finished unit, by (target, table).
    pub async fn done(&self) -> Result<HashMap<(String, String), Done>, CatalogError> {
        let rows = self
            .catalog
            .client()
            .await?
            .query(
                "SELECT target, table_name, rows_copied, checksum FROM legacy_progress WHERE source = $1",
                &[&self.source],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let done = Done {
                    rows: r.try_get(2)?,
                    checksum: r.try_get(3)?,
                };
                Ok(((r.try_get(0)?, r.try_get(1)?), done))
            })
            .collect()
    }

    /// Marks a unit done.
    pub async fn mark_done(
        &self,
        target: &str,
        table: &str,
        rows: i64,
    ) -> Result<(), CatalogError> {
        self.catalog
            .client()
            .await?
            .execute(
                "INSERT INTO legacy_progress (source, target, table_name, rows_copied)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (source, target, table_name)
                 DO UPDATE SET rows_copied = EXCLUDED.rows_copied, checksum = NULL, finished_at = now()",
                &[&self.source, &target, &table, &rows],
            )
            .await?;
        Ok(())
    }

    /// Marks several units of one target done with no rows.
    pub async fn mark_empty(&self, target: &str, tables: &[String]) -> Result<(), CatalogError> {
        if tables.is_empty() {
            return Ok(());
        }
        self.catalog
            .client()
            .await?
            .execute(
                "INSERT INTO legacy_progress (source, target, table_name, rows_copied)
                 SELECT $1, $2, t, 0 FROM unnest($3::text[]) AS t
                 ON CONFLICT (source, target, table_name)
                 DO UPDATE SET rows_copied = 0, checksum = NULL, finished_at = now()",
                &[&self.source, &target, &tables],
            )
            .await?;
        Ok(())
    }

    /// Records the checksum verify computed for a unit.
    pub async fn set_checksum(
        &self,
        target: &str,
        table: &str,
        checksum: i64,
    ) -> Result<(), CatalogError> {
        self.catalog
            .client()
            .await?
            .execute(
                "UPDATE legacy_progress SET checksum = $4
                 WHERE source = $1 AND target = $2 AND table_name = $3",
                &[&self.source, &target, &table, &checksum],
            )
            .await?;
        Ok(())
    }

    /// Forgets the run (after a rollback into an AUTH that stays).
    pub async fn forget(&self) -> Result<(), CatalogError> {
        self.catalog
            .client()
            .await?
            .execute("DELETE FROM legacy_runs WHERE source = $1", &[&self.source])
            .await?;
        Ok(())
    }
}
