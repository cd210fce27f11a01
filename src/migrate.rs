//! The three migration sets (AUTH, SHARED, tenant) and refinery runs of them.
//!
//! Sets are built in (embedded at compile time from `migrations/`) or read at
//! run time from `TENANTD_MIGRATIONS_DIR`. Refinery takes no lock, so every
//! run holds a PostgreSQL advisory lock in the database it migrates: two
//! runners never apply one migration twice. Tenant databases are migrated
//! as the tenant's role and the template as the template owner (`SET ROLE`,
//! the `run_as` of [`MigrationSet::apply`]), so what a migration creates
//! belongs to the tenant — never to the database's owner, tenantd's admin
//! role (see `provision::shape`).
//!
//! A migration whose leading comment lines include `-- tenantd:no-transaction`
//! runs outside a transaction, statement by statement (see `no_transaction`
//! for how, and for what a rerun does after one of its statements failed).
//! Every error names the database, the set, the migration and PostgreSQL's
//! own message ([`crate::pg_error::describe`]), never the driver's bare "db error".

use crate::error_kind::{Classify, ErrorKind};
use std::fmt;
use std::path::{Path, PathBuf};

use refinery::{Migration, Runner, Target};
use tokio_postgres::Client;

use crate::ident::quote_ident;
use crate::pg_error::describe;
use crate::secret::sha256;

mod history;
mod no_transaction;
mod statements;

pub use history::{Drift, history_version, read_history};

mod embedded_auth {
    refinery::embed_migrations!("migrations/auth");
}
mod embedded_shared {
    refinery::embed_migrations!("migrations/shared");
}
mod embedded_tenant {
    refinery::embed_migrations!("migrations/tenant");
}

/// Advisory-lock key (first half) held while migrating a database.
const MIGRATION_LOCK_CLASS: i32 = 0x7E4A_0002;
/// Advisory-lock key (second half): one lock per database, the lock is database-scoped.
const MIGRATION_LOCK_OBJECT: i32 = 1;

/// A migration set could not be loaded or applied.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The migrations directory or one of its sets is missing.
    #[error("migration set {set} not found at {}: expected a directory of V<n>__<name>.sql files", path.display())]
    MissingSet {
        /// Which set.
        set: SchemaSet,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A file could not be read or parsed.
    #[error(
        "cannot load migration set {set} from {}: {}",
        path.display(),
        describe(source)
    )]
    Load {
        /// Which set.
        set: SchemaSet,
        /// Where.
        path: PathBuf,
        /// Refinery's error.
        #[source]
        source: refinery::Error,
    },
    /// The set has no migration.
    #[error("migration set {set} is empty")]
    Empty {
        /// Which set.
        set: SchemaSet,
    },
    /// A migration failed; the database stays at its previous version.
    #[error("migrating {database} ({set}) failed: {}", describe(source))]
    Run {
        /// Which set.
        set: SchemaSet,
        /// The database.
        database: String,
        /// Refinery's error (names the failing migration).
        #[source]
        source: refinery::Error,
    },
    /// A statement of a migration that runs outside a transaction failed:
    /// the statements before it stay applied, the migration stays pending.
    #[error(
        "migrating {database} ({set}) failed: {migration} runs outside a transaction and its \
         statement {number} failed: {}; the statements before it stay applied, and the next run \
         starts {migration} again from its first statement (dropping first an invalid index a \
         failed CONCURRENTLY build left)",
        describe(source)
    )]
    Outside {
        /// Which set.
        set: SchemaSet,
        /// The database.
        database: String,
        /// The migration (`V2__name`).
        migration: String,
        /// Which of its statements failed, from 1.
        number: usize,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A migration marked to run outside a transaction could not be retried
    /// after a failure as written.
    #[error("migration {migration} of set {set} runs outside a transaction, but {reason}")]
    Unretryable {
        /// Which set.
        set: SchemaSet,
        /// The migration (`V2__name`).
        migration: String,
        /// What to change.
        reason: String,
    },
    /// A statement around the run (lock, role switch) failed.
    #[error("migrating {database}: {}", describe(source))]
    Db {
        /// The database.
        database: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
}

impl Classify for MigrateError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::MissingSet { .. }
            | Self::Load { .. }
            | Self::Empty { .. }
            | Self::Unretryable { .. } => ErrorKind::InvalidInput,
            // A connection lost mid-run is a passing failure, like anywhere else.
            Self::Run { source, .. } if crate::pg_error::chain_is_transient(source) => {
                ErrorKind::Unavailable
            }
            Self::Run { .. } => ErrorKind::Internal,
            Self::Outside { source, .. } | Self::Db { source, .. } => source.kind(),
        }
    }
}

/// Which schema a database carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemaSet {
    /// The AUTH database: catalog and identity.
    Auth,
    /// The SHARED database: reference data.
    Shared,
    /// Every tenant database (and the template).
    Tenant,
}

impl SchemaSet {
    /// Directory name under `migrations/`.
    pub fn dir_name(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Shared => "shared",
            Self::Tenant => "tenant",
        }
    }
}

impl fmt::Display for SchemaSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir_name())
    }
}

/// An ordered list of migrations for one schema set.
#[derive(Debug, Clone)]
pub struct MigrationSet {
    set: SchemaSet,
    migrations: Vec<Migration>,
    fingerprint: String,
}

/// The result of applying a set to one database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Versions applied by this run, in order.
    pub versions: Vec<i32>,
    /// The newest version now in the database.
    pub current: Option<i32>,
}

impl MigrationSet {
    /// The built-in set.
    pub fn embedded(set: SchemaSet) -> Result<Self, MigrateError> {
        let runner = match set {
            SchemaSet::Auth => embedded_auth::migrations::runner(),
            SchemaSet::Shared => embedded_shared::migrations::runner(),
            SchemaSet::Tenant => embedded_tenant::migrations::runner(),
        };
        Self::from_migrations(set, runner.get_migrations().clone())
    }

    /// The set under `root/<set>/` (e.g. `TENANTD_MIGRATIONS_DIR/tenant`).
    pub fn from_dir(set: SchemaSet, root: &Path) -> Result<Self, MigrateError> {
        let path = root.join(set.dir_name());
        if !path.is_dir() {
            return Err(MigrateError::MissingSet { set, path });
        }
        let migrations = refinery::load_sql_migrations(&path)
            .map_err(|source| MigrateError::Load { set, path, source })?;
        Self::from_migrations(set, migrations)
    }

    /// The set from `root` when given, else the built-in one.
    pub fn load(set: SchemaSet, root: Option<&Path>) -> Result<Self, MigrateError> {
        match root {
            Some(root) => Self::from_dir(set, root),
            None => Self::embedded(set),
        }
    }

    fn from_migrations(
        set: SchemaSet,
        mut migrations: Vec<Migration>,
    ) -> Result<Self, MigrateError> {
        if migrations.is_empty() {
            return Err(MigrateError::Empty { set });
        }
        migrations.sort_by_key(Migration::version);
        for migration in &migrations {
            no_transaction::check(set, migration)?;
        }
        let mut text = String::new();
        for m in &migrations {
            text.push_str(&format!("{}:{}:{}\n", m.version(), m.name(), m.checksum()));
        }
        let fingerprint = hex::encode(&sha256(text.as_bytes())[..8]);
        Ok(Self {
            set,
            migrations,
            fingerprint,
        })
    }

    /// Which schema this set builds.
    pub fn schema(&self) -> SchemaSet {
        self.set
    }

    /// The migrations, oldest first.
    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    /// The newest version in the set.
    pub fn latest_version(&self) -> i32 {
        self.migrations.last().map_or(0, |m| m.version())
    }

    /// 16 hex digits identifying the set's content (versions, names, checksums).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Applies the pending migrations to the database `client` is connected
    /// to, under that database's migration lock; with `run_as`, the
    /// migrations run as that role so that it owns what they create.
    pub async fn apply(
        &self,
        client: &mut Client,
        database: &str,
        run_as: Option<&str>,
    ) -> Result<Applied, MigrateError> {
        let db_err = |source| MigrateError::Db {
            database: database.to_owned(),
            source,
        };
        client
            .execute(
                "SELECT pg_advisory_lock($1, $2)",
                &[&MIGRATION_LOCK_CLASS, &MIGRATION_LOCK_OBJECT],
            )
            .await
            .map_err(db_err)?;
        let outcome = self.apply_locked(client, database, run_as).await;
        let unlock = client
            .execute(
                "SELECT pg_advisory_unlock($1, $2)",
                &[&MIGRATION_LOCK_CLASS, &MIGRATION_LOCK_OBJECT],
            )
            .await;
        let applied = outcome?;
        unlock.map_err(db_err)?;
        Ok(applied)
    }

    async fn apply_locked(
        &self,
        client: &mut Client,
        database: &str,
        run_as: Option<&str>,
    ) -> Result<Applied, MigrateError> {
        if let Some(role) = run_as {
            client
                .batch_execute(&format!("SET ROLE {}", quote_ident(role)))
                .await
                .map_err(|source| MigrateError::Db {
                    database: database.to_owned(),
                    source,
                })?;
        }
        let versions = self.run_pending(client, database).await;
        if run_as.is_some() {
            // Best effort: the connection is closed by the caller anyway.
            let _ = client.batch_execute("RESET ROLE").await;
        }
        let versions = versions?;
        let current = self.current_version(client, database).await?;
        Ok(Applied { versions, current })
    }

    /// One refinery run up to `target`; returns the versions it applied.
    async fn run_refinery(
        &self,
        client: &mut Client,
        database: &str,
        target: Target,
    ) -> Result<Vec<i32>, MigrateError> {
        let report = Runner::new(&self.migrations)
            .set_abort_divergent(true)
            .set_abort_missing(true)
            .set_target(target)
            .run_async(client)
            .await
            .map_err(|source| MigrateError::Run {
                set: self.set,
                database: database.to_owned(),
                source,
            })?;
        Ok(report
            .applied_migrations()
            .iter()
            .map(Migration::version)
            .collect())
    }

    /// The newest version recorded in the database's migration history.
    pub async fn current_version(
        &self,
        client: &mut Client,
        database: &str,
    ) -> Result<Option<i32>, MigrateError> {
        Runner::new(&self.migrations)
            .get_last_applied_migration_async(client)
            .await
            .map(|m| m.map(|m| m.version()))
            .map_err(|source| MigrateError::Run {
                set: self.set,
                database: database.to_owned(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_sets_load() {
        for set in [SchemaSet::Auth, SchemaSet::Shared, SchemaSet::Tenant] {
            let loaded = MigrationSet::embedded(set).unwrap();
            assert!(loaded.latest_version() >= 1, "{set}");
            assert_eq!(loaded.fingerprint().len(), 16);
        }
    }

    #[test]
    fn missing_dir_is_a_clear_error() {
        let err = MigrationSet::from_dir(SchemaSet::Tenant, Path::new("/nonexistent/tenantd"))
            .unwrap_err();
        assert!(matches!(err, MigrateError::MissingSet { .. }));
        assert!(err.to_string().contains("/nonexistent/tenantd/tenant"));
    }
}
