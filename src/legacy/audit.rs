//! `legacy audit`: for every table of the monolith, its row count and its
//! class inferred from the foreign-key graph (with the path to the société
//! for tenant tables); rows owned by no société, rows whose references lead
//! to two different sociétés, test-data candidates, foreign keys that would
//! cross databases; then recommendations. Written as JSON to
//! `<reports>/audit.json` and summarised as text. Reads only.

use serde::Serialize;
use tokio_postgres::Client;

use super::graph::{Graph, describe, owner_from};
use super::schema::Schema;
use super::{Class, LegacyConfig, LegacyError, Source, normalise_code, read_societes};
use crate::ident::quote_ident;
use crate::tenant::TenantCode;

/// One table's findings.
#[derive(Debug, Clone, Serialize)]
pub struct TableAudit {
    /// Table name.
    pub name: String,
    /// Its class.
    pub class: Class,
    /// Why (inferred reason or override).
    pub reason: String,
    /// For tenant tables: the foreign-key path to the société.
    pub path: Option<String>,
    /// Rows.
    pub rows: i64,
    /// Tenant tables: rows owned by no société (they go to the default société).
    pub unowned_rows: i64,
    /// Tenant tables: rows referring to a row of another société.
    pub conflicting_rows: i64,
    /// Rows matched by the test-data rules.
    pub test_rows: i64,
}

/// A société and the tenant it becomes.
#[derive(Debug, Clone, Serialize)]
pub struct SocieteAudit {
    /// Key in the source.
    pub key: String,
    /// Code in the source.
    pub code: String,
    /// Tenant code it becomes.
    pub tenant_code: String,
    /// Whether that tenant code is valid.
    pub valid: bool,
}

/// The audit.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    /// The source database.
    pub source: String,
    /// Every table.
    pub tables: Vec<TableAudit>,
    /// The sociétés.
    pub societes: Vec<SocieteAudit>,
    /// Foreign keys from tenant to shared tables: not kept (they would cross
    /// databases); `verify` checks them instead.
    pub cross_database_references: Vec<String>,
    /// What to do before running.
    pub recommendations: Vec<String>,
}

impl AuditReport {
    /// Total of a column over the tables of `class`.
    pub fn rows_of(&self, class: Class) -> i64 {
        self.tables
            .iter()
            .filter(|t| t.class == class)
            .map(|t| t.rows)
            .sum()
    }

    /// A readable summary.
    pub fn text(&self) -> String {
        let mut text = format!(
            "source {}: {} sociétés; {:<24} {:<7} {:>10} {:>8} {:>8} {:>6}  path\n",
            self.source,
            self.societes.len(),
            "TABLE",
            "CLASS",
            "ROWS",
            "UNOWNED",
            "CONFLICT",
            "TEST"
        );
        for t in &self.tables {
            text.push_str(&format!(
                "{:<24} {:<7} {:>10} {:>8} {:>8} {:>6}  {}\n",
                t.name,
                format!("{:?}", t.class).to_lowercase(),
                t.rows,
                t.unowned_rows,
                t.conflicting_rows,
                t.test_rows,
                t.path.as_deref().unwrap_or(&t.reason)
            ));
        }
        text.push_str("recommendations:");
        for r in &self.recommendations {
            text.push_str(&format!("\n  - {r}"));
        }
        text
    }
}

/// Audits the source and writes `<reports>/audit.json`.
#[tracing::instrument(skip_all)]
pub async fn audit(config: &LegacyConfig) -> Result<AuditReport, LegacyError> {
    let source = Source::new(config)?;
    let src = source.connect().await?;
    let schema = Schema::read(&src)
        .await
        .map_err(LegacyError::db("read the source schema"))?;
    let graph = Graph::classify(&schema, config);
    let mut tables = Vec::new();
    for (name, classified) in &graph.tables {
        let mut audit = TableAudit {
            name: name.clone(),
            class: classified.class,
            reason: classified.reason.clone(),
            path: (classified.class == Class::Tenant).then(|| describe(name, &classified.path)),
            rows: count(&src, &format!("SELECT count(*) FROM {}", quote_ident(name))).await?,
            unowned_rows: 0,
            conflicting_rows: 0,
            test_rows: 0,
        };
        if classified.class == Class::Tenant {
            let (from, owner) = owner_from(name, &classified.path, "t");
            audit.unowned_rows = count(
                &src,
                &format!("SELECT count(*) FROM {from} WHERE {owner} IS NULL"),
            )
            .await?;
            audit.conflicting_rows = conflicts(&src, &schema, &graph, name).await?;
        }
        for rule in config.test_data.iter().filter(|r| &r.table == name) {
            let sql = format!(
                "SELECT count(*) FROM {} AS t WHERE ({})",
                quote_ident(name),
                rule.condition
            );
            audit.test_rows += count(&src, &sql).await?;
        }
        tables.push(audit);
    }
    let cross_database_references = schema
        .foreign_keys
        .iter()
        .filter(|fk| {
            graph.class(&fk.table) == Some(Class::Tenant)
                && graph.class(&fk.parent) == Some(Class::Shared)
        })
        .map(|fk| {
            format!(
                "{}.{} → {}.{}",
                fk.table,
                fk.columns.join(","),
                fk.parent,
                fk.parent_columns.join(",")
            )
        })
        .collect();
    let mut report = AuditReport {
        source: source.database.clone(),
        tables,
        societes: societes(&src, config).await?,
        cross_database_references,
        recommendations: Vec::new(),
    };
    report.recommendations = recommend(&report, config);
    super::write_json(&config.output.reports.join("audit.json"), &report)?;
    Ok(report)
}

async fn count(src: &Client, sql: &str) -> Result<i64, LegacyError> {
    Ok(src
        .query_one(sql, &[])
        .await
        .map_err(LegacyError::db(format!("audit: {sql}")))?
        .get(0))
}

/// Rows of tenant table `name` whose foreign keys to other tenant tables
/// lead to a different société than its own path.
async fn conflicts(
    src: &Client,
    schema: &Schema,
    graph: &Graph,
    name: &str,
) -> Result<i64, LegacyError> {
    let path = graph.path(name);
    let mut total = 0;
    for fk in schema
        .foreign_keys_of(name)
        .filter(|fk| fk.columns.len() == 1)
    {
        let first_hop = path.first().is_some_and(|h| h.column == fk.columns[0]);
        if first_hop || fk.parent == name || graph.class(&fk.parent) != Some(Class::Tenant) {
            continue;
        }
        let (from_t, owner_t) = owner_from(name, path, "a");
        let (from_p, owner_p) = owner_from(&fk.parent, graph.path(&fk.parent), "b");
        let parent = if from_p.contains(" JOIN ") {
            format!("({from_p})")
        } else {
            from_p
        };
        let sql = format!(
            "SELECT count(*) FROM {from_t} JOIN {parent} ON b0.{} = a0.{} WHERE {owner_t} IS DISTINCT FROM {owner_p}",
            quote_ident(&fk.parent_columns[0]),
            quote_ident(&fk.columns[0])
        );
        total += count(src, &sql).await?;
    }
    Ok(total)
}

async fn societes(src: &Client, config: &LegacyConfig) -> Result<Vec<SocieteAudit>, LegacyError> {
    Ok(read_societes(src, config)
        .await?
        .into_iter()
        .map(|s| {
            let code = s.code;
            let tenant_code = normalise_code(&code);
            SocieteAudit {
                key: s.key,
                valid: TenantCode::parse(&tenant_code).is_ok(),
                code,
                tenant_code,
            }
        })
        .collect())
}

fn recommend(report: &AuditReport, config: &LegacyConfig) -> Vec<String> {
    let mut out = Vec::new();
    let default = &config.default_societe.code;
    for t in &report.tables {
        if t.unowned_rows > 0 {
            out.push(format!("{} row(s) of {} are owned by no société: they go to the default société {default}; assign them in the source if that is wrong", t.unowned_rows, t.name));
        }
        if t.conflicting_rows > 0 {
            out.push(format!("{} row(s) of {} refer to rows of another société: the copy would break their foreign keys; fix them in the source before `run`", t.conflicting_rows, t.name));
        }
        if t.test_rows > 0 {
            out.push(format!(
                "{} test row(s) in {}: take a `backup`, then `clean --execute`",
                t.test_rows, t.name
            ));
        }
        if t.class == Class::Skip && t.rows > 0 {
            out.push(format!(
                "{} ({} rows) is left behind: classify it under [classification] if it must move",
                t.name, t.rows
            ));
        }
    }
    for s in report.societes.iter().filter(|s| !s.valid) {
        out.push(format!(
            "société {:?} gives the invalid tenant code {:?}: rename it in the source",
            s.code, s.tenant_code
        ));
    }
    let mut codes: Vec<&str> = report
        .societes
        .iter()
        .map(|s| s.tenant_code.as_str())
        .collect();
    codes.sort_unstable();
    for pair in codes.windows(2).filter(|p| p[0] == p[1]) {
        out.push(format!(
            "two sociétés give the tenant code {:?}: make their codes distinct",
            pair[0]
        ));
    }
    if !report.cross_database_references.is_empty() {
        out.push(format!("{} foreign key(s) from tenant to shared tables will cross databases: they are dropped and `verify` checks them", report.cross_database_references.len()));
    }
    if out.is_empty() {
        out.push("nothing to fix: run `check`, then `run`".to_owned());
    }
    out
}
