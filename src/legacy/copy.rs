//! Streaming one table's rows from the monolith into a target database with
//! `COPY … TO STDOUT` / `COPY … FROM STDIN`, keeping primary-key values and
//! moving the target's sequences past them.
//!
//! A [`TablePlan`] says which columns travel (those both sides have) and in
//! which format (binary when every column type matches, else text).

use futures::{SinkExt, StreamExt, pin_mut};
use tokio_postgres::{Client, Transaction};

use super::LegacyError;
use super::graph::{Hop, owner_from};
use super::schema::{Schema, Table};
use crate::ident::quote_ident;

/// How one table is copied.
#[derive(Debug, Clone)]
pub struct TablePlan {
    /// The table (same name on both sides).
    pub table: String,
    /// Columns copied, in order.
    pub columns: Vec<String>,
    /// Source columns left behind (e.g. the société key).
    pub dropped: Vec<String>,
    /// Every copied column has the same type on both sides.
    pub binary: bool,
    /// Target columns backed by a sequence.
    pub sequences: Vec<String>,
    /// For tenant tables: the path to the société.
    pub path: Vec<Hop>,
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
        let sequences = to
            .columns
            .iter()
            .filter(|c| c.sequence && columns.contains(&c.name))
            .map(|c| c.name.clone())
            .collect();
        Self {
            table: from.name.clone(),
            columns,
            dropped,
            binary,
            sequences,
            path: path.to_vec(),
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

/// Empties the target table (and, by cascade, tables referring to it, which
/// come later in the copy order) in `tx`, then streams the selected rows.
pub async fn replace(
    source: &Client,
    tx: &Transaction<'_>,
    plan: &TablePlan,
    condition: Option<&str>,
) -> Result<u64, LegacyError> {
    tx.batch_execute(&format!("TRUNCATE {} CASCADE", quote_ident(&plan.table)))
        .await
        .map_err(LegacyError::db(format!(
            "empty {} before the copy",
            plan.table
        )))?;
    stream(source, tx, plan, condition).await
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
    while let Some(chunk) = out.next().await {
        let chunk = chunk.map_err(LegacyError::db(context()))?;
        sink.send(chunk).await.map_err(LegacyError::db(context()))?;
    }
    let rows = sink.finish().await.map_err(LegacyError::db(context()))?;
    set_sequences(tx, plan).await?;
    Ok(rows)
}

const SET_SEQUENCE: &str =
    "SELECT setval(pg_get_serial_sequence($1, $2), $3::bigint, true) WHERE $3::bigint IS NOT NULL";

async fn set_sequences(tx: &Transaction<'_>, plan: &TablePlan) -> Result<(), LegacyError> {
    let table = quote_ident(&plan.table);
    for column in &plan.sequences {
        let max_sql = format!("SELECT max({})::bigint FROM {table}", quote_ident(column));
        let max: Option<i64> = tx
            .query_one(&max_sql, &[])
            .await
            .map_err(LegacyError::db(format!(
                "read the largest {}.{column}",
                plan.table
            )))?
            .get(0);
        tx.execute(SET_SEQUENCE, &[&table, column, &max])
            .await
            .map_err(LegacyError::db(format!(
                "move the sequence of {}.{column}",
                plan.table
            )))?;
    }
    Ok(())
}
