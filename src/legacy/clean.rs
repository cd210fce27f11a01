//! `legacy clean [--execute]`: the rows matched by the config's test-data
//! rules. A dry run (the default) only counts them. `--execute` needs a
//! backup, writes the rows to an archive (one JSONL file per table, under the
//! reports directory), then deletes them in one transaction, children
//! before parents. [`restore`] puts an archive's rows back.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio_postgres::IsolationLevel;

use super::config::TestDataRule;
use super::schema::Schema;
use super::{LegacyConfig, LegacyError, Source, backup};
use crate::ident::quote_ident;

/// What clean found or did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CleanReport {
    /// Whether rows were deleted.
    pub executed: bool,
    /// Rows matched (and deleted when executed), by table.
    pub rows: BTreeMap<String, u64>,
    /// The archive directory, when executed.
    pub archive: Option<PathBuf>,
    /// The backup to restore the source from, when executed.
    pub backup: Option<PathBuf>,
}

impl CleanReport {
    /// A readable summary.
    pub fn text(&self) -> String {
        let mut text = if self.executed {
            format!(
                "deleted test data; archive in {}",
                self.archive
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            )
        } else {
            "dry run (pass --execute to delete):".to_owned()
        };
        for (table, rows) in &self.rows {
            text.push_str(&format!("\n  {table}: {rows} row(s)"));
        }
        text
    }
}

fn marker(config: &LegacyConfig) -> PathBuf {
    config.output.reports.join("clean-executed.json")
}

/// The backup to restore when `clean --execute` changed the source.
pub fn executed_backup(config: &LegacyConfig) -> Result<Option<PathBuf>, LegacyError> {
    let path = marker(config);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(LegacyError::io(&path))?;
    let report: CleanReport = serde_json::from_str(&text).map_err(|e| LegacyError::Io {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    Ok(report.backup)
}

/// Forgets that clean ran (after the source was restored).
pub fn forget_execution(config: &LegacyConfig) -> Result<(), LegacyError> {
    let path = marker(config);
    std::fs::remove_file(&path).map_err(LegacyError::io(&path))
}

/// Rules ordered children first (a rule's table is deleted before the tables it refers to).
fn delete_order<'a>(rules: &'a [TestDataRule], schema: &Schema) -> Vec<&'a TestDataRule> {
    let mut left: Vec<&TestDataRule> = rules.iter().collect();
    let mut order = Vec::new();
    while !left.is_empty() {
        let referenced = |t: &str| {
            left.iter()
                .any(|r| r.table != t && schema.foreign_keys_of(&r.table).any(|fk| fk.parent == t))
        };
        let (ready, rest): (Vec<_>, Vec<_>) = left.iter().partition(|r| !referenced(&r.table));
        let (ready, rest) = if ready.is_empty() {
            (rest, Vec::new())
        } else {
            (ready, rest)
        };
        order.extend(ready);
        left = rest;
    }
    order
}

/// Counts (dry run) or archives and deletes (execute) the test data.
#[tracing::instrument(skip_all, fields(execute))]
pub async fn clean(config: &LegacyConfig, execute: bool) -> Result<CleanReport, LegacyError> {
    let mut src = Source::new(config)?.connect().await?;
    let schema = Schema::read(&src)
        .await
        .map_err(LegacyError::db("read the source schema"))?;
    let order = delete_order(&config.test_data, &schema);
    let mut report = CleanReport::default();
    if !execute {
        for rule in &order {
            let sql = format!(
                "SELECT count(*) FROM {} AS t WHERE ({})",
                quote_ident(&rule.table),
                rule.condition
            );
            let n: i64 = src
                .query_one(&sql, &[])
                .await
                .map_err(LegacyError::db(format!(
                    "count test data of {}",
                    rule.table
                )))?
                .get(0);
            *report.rows.entry(rule.table.clone()).or_default() += u64::try_from(n).unwrap_or(0);
        }
        return Ok(report);
    }
    let Some(backup) = backup::latest(config)? else {
        return Err(LegacyError::Refused(
            "clean --execute deletes rows: run `tenantd legacy backup` first".to_owned(),
        ));
    };
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let archive = config.output.reports.join(format!("clean-{stamp}"));
    std::fs::create_dir_all(&archive).map_err(LegacyError::io(&archive))?;
    let tx = src
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .start()
        .await
        .map_err(LegacyError::db("open the clean transaction"))?;
    for rule in &order {
        archive_rule(&tx, rule, &archive).await?;
    }
    for rule in &order {
        let sql = format!(
            "DELETE FROM {} AS t WHERE ({})",
            quote_ident(&rule.table),
            rule.condition
        );
        let n = tx
            .execute(&sql, &[])
            .await
            .map_err(LegacyError::db(format!(
                "delete test data of {}",
                rule.table
            )))?;
        *report.rows.entry(rule.table.clone()).or_default() += n;
    }
    report.executed = true;
    report.archive = Some(archive);
    report.backup = Some(backup);
    super::write_json(&marker(config), &report)?;
    tx.commit()
        .await
        .map_err(LegacyError::db("commit the clean"))?;
    Ok(report)
}

async fn archive_rule(
    client: &tokio_postgres::Transaction<'_>,
    rule: &TestDataRule,
    dir: &Path,
) -> Result<(), LegacyError> {
    let sql = format!(
        "SELECT row_to_json(t)::text FROM {} AS t WHERE ({})",
        quote_ident(&rule.table),
        rule.condition
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(LegacyError::db(format!(
            "archive test data of {}",
            rule.table
        )))?;
    let path = dir.join(format!("{}.jsonl", rule.table));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(LegacyError::io(&path))?;
    for row in rows {
        let line: String = row.get(0);
        writeln!(file, "{line}").map_err(LegacyError::io(&path))?;
    }
    file.sync_all().map_err(LegacyError::io(&path))
}

/// Inserts an archive's rows back into the source (parents first, one
/// transaction); returns the rows restored by table.
pub async fn restore(
    config: &LegacyConfig,
    archive: &Path,
) -> Result<BTreeMap<String, u64>, LegacyError> {
    let mut src = Source::new(config)?.connect().await?;
    let schema = Schema::read(&src)
        .await
        .map_err(LegacyError::db("read the source schema"))?;
    let mut order = delete_order(&config.test_data, &schema);
    order.reverse();
    order.dedup_by(|a, b| a.table == b.table);
    let tx = src
        .transaction()
        .await
        .map_err(LegacyError::db("open the restore transaction"))?;
    let mut restored = BTreeMap::new();
    for rule in order {
        let path = archive.join(format!("{}.jsonl", rule.table));
        if restored.contains_key(&rule.table) || !path.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(LegacyError::io(&path))?;
        let array = format!(
            "[{}]",
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .collect::<Vec<_>>()
                .join(",")
        );
        let table = quote_ident(&rule.table);
        let sql = format!(
            "INSERT INTO {table} OVERRIDING SYSTEM VALUE SELECT * FROM json_populate_recordset(NULL::{table}, $1::text::json)"
        );
        let n = tx
            .execute(&sql, &[&array])
            .await
            .map_err(LegacyError::db(format!(
                "restore the archived rows of {}",
                rule.table
            )))?;
        restored.insert(rule.table.clone(), n);
    }
    tx.commit()
        .await
        .map_err(LegacyError::db("commit the restore"))?;
    Ok(restored)
}
