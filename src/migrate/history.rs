//! A database's applied migration history (refinery's
//! `refinery_schema_history` table) and how it compares with a set's files:
//! what is pending, and what has drifted (a migration applied with another
//! checksum, or applied but missing from the files). Reads only; applying is
//! [`super::MigrationSet::apply`]'s job.

use serde::Serialize;
use tokio_postgres::Client;

use super::{MigrateError, MigrationSet};

/// The history table refinery keeps in every migrated database.
const HISTORY_SQL: &str =
    "SELECT version, name, checksum FROM refinery_schema_history ORDER BY version";

/// One row of a database's migration history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedMigration {
    /// The migration's version.
    pub version: i32,
    /// Its name as recorded when applied.
    pub name: String,
    /// Its checksum as recorded when applied (refinery's u64, as text).
    pub checksum: String,
}

/// A disagreement between a database and the migration files (or the catalog).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Drift {
    /// The migration was applied from a file with different content.
    ChecksumMismatch {
        /// Version.
        version: i32,
        /// Name in the files.
        name: String,
        /// Checksum recorded in the database.
        applied: String,
        /// Checksum of the file now.
        file: String,
    },
    /// The database has a migration the files do not have.
    MissingFile {
        /// Version.
        version: i32,
        /// Name recorded in the database.
        name: String,
    },
    /// The catalog's schema version disagrees with the database's history.
    CatalogVersion {
        /// What the catalog says.
        catalog: Option<i32>,
        /// What the database says.
        database: Option<i32>,
    },
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ChecksumMismatch {
                version,
                name,
                applied,
                file,
            } => write!(
                f,
                "V{version}__{name} was applied with checksum {applied}, the file now has {file}"
            ),
            Self::MissingFile { version, name } => {
                write!(
                    f,
                    "V{version}__{name} is applied but missing from the files"
                )
            }
            Self::CatalogVersion { catalog, database } => write!(
                f,
                "the catalog records version {catalog:?}, the database is at {database:?}"
            ),
        }
    }
}

/// Reads the history of the database `client` is connected to (empty when
/// the database was never migrated).
pub async fn read_history(client: &Client) -> Result<Vec<AppliedMigration>, tokio_postgres::Error> {
    match client.query(HISTORY_SQL, &[]).await {
        Ok(rows) => Ok(rows
            .iter()
            .map(|row| AppliedMigration {
                version: row.get(0),
                name: row.get::<_, Option<String>>(1).unwrap_or_default(),
                checksum: row.get::<_, Option<String>>(2).unwrap_or_default(),
            })
            .collect()),
        Err(e) if crate::pg_error::is_undefined_table(&e) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The newest version of a history.
pub fn history_version(history: &[AppliedMigration]) -> Option<i32> {
    history.iter().map(|m| m.version).max()
}

impl MigrationSet {
    /// Versions of the set newer than `version` (all of them for `None`).
    pub fn pending_after(&self, version: Option<i32>) -> Vec<i32> {
        self.migrations()
            .iter()
            .map(|m| m.version())
            .filter(|v| version.is_none_or(|current| *v > current))
            .collect()
    }

    /// Versions of the set missing from `history`.
    pub fn pending_in(&self, history: &[AppliedMigration]) -> Vec<i32> {
        self.migrations()
            .iter()
            .map(|m| m.version())
            .filter(|v| !history.iter().any(|h| h.version == *v))
            .collect()
    }

    /// How `history` departs from the files: checksums that differ and
    /// versions the files do not have.
    pub fn drift(&self, history: &[AppliedMigration]) -> Vec<Drift> {
        history
            .iter()
            .filter_map(|applied| {
                let file = self
                    .migrations()
                    .iter()
                    .find(|m| m.version() == applied.version);
                match file {
                    None => Some(Drift::MissingFile {
                        version: applied.version,
                        name: applied.name.clone(),
                    }),
                    Some(m) if m.checksum().to_string() != applied.checksum => {
                        Some(Drift::ChecksumMismatch {
                            version: applied.version,
                            name: m.name().to_owned(),
                            applied: applied.checksum.clone(),
                            file: m.checksum().to_string(),
                        })
                    }
                    Some(_) => None,
                }
            })
            .collect()
    }

    /// Reads the history of `database` (through `client`).
    pub async fn history(
        &self,
        client: &Client,
        database: &str,
    ) -> Result<Vec<AppliedMigration>, MigrateError> {
        read_history(client)
            .await
            .map_err(|source| MigrateError::Db {
                database: database.to_owned(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::SchemaSet;

    #[test]
    fn drift_and_pending() {
        let set = MigrationSet::embedded(SchemaSet::Tenant).unwrap();
        let v1 = &set.migrations()[0];
        let good = AppliedMigration {
            version: 1,
            name: v1.name().to_owned(),
            checksum: v1.checksum().to_string(),
        };
        assert!(set.drift(std::slice::from_ref(&good)).is_empty());
        assert!(set.pending_in(std::slice::from_ref(&good)).is_empty());
        assert_eq!(set.pending_in(&[]), vec![1]);
        assert_eq!(set.pending_after(None), vec![1]);
        assert!(set.pending_after(Some(1)).is_empty());
        let changed = AppliedMigration {
            checksum: "42".to_owned(),
            ..good.clone()
        };
        assert!(matches!(
            set.drift(&[changed])[..],
            [Drift::ChecksumMismatch { version: 1, .. }]
        ));
        let extra = AppliedMigration {
            version: 9,
            name: "gone".to_owned(),
            checksum: "1".to_owned(),
        };
        assert!(matches!(
            set.drift(&[good, extra])[..],
            [Drift::MissingFile { version: 9, .. }]
        ));
    }
}
