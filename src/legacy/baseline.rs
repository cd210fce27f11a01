//! `legacy baseline`: writes V1 migration files for SHARED and the tenants
//! from the source's DDL of the classified tables (columns, defaults,
//! identities, primary keys, unique and check constraints, indexes, foreign
//! keys inside one database), so an ERP without migration files can start
//! from its monolith. Foreign keys that would cross databases are left out
//! (`verify` checks them), and so are the columns that point at the société
//! table (the database is the société now). The built-in AUTH set is written
//! beside them, so the directory works as `TENANTD_MIGRATIONS_DIR`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;
use tokio_postgres::Client;

use super::graph::Graph;
use super::schema::Schema;
use super::{Class, LegacyConfig, LegacyError, Source};
use crate::ident::quote_ident;
use crate::migrate::{MigrationSet, SchemaSet};

/// What baseline wrote.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineReport {
    /// The migrations directory (with `auth/`, `shared/`, `tenant/`).
    pub dir: PathBuf,
    /// Tables per set.
    pub shared_tables: Vec<String>,
    /// Tables of the tenant set.
    pub tenant_tables: Vec<String>,
    /// Foreign keys left out (they would cross databases).
    pub dropped_foreign_keys: Vec<String>,
    /// Columns left out (`table.column`, references to the société table).
    pub dropped_columns: Vec<String>,
}

impl BaselineReport {
    /// A readable summary.
    pub fn text(&self) -> String {
        format!(
            "wrote {} (use it as TENANTD_MIGRATIONS_DIR): {} shared and {} tenant tables; left out foreign keys {:?} (verify checks them) and columns {:?}",
            self.dir.display(),
            self.shared_tables.len(),
            self.tenant_tables.len(),
            self.dropped_foreign_keys,
            self.dropped_columns
        )
    }
}

const COLUMNS: &str =
    "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity::text,
       a.attgenerated::text, pg_get_expr(d.adbin, d.adrelid)
FROM pg_attribute a
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum";

const CONSTRAINTS: &str = "SELECT k.conname, k.contype::text, pg_get_constraintdef(k.oid),
       array(SELECT a.attname FROM unnest(k.conkey) u(n) JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n)::text[],
       coalesce(p.relname, '')
FROM pg_constraint k
LEFT JOIN pg_class p ON p.oid = k.confrelid
WHERE k.conrelid = $1::text::regclass AND k.contype IN ('p', 'u', 'c', 'f')
ORDER BY k.contype = 'f', k.conname";

const INDEXES: &str = "SELECT pg_get_indexdef(x.indexrelid),
       array(SELECT a.attname FROM unnest(x.indkey) u(n) JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = u.n)::text[]
FROM pg_index x
WHERE x.indrelid = $1::text::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid)
ORDER BY 1";

/// Writes the migration files.
#[tracing::instrument(skip_all)]
pub async fn baseline(config: &LegacyConfig) -> Result<BaselineReport, LegacyError> {
    let src = Source::new(config)?.connect().await?;
    let schema = Schema::read(&src)
        .await
        .map_err(LegacyError::db("read the source schema"))?;
    let graph = Graph::classify(&schema, config);
    let dir = config.output.reports.join("baseline");
    let mut report = BaselineReport {
        dir: dir.clone(),
        shared_tables: graph.shared_order.clone(),
        tenant_tables: graph.tenant_order.clone(),
        dropped_foreign_keys: Vec::new(),
        dropped_columns: Vec::new(),
    };
    let shared = render(&src, &graph, Class::Shared, config, &mut report).await?;
    let tenant = render(&src, &graph, Class::Tenant, config, &mut report).await?;
    write(&dir.join("shared/V1__baseline.sql"), &shared)?;
    write(&dir.join("tenant/V1__baseline.sql"), &tenant)?;
    for migration in MigrationSet::embedded(SchemaSet::Auth)
        .map_err(crate::Error::from)?
        .migrations()
    {
        let path = dir.join(format!(
            "auth/V{}__{}.sql",
            migration.version(),
            migration.name()
        ));
        write(&path, migration.sql().unwrap_or_default())?;
    }
    Ok(report)
}

fn write(path: &std::path::Path, text: &str) -> Result<(), LegacyError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(LegacyError::io(parent))?;
    }
    std::fs::write(path, text).map_err(LegacyError::io(path))
}

/// The DDL of every table of `class`, parents first.
async fn render(
    src: &Client,
    graph: &Graph,
    class: Class,
    config: &LegacyConfig,
    report: &mut BaselineReport,
) -> Result<String, LegacyError> {
    let tables = if class == Class::Shared {
        &graph.shared_order
    } else {
        &graph.tenant_order
    };
    let mut sql = format!(
        "-- Generated by `tenantd legacy baseline` from {}.\n",
        config.source_db()?
    );
    let mut foreign_keys = String::new();
    for table in tables {
        let dropped: BTreeSet<String> = if class == Class::Tenant {
            societe_columns(src, table, &config.societe.table).await?
        } else {
            BTreeSet::new()
        };
        report
            .dropped_columns
            .extend(dropped.iter().map(|c| format!("{table}.{c}")));
        sql.push_str(&create_table(src, table, &dropped).await?);
        for (name, def, columns, parent) in constraints(src, table, "f").await? {
            let same_database = graph.class(&parent) == Some(class);
            if same_database && !columns.iter().any(|c| dropped.contains(c)) {
                let _ = writeln!(
                    foreign_keys,
                    "ALTER TABLE {} ADD CONSTRAINT {} {def};",
                    quote_ident(table),
                    quote_ident(&name)
                );
            } else if !columns.iter().any(|c| dropped.contains(c)) {
                report
                    .dropped_foreign_keys
                    .push(format!("{table}.{name}: {def}"));
                let _ = writeln!(
                    foreign_keys,
                    "-- left out (crosses databases; `legacy verify` checks it): {table}.{name} {def}"
                );
            }
        }
        sql.push_str(&indexes(src, table, &dropped).await?);
    }
    sql.push('\n');
    sql.push_str(&foreign_keys);
    Ok(sql)
}

/// Columns of `table` with a foreign key straight to the société table.
async fn societe_columns(
    src: &Client,
    table: &str,
    societe: &str,
) -> Result<BTreeSet<String>, LegacyError> {
    Ok(constraints(src, table, "f")
        .await?
        .into_iter()
        .filter(|(_, _, _, parent)| parent == societe)
        .flat_map(|(_, _, columns, _)| columns)
        .collect())
}

type Constraint = (String, String, Vec<String>, String);

async fn constraints(
    src: &Client,
    table: &str,
    kinds: &str,
) -> Result<Vec<Constraint>, LegacyError> {
    let rows = src
        .query(CONSTRAINTS, &[&quote_ident(table)])
        .await
        .map_err(LegacyError::db(format!("read the constraints of {table}")))?;
    Ok(rows
        .iter()
        .filter(|r| kinds.contains(r.get::<_, &str>(1)))
        .map(|r| (r.get(0), r.get(2), r.get(3), r.get(4)))
        .collect())
}

async fn create_table(
    src: &Client,
    table: &str,
    dropped: &BTreeSet<String>,
) -> Result<String, LegacyError> {
    let rows = src
        .query(COLUMNS, &[&quote_ident(table)])
        .await
        .map_err(LegacyError::db(format!("read the columns of {table}")))?;
    let mut lines = Vec::new();
    for row in rows
        .iter()
        .filter(|r| !dropped.contains(r.get::<_, &str>(0)))
    {
        let (name, data_type, not_null): (&str, &str, bool) = (row.get(0), row.get(1), row.get(2));
        let (identity, generated, default): (&str, &str, Option<&str>) =
            (row.get(3), row.get(4), row.get(5));
        let mut line = format!("    {} {data_type}", quote_ident(name));
        match (identity, generated, default) {
            ("a", _, _) => line.push_str(" GENERATED ALWAYS AS IDENTITY"),
            ("d", _, _) => line.push_str(" GENERATED BY DEFAULT AS IDENTITY"),
            (_, "s", Some(expr)) => line.push_str(&format!(" GENERATED ALWAYS AS ({expr}) STORED")),
            (_, _, Some(expr)) if expr.starts_with("nextval(") => {
                line.push_str(" GENERATED BY DEFAULT AS IDENTITY")
            }
            (_, _, Some(expr)) => line.push_str(&format!(" DEFAULT {expr}")),
            _ => {}
        }
        if not_null {
            line.push_str(" NOT NULL");
        }
        lines.push(line);
    }
    for (name, def, columns, _) in constraints(src, table, "puc").await? {
        if !columns.iter().any(|c| dropped.contains(c)) {
            lines.push(format!("    CONSTRAINT {} {def}", quote_ident(&name)));
        }
    }
    Ok(format!(
        "\nCREATE TABLE {} (\n{}\n);\n",
        quote_ident(table),
        lines.join(",\n")
    ))
}

async fn indexes(
    src: &Client,
    table: &str,
    dropped: &BTreeSet<String>,
) -> Result<String, LegacyError> {
    let rows = src
        .query(INDEXES, &[&quote_ident(table)])
        .await
        .map_err(LegacyError::db(format!("read the indexes of {table}")))?;
    let mut out = String::new();
    for row in rows {
        let (def, columns): (String, Vec<String>) = (row.get(0), row.get(1));
        if !columns.iter().any(|c| dropped.contains(c)) {
            let _ = writeln!(out, "{};", def.replace(" ON public.", " ON "));
        }
    }
    Ok(out)
}
