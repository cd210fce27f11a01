//! `legacy verify`: after a run, every tenant table holds exactly the rows
//! its société owns in the source (counts compared with the source, as the
//! audit counts them); foreign keys inside every tenant database resolve
//! (orphans = 0); every reference from a tenant row to a shared row — the
//! foreign keys that would cross databases — resolves in SHARED; SHARED and
//! AUTH hold the source's reference data and users. Records each tenant
//! table's checksum in AUTH, which rollback compares to detect later writes.

use std::collections::HashMap;

use serde::Serialize;
use tokio_postgres::Client;

use super::graph::{Graph, owner_from};
use super::schema::{ForeignKey, Schema};
use super::{Class, LegacyConfig, LegacyError, Source, identity};
use crate::Orchestrator;
use crate::catalog::{LegacyRun, RunTenant, SHARED_TARGET};
use crate::ident::quote_ident;
use crate::tenant::TenantCode;

/// One difference.
#[derive(Debug, Clone, Serialize)]
pub struct Mismatch {
    /// Tenant code, `shared` or `auth`.
    pub target: String,
    /// Table (or foreign key) concerned.
    pub table: String,
    /// What was checked.
    pub check: String,
    /// Expected value.
    pub expected: i64,
    /// Found value.
    pub found: i64,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}: expected {}, found {}",
            self.target, self.table, self.check, self.expected, self.found
        )
    }
}

/// The result of `verify`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Number of checks made.
    pub checks: usize,
    /// Tenant rows found in tenant databases.
    pub tenant_rows: i64,
    /// The differences (empty when all is well).
    pub mismatches: Vec<Mismatch>,
}

impl VerifyReport {
    /// True when nothing differs.
    pub fn ok(&self) -> bool {
        self.mismatches.is_empty()
    }

    fn compare(&mut self, target: &str, table: &str, check: &str, expected: i64, found: i64) {
        self.checks += 1;
        if expected != found {
            self.mismatches.push(Mismatch {
                target: target.to_owned(),
                table: table.to_owned(),
                check: check.to_owned(),
                expected,
                found,
            });
        }
    }

    /// A readable summary (the diff when something differs).
    pub fn text(&self) -> String {
        let mut text = format!(
            "{} checks, {} tenant rows, {} mismatch(es)",
            self.checks,
            self.tenant_rows,
            self.mismatches.len()
        );
        for m in &self.mismatches {
            text.push_str(&format!("\n  ✗ {m}"));
        }
        text
    }
}

/// Row count and content checksum of a table.
pub const FINGERPRINT: &str =
    "SELECT count(*)::bigint, coalesce(sum(hashtext(t::text)::bigint), 0)::bigint FROM ";

/// `(count, checksum)` of `table` in the database of `client`.
pub async fn fingerprint(client: &Client, table: &str) -> Result<(i64, i64), LegacyError> {
    let sql = format!("{FINGERPRINT}{} AS t", quote_ident(table));
    let row = client
        .query_one(&sql, &[])
        .await
        .map_err(LegacyError::db(format!("fingerprint {table}")))?;
    Ok((row.get(0), row.get(1)))
}

/// Verifies the run of `config`'s source.
#[tracing::instrument(skip_all)]
pub async fn verify(
    orchestrator: &Orchestrator,
    config: &LegacyConfig,
) -> Result<VerifyReport, LegacyError> {
    let source = Source::new(config)?;
    let src = source.connect().await?;
    let schema = Schema::read(&src)
        .await
        .map_err(LegacyError::db("read the source schema"))?;
    let graph = Graph::classify(&schema, config);
    let progress = orchestrator.legacy_run(&source.database);
    let tenants = progress.tenants().await?;
    if tenants.is_empty() {
        return Err(LegacyError::Refused(format!(
            "no run of {} is recorded in AUTH; run `tenantd legacy run` first",
            source.database
        )));
    }
    let shared = orchestrator.shared_admin_connection().await?;
    let mut report = VerifyReport::default();
    let (users, found) = identity::count_in_auth(&src, orchestrator, config).await?;
    report.compare("auth", &config.users.table, "users in AUTH", users, found);
    for table in &graph.shared_order {
        let expected = count(&src, table).await?;
        let found = count(&shared, table).await?;
        report.compare(SHARED_TARGET, table, "rows", expected, found);
    }
    let expected = expected_counts(&src, &graph).await?;
    let shared_refs = shared_references(&schema, &graph);
    for tenant in &tenants {
        let code = TenantCode::parse(&tenant.code).map_err(crate::Error::from)?;
        let client = orchestrator.tenant_admin_connection(&code).await?;
        let ctx = TenantCheck {
            tenant,
            client: &client,
            shared: &shared,
            progress: &progress,
        };
        ctx.check(&graph, &expected, &shared_refs, &mut report)
            .await?;
    }
    Ok(report)
}

async fn count(client: &Client, table: &str) -> Result<i64, LegacyError> {
    let sql = format!("SELECT count(*) FROM {}", quote_ident(table));
    Ok(client
        .query_one(&sql, &[])
        .await
        .map_err(LegacyError::db(format!("count {table}")))?
        .get(0))
}

/// Per tenant table: rows by owning société key (`None`: owned by none).
type Expected = HashMap<String, HashMap<Option<String>, i64>>;

async fn expected_counts(src: &Client, graph: &Graph) -> Result<Expected, LegacyError> {
    let mut expected = HashMap::new();
    for table in &graph.tenant_order {
        let (from, owner) = owner_from(table, graph.path(table), "t");
        let sql = format!("SELECT ({owner})::text, count(*) FROM {from} GROUP BY 1");
        let rows = src
            .query(&sql, &[])
            .await
            .map_err(LegacyError::db(format!("count {table} by société")))?;
        let counts = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        expected.insert(table.clone(), counts);
    }
    Ok(expected)
}

/// Source foreign keys from tenant tables to shared tables (single column).
fn shared_references<'a>(schema: &'a Schema, graph: &Graph) -> Vec<&'a ForeignKey> {
    schema
        .foreign_keys
        .iter()
        .filter(|fk| fk.columns.len() == 1)
        .filter(|fk| {
            graph.class(&fk.table) == Some(Class::Tenant)
                && graph.class(&fk.parent) == Some(Class::Shared)
        })
        .collect()
}

struct TenantCheck<'a> {
    tenant: &'a RunTenant,
    client: &'a Client,
    shared: &'a Client,
    progress: &'a LegacyRun,
}

impl TenantCheck<'_> {
    async fn check(
        &self,
        graph: &Graph,
        expected: &Expected,
        shared_refs: &[&ForeignKey],
        report: &mut VerifyReport,
    ) -> Result<(), LegacyError> {
        let code = &self.tenant.code;
        for table in &graph.tenant_order {
            let counts = expected.get(table);
            let get = |k: Option<String>| counts.and_then(|c| c.get(&k)).copied().unwrap_or(0);
            let mut want = self.tenant.societe_key.clone().map_or(0, |k| get(Some(k)));
            if self.tenant.takes_orphans {
                want += get(None);
            }
            let (found, checksum) = fingerprint(self.client, table).await?;
            report.tenant_rows += found;
            report.compare(code, table, "rows", want, found);
            self.progress.set_checksum(code, table, checksum).await?;
        }
        let target = Schema::read(self.client)
            .await
            .map_err(LegacyError::db("read a tenant schema"))?;
        for fk in &target.foreign_keys {
            let orphans = orphans(self.client, fk).await?;
            report.compare(
                code,
                &format!("{} ({})", fk.table, fk.name),
                "rows referring to no row (orphans)",
                0,
                orphans,
            );
        }
        for fk in shared_refs {
            let missing = self.missing_shared(fk).await?;
            let what = format!(
                "{}.{} → SHARED {}.{}",
                fk.table, fk.columns[0], fk.parent, fk.parent_columns[0]
            );
            report.compare(code, &what, "values missing from SHARED", 0, missing);
        }
        Ok(())
    }

    async fn missing_shared(&self, fk: &ForeignKey) -> Result<i64, LegacyError> {
        let column = quote_ident(&fk.columns[0]);
        let sql = format!(
            "SELECT DISTINCT {column}::text FROM {} WHERE {column} IS NOT NULL",
            quote_ident(&fk.table)
        );
        let values: Vec<String> = self
            .client
            .query(&sql, &[])
            .await
            .map_err(LegacyError::db(format!("read {}.{column}", fk.table)))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let sql = format!(
            "SELECT count(*) FROM unnest($1::text[]) AS v(value)
             WHERE NOT EXISTS (SELECT 1 FROM {} AS p WHERE p.{}::text = v.value)",
            quote_ident(&fk.parent),
            quote_ident(&fk.parent_columns[0])
        );
        Ok(self
            .shared
            .query_one(&sql, &[&values])
            .await
            .map_err(LegacyError::db(format!("look up {} in SHARED", fk.parent)))?
            .get(0))
    }
}

/// Rows of `fk.table` whose non-null key finds no parent row.
async fn orphans(client: &Client, fk: &ForeignKey) -> Result<i64, LegacyError> {
    let not_null: Vec<String> = fk
        .columns
        .iter()
        .map(|c| format!("c.{} IS NOT NULL", quote_ident(c)))
        .collect();
    let joins: Vec<String> = fk
        .columns
        .iter()
        .zip(&fk.parent_columns)
        .map(|(c, p)| format!("p.{} = c.{}", quote_ident(p), quote_ident(c)))
        .collect();
    let sql = format!(
        "SELECT count(*) FROM {} AS c WHERE {} AND NOT EXISTS (SELECT 1 FROM {} AS p WHERE {})",
        quote_ident(&fk.table),
        not_null.join(" AND "),
        quote_ident(&fk.parent),
        joins.join(" AND ")
    );
    Ok(client
        .query_one(&sql, &[])
        .await
        .map_err(LegacyError::db(format!("look for orphans of {}", fk.name)))?
        .get(0))
}
