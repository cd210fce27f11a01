//! Migrations that run outside a transaction: a file whose leading comment
//! lines include `-- tenantd:no-transaction` (for `CREATE INDEX
//! CONCURRENTLY`, `ALTER TYPE … ADD VALUE` followed by its use, `VACUUM`…).
//!
//! Refinery runs every migration inside a transaction. A set is therefore
//! applied in segments: refinery applies the migrations before the next
//! marked one (`Target::Version`), tenantd runs the marked file itself, one
//! statement at a time with no transaction around it, then refinery records
//! it as applied without running it (`Target::FakeVersion`), and so on.
//!
//! ## Retry semantics
//! A marked migration is recorded only after its last statement succeeded.
//! When one of its statements fails, the statements before it stay applied
//! and the migration stays pending: the next run starts it again from its
//! first statement, so write every statement to be run again (`IF NOT
//! EXISTS`, `IF EXISTS`). A failed `CREATE INDEX CONCURRENTLY` leaves an
//! INVALID index behind; before each such statement, an invalid index of
//! that name on that table is dropped (`DROP INDEX CONCURRENTLY`), so the
//! retry rebuilds it instead of failing on the name or keeping an unusable
//! index. An index built concurrently must therefore be named: an unnamed
//! one is refused when the set is loaded, and so is a `BEGIN ATOMIC`
//! function body (its inner `;` cannot be told from a statement's end).

use refinery::{Migration, Target};
use tokio_postgres::Client;

use super::statements::{
    ConcurrentIndex, IndexStatement, concurrent_index, has_atomic_body, split,
};
use super::{MigrateError, MigrationSet};
use crate::ident::quote_ident;

/// The marker, on a leading comment line (`-- tenantd:no-transaction`).
pub const NO_TRANSACTION_MARKER: &str = "tenantd:no-transaction";

/// The invalid index of a name on a table, if any.
const INVALID_INDEX_SQL: &str = "SELECT n.nspname, c.relname FROM pg_catalog.pg_index i \
     JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE i.indrelid = pg_catalog.to_regclass($1) AND c.relname = $2 AND NOT i.indisvalid";

/// Whether `migration` carries the marker on one of its leading comment lines.
pub fn runs_outside_transaction(migration: &Migration) -> bool {
    migration.sql().is_some_and(has_marker)
}

fn has_marker(sql: &str) -> bool {
    for line in sql.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.strip_prefix("--") {
            Some(comment) if comment.trim() == NO_TRANSACTION_MARKER => return true,
            Some(_) => {}
            None => return false,
        }
    }
    false
}

/// Refuses a marked migration that a failed run could not be retried from:
/// one that builds an index concurrently without naming it.
pub(super) fn check(set: super::SchemaSet, migration: &Migration) -> Result<(), MigrateError> {
    if !runs_outside_transaction(migration) {
        return Ok(());
    }
    let sql = migration.sql().unwrap_or_default();
    let refuse = |reason: String| MigrateError::Unretryable {
        set,
        migration: migration.to_string(),
        reason,
    };
    if has_atomic_body(sql) {
        return Err(refuse(
            "it holds a BEGIN ATOMIC function body, whose statements tenantd cannot tell \
             from the migration's own; define the function in an ordinary migration"
                .to_owned(),
        ));
    }
    for (number, statement) in split(sql).into_iter().enumerate() {
        if concurrent_index(statement) == IndexStatement::Unnamed {
            return Err(refuse(format!(
                "its statement {} builds an index CONCURRENTLY without naming it; \
                 name the index, so that the invalid index a failed build leaves can be \
                 found, dropped and rebuilt by the next run",
                number + 1
            )));
        }
    }
    Ok(())
}

impl MigrationSet {
    /// Applies the pending migrations in order, each marked one outside a
    /// transaction (see the module documentation); returns the versions applied.
    pub(super) async fn run_pending(
        &self,
        client: &mut Client,
        database: &str,
    ) -> Result<Vec<i32>, MigrateError> {
        let mut applied = Vec::new();
        loop {
            let history = self.history(client, database).await?;
            let next = self.migrations().iter().find(|m| {
                runs_outside_transaction(m) && !history.iter().any(|h| h.version == m.version())
            });
            let Some(marked) = next else {
                applied.extend(self.run_refinery(client, database, Target::Latest).await?);
                return Ok(applied);
            };
            let before = Target::Version(marked.version().saturating_sub(1));
            applied.extend(self.run_refinery(client, database, before).await?);
            self.run_outside(client, database, marked).await?;
            let record = Target::FakeVersion(marked.version());
            self.run_refinery(client, database, record).await?;
            applied.push(marked.version());
        }
    }

    /// Runs a marked migration's statements one by one, each on its own.
    async fn run_outside(
        &self,
        client: &Client,
        database: &str,
        migration: &Migration,
    ) -> Result<(), MigrateError> {
        tracing::info!(%database, %migration, "applying a migration outside a transaction");
        let sql = migration.sql().unwrap_or_default();
        for (number, statement) in split(sql).into_iter().enumerate() {
            let failed = |source| MigrateError::Outside {
                set: self.schema(),
                database: database.to_owned(),
                migration: migration.to_string(),
                number: number + 1,
                source,
            };
            if let IndexStatement::Named(index) = concurrent_index(statement) {
                drop_invalid_index(client, database, &index)
                    .await
                    .map_err(failed)?;
            }
            client.batch_execute(statement).await.map_err(failed)?;
        }
        Ok(())
    }
}

/// Drops the invalid index a failed concurrent build of `index` left, if any.
async fn drop_invalid_index(
    client: &Client,
    database: &str,
    index: &ConcurrentIndex,
) -> Result<(), tokio_postgres::Error> {
    let table: Vec<String> = index.table.iter().map(|p| quote_ident(p)).collect();
    let row = client
        .query_opt(INVALID_INDEX_SQL, &[&table.join("."), &index.index])
        .await?;
    let Some(row) = row else {
        return Ok(());
    };
    let (schema, name): (String, String) = (row.try_get(0)?, row.try_get(1)?);
    tracing::warn!(%database, %schema, index = %name,
        "dropping the invalid index a failed concurrent build left, to build it again");
    client
        .batch_execute(&format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {}.{}",
            quote_ident(&schema),
            quote_ident(&name)
        ))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_counts_on_leading_comment_lines_only() {
        assert!(has_marker(
            "-- tenantd:no-transaction\nCREATE INDEX CONCURRENTLY a ON t (x);"
        ));
        assert!(has_marker(
            "\n-- Adds the VAT index.\n--   tenantd:no-transaction  \nCREATE INDEX CONCURRENTLY a ON t (x);"
        ));
        assert!(!has_marker(
            "CREATE TABLE t (x int);\n-- tenantd:no-transaction\n"
        ));
        assert!(!has_marker("-- tenantd:no-transaction please\nSELECT 1;"));
    }

    #[test]
    fn an_unnamed_concurrent_index_is_refused_at_load() {
        let unnamed = Migration::unapplied(
            "V2__idx",
            "-- tenantd:no-transaction\nCREATE INDEX CONCURRENTLY ON t (x);",
        )
        .unwrap();
        let err = check(super::super::SchemaSet::Tenant, &unnamed).unwrap_err();
        assert!(err.to_string().contains("without naming it"), "{err}");
        let in_a_transaction =
            Migration::unapplied("V2__idx", "CREATE INDEX CONCURRENTLY ON t (x);").unwrap();
        assert!(check(super::super::SchemaSet::Tenant, &in_a_transaction).is_ok());
    }
}
