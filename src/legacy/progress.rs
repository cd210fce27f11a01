//! The run's record in AUTH (tables of `migrations/auth/V2__legacy.sql`):
//! which tenants it provisions, which units (a tenant's table, a shared
//! table, the users…) are copied, and their verified checksums. A unit
//! without a row is not done: the run truncates and copies it again.

use std::collections::HashMap;

use tokio_postgres::Client;

use super::LegacyError;

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

/// The run's record for one source, on an AUTH connection.
pub struct Progress<'a> {
    auth: &'a Client,
    source: String,
}

impl<'a> Progress<'a> {
    /// The record of `source` in the AUTH database `auth` is connected to.
    pub fn new(auth: &'a Client, source: &str) -> Self {
        Self {
            auth,
            source: source.to_owned(),
        }
    }

    /// Creates the run's row unless it exists; true when it already existed.
    pub async fn start(&self) -> Result<bool, LegacyError> {
        let inserted = self
            .auth
            .execute(
                "INSERT INTO legacy_runs (source) VALUES ($1) ON CONFLICT DO NOTHING",
                &[&self.source],
            )
            .await
            .map_err(LegacyError::db("record the run in AUTH"))?;
        Ok(inserted == 0)
    }

    /// Whether AUTH holds a run of this source.
    pub async fn exists(&self) -> Result<bool, LegacyError> {
        Ok(self
            .auth
            .query_opt(
                "SELECT 1 FROM legacy_runs WHERE source = $1",
                &[&self.source],
            )
            .await
            .map_err(LegacyError::db("read the run from AUTH"))?
            .is_some())
    }

    /// Marks the run finished.
    pub async fn finish(&self) -> Result<(), LegacyError> {
        self.auth
            .execute(
                "UPDATE legacy_runs SET finished_at = now() WHERE source = $1",
                &[&self.source],
            )
            .await
            .map_err(LegacyError::db("mark the run finished"))?;
        Ok(())
    }

    /// Records a tenant before it is provisioned.
    pub async fn add_tenant(&self, tenant: &RunTenant) -> Result<(), LegacyError> {
        self.auth
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
            .await
            .map_err(LegacyError::db("record a tenant of the run"))?;
        Ok(())
    }

    /// The tenants of the run, by code.
    pub async fn tenants(&self) -> Result<Vec<RunTenant>, LegacyError> {
        let rows = self
            .auth
            .query(
                "SELECT tenant_code, societe_key, takes_orphans FROM legacy_tenants
                 WHERE source = $1 ORDER BY tenant_code",
                &[&self.source],
            )
            .await
            .map_err(LegacyError::db("read the run's tenants"))?;
        Ok(rows
            .iter()
            .map(|r| RunTenant {
                code: r.get(0),
                societe_key: r.get(1),
                takes_orphans: r.get(2),
            })
            .collect())
    }

    /// Every finished unit, by (target, table).
    pub async fn done(&self) -> Result<HashMap<(String, String), Done>, LegacyError> {
        let rows = self
            .auth
            .query(
                "SELECT target, table_name, rows_copied, checksum FROM legacy_progress WHERE source = $1",
                &[&self.source],
            )
            .await
            .map_err(LegacyError::db("read the run's progress"))?;
        Ok(rows
            .iter()
            .map(|r| {
                let done = Done {
                    rows: r.get(2),
                    checksum: r.get(3),
                };
                ((r.get(0), r.get(1)), done)
            })
            .collect())
    }

    /// Marks a unit done.
    pub async fn mark_done(&self, target: &str, table: &str, rows: i64) -> Result<(), LegacyError> {
        self.auth
            .execute(
                "INSERT INTO legacy_progress (source, target, table_name, rows_copied)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (source, target, table_name)
                 DO UPDATE SET rows_copied = EXCLUDED.rows_copied, checksum = NULL, finished_at = now()",
                &[&self.source, &target, &table, &rows],
            )
            .await
            .map_err(LegacyError::db("record a copied table"))?;
        Ok(())
    }

    /// Marks several units of one target done with no rows.
    pub async fn mark_empty(&self, target: &str, tables: &[String]) -> Result<(), LegacyError> {
        if tables.is_empty() {
            return Ok(());
        }
        self.auth
            .execute(
                "INSERT INTO legacy_progress (source, target, table_name, rows_copied)
                 SELECT $1, $2, t, 0 FROM unnest($3::text[]) AS t
                 ON CONFLICT (source, target, table_name)
                 DO UPDATE SET rows_copied = 0, checksum = NULL, finished_at = now()",
                &[&self.source, &target, &tables],
            )
            .await
            .map_err(LegacyError::db("record empty tables"))?;
        Ok(())
    }

    /// Records the checksum verify computed for a unit.
    pub async fn set_checksum(
        &self,
        target: &str,
        table: &str,
        checksum: i64,
    ) -> Result<(), LegacyError> {
        self.auth
            .execute(
                "UPDATE legacy_progress SET checksum = $4
                 WHERE source = $1 AND target = $2 AND table_name = $3",
                &[&self.source, &target, &table, &checksum],
            )
            .await
            .map_err(LegacyError::db("record a verified checksum"))?;
        Ok(())
    }

    /// Forgets the run (after a rollback into an AUTH that stays).
    pub async fn forget(&self) -> Result<(), LegacyError> {
        self.auth
            .execute("DELETE FROM legacy_runs WHERE source = $1", &[&self.source])
            .await
            .map_err(LegacyError::db("forget the run"))?;
        Ok(())
    }
}
