//! Streaming one table's rows from the monolith into a target database with
//! `COPY … TO STDOUT` / `COPY … FROM STDIN`, keeping primary-key values and
//! moving the target's sequences past them.
//!
//! A [`TablePlan`] says which columns travel (those both sides have) and in
//! which format (binary when every column type matches, else text).

use bytes::BytesMut;
use futures::{SinkExt, StreamExt, pin_mut};
use tokio_postgres::{Client, Transaction};

use super::LegacyError;
use super::graph::{Hop, owner_from};
use super::schema::{Schema, Table};
use crate::ident::{quote_ident, quote_literal};

/// Bytes of COPY data handed to the target at once.
const BATCH_BYTES: usize = 256 * 1024;

/// How one table is copied.
#[derive(Debug, Clone)]
pub struct TablePlan {
    /// The table (same name on both sides).
    pub table: String,
    /// Columns copied, in order.
    pub columns: Vec<String>,
    /// Every copied column has the same type on both sides.
    pub binary: bool,
    /// Target columns backed by a sequence.
    pub sequences: Vec<String>,
    /// For tenant tables: the path to the société.
    pub path: Vec<Hop>,
    /// Target indexes backing no constraint, as `(name, definition)`: dropped
    /// before the copy and built again after it, in the same transaction
    /// (one sort per index instead of one insertion per row).
    pub secondary_indexes: Vec<(String, String)>,
}

impl TablePlan {
    /// The plan for `table` from `source` into `target`.
    pub fn new(
        table: &str,
        source: &Schema,
        target: &Schema,
        path: &[Hop],
    ) -> Result<Self, LegacyError> {
        let (Some(from), Some(to)) = (source.tables.get(table), target.tables.get(table)) else {
            return Err(LegacyError::Refused(format!(
                "table {table} is to be copied but the target schema has no such table; \
                 add it to the target migration set (see `legacy baseline`) or classify it as skip"
            )));
        };
        Ok(Self::from_tables(from, to, path))
    }

    fn from_tables(from: &Table, to: &Table, path: &[Hop]) -> Self {
        let mut columns = Vec::new();
        let mut dropped = Vec::new();
        let mut binary = true;
        for column in from.columns.iter().filter(|c| !c.generated) {
            match to.column(&column.name).filter(|c| !c.generated) {
                Some(target) => {
                    binary &= target.data_type == column.data_type;
                    columns.push(column.name.clone());
                }
                None => dropped.push(column.name.clone()),
            }
        }
        if !dropped.is_empty() {
            tracing::info!(
                table = %from.name,
                columns = ?dropped,
                "source columns the target table lacks are left behind (e.g. the société key)"
            );
        }
        let sequences = to
            .columns
            .iter()
            .filter(|c| c.sequence && columns.contains(&c.name))
            .map(|c| c.name.clone())
            .collect();
        Self {
            table: from.name.clone(),
            columns,
            binary,
            sequences,
            path: path.to_vec(),
            secondary_indexes: Vec::new(),
        }
    }

    fn format(&self) -> &'static str {
        if self.binary { "binary" } else { "text" }
    }

    /// `COPY (SELECT … WHERE condition) TO STDOUT`; `condition` is built by
    /// [`super::graph::owner_condition`] over [`TablePlan::owner`].
    pub fn copy_out_sql(&self, condition: Option<&str>) -> String {
        let (from, _) = owner_from(&self.table, &self.path, "t");
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("t0.{}", quote_ident(c)))
            .collect();
        let filter = condition.map(|c| format!(" WHERE {c}")).unwrap_or_default();
        format!(
            "COPY (SELECT {} FROM {from}{filter}) TO STDOUT (FORMAT {})",
            columns.join(", "),
            self.format()
        )
    }

    /// The expression of a row's owning société key.
    pub fn owner(&self) -> String {
        owner_from(&self.table, &self.path, "t").1
    }

    fn copy_in_sql(&self) -> String {
        let columns: Vec<String> = self.columns.iter().map(|c| quote_ident(c)).collect();
        format!(
            "COPY {} ({}) FROM STDIN (FORMAT {})",
            quote_ident(&self.table),
            columns.join(", "),
            self.format()
        )
    }
}

/// Empties the target table when an interrupted attempt left rows in it
/// (`has_rows`; by cascade also tables referring to it, which come later in
/// the copy order) in `tx`, then streams the selected rows.
pub async fn replace(
    source: &Client,
    tx: &Transaction<'_>,
    plan: &TablePlan,
    condition: Option<&str>,
    has_rows: bool,
) -> Result<u64, LegacyError> {
    // TRUNCATE makes new files for the table, its indexes and every table it
    // cascades to: only pay for that when there is something to remove.
    if has_rows {
        tx.batch_execute(&format!("TRUNCATE {} CASCADE", quote_ident(&plan.table)))
            .await
            .map_err(LegacyError::db(format!(
                "empty {} before the copy",
                plan.table
            )))?;
    }
    let indexes = &plan.secondary_indexes;
    if !indexes.is_empty() {
        let names: Vec<String> = indexes.iter().map(|(n, _)| quote_ident(n)).collect();
        tx.batch_execute(&format!("DROP INDEX {}", names.join(", ")))
            .await
            .map_err(LegacyError::db(format!(
                "set aside the indexes of {}",
                plan.table
            )))?;
    }
    let rows = stream(source, tx, plan, condition).await?;
    if !indexes.is_empty() {
        // Definitions read from the target server's own catalog.
        let defs: Vec<&str> = indexes.iter().map(|(_, d)| d.as_str()).collect();
        tx.batch_execute(&defs.join(";\n"))
            .await
            .map_err(LegacyError::db(format!(
                "rebuild the indexes of {}",
                plan.table
            )))?;
    }
    Ok(rows)
}

const SECONDARY_INDEXES: &str = "SELECT c.relname, i.relname, pg_get_indexdef(x.indexrelid)
    FROM pg_index x
    JOIN pg_class i ON i.oid = x.indexrelid
    JOIN pg_class c ON c.oid = x.indrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relname = ANY ($1)
      AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid)
    ORDER BY 1, 2";

/// Fills each plan's secondary indexes from the target database of `client`.
pub async fn load_secondary_indexes(
    client: &Client,
    plans: &mut [TablePlan],
) -> Result<(), LegacyError> {
    let names: Vec<String> = plans.iter().map(|p| p.table.clone()).collect();
    let rows = client
        .query(SECONDARY_INDEXES, &[&names])
        .await
        .map_err(LegacyError::db("read the target indexes"))?;
    for row in rows {
        let table: String = row.get(0);
        if let Some(plan) = plans.iter_mut().find(|p| p.table == table) {
            plan.secondary_indexes.push((row.get(1), row.get(2)));
        }
    }
    Ok(())
}

/// Tables among `tables` holding at least one row, in one round trip.
pub async fn non_empty(client: &Client, tables: &[&str]) -> Result<Vec<String>, LegacyError> {
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let probes: Vec<String> = tables
        .iter()
        .map(|t| {
            format!(
                "SELECT {}::text WHERE EXISTS (SELECT 1 FROM {})",
                quote_literal(t),
                quote_ident(t)
            )
        })
        .collect();
    let rows = client
        .query(&probes.join(" UNION ALL "), &[])
        .await
        .map_err(LegacyError::db("look for tables holding rows"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Streams the selected rows into the target table and sets its sequences.
pub async fn stream(
    source: &Client,
    tx: &Transaction<'_>,
    plan: &TablePlan,
    condition: Option<&str>,
) -> Result<u64, LegacyError> {
    let context = || format!("copy {}", plan.table);
    let out = source
        .copy_out(&plan.copy_out_sql(condition))
        .await
        .map_err(LegacyError::db(context()))?;
    let sink = tx
        .copy_in(&plan.copy_in_sql())
        .await
        .map_err(LegacyError::db(context()))?;
    pin_mut!(out, sink);
    // The source sends one message per row: pass them on in large batches.
    let mut batch = BytesMut::with_capacity(BATCH_BYTES);
    while let Some(chunk) = out.next().await {
        batch.extend_from_slice(&chunk.map_err(LegacyError::db(context()))?);
        if batch.len() >= BATCH_BYTES {
            let full = batch.split().freeze();
            sink.send(full).await.map_err(LegacyError::db(context()))?;
        }
    }
    if !batch.is_empty() {
        sink.send(batch.freeze())
            .await
            .map_err(LegacyError::db(context()))?;
    }
    let rows = sink.finish().await.map_err(LegacyError::db(context()))?;
    if rows > 0 {
        set_sequences(tx, plan).await?;
    }
    Ok(rows)
}

/// Moves a column's sequence to the column's largest value, in one statement.
const SET_SEQUENCE: &str = "SELECT setval(pg_get_serial_sequence($1, $2), m) \
     FROM (SELECT max({column})::bigint AS m FROM {table}) AS x WHERE m IS NOT NULL";

async fn set_sequences(tx: &Transaction<'_>, plan: &TablePlan) -> Result<(), LegacyError> {
    let table = quote_ident(&plan.table);
    for column in &plan.sequences {
        let sql = SET_SEQUENCE
            .replace("{column}", &quote_ident(column))
            .replace("{table}", &table);
        tx.query(&sql, &[&table, column])
            .await
            .map_err(LegacyError::db(format!(
                "move the sequence of {}.{column}",
                plan.table
            )))?;
    }
    Ok(())
}
