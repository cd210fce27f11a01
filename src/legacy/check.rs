//! `legacy check`: validates before a run — config complete, source
//! reachable with its société, user and membership tables, pg_dump and
//! pg_restore found, migration sets found and parseable (and holding every
//! table the run will copy), target databases absent or belonging to a
//! resumable run of this source, users counted, disk space estimated.
//! Reads only.

use serde::Serialize;
use tokio_postgres::Client;

use super::graph::Graph;
use super::schema::Schema;
use super::{Class, LegacyConfig, LegacyError, Source, normalise_code, read_societes, tools};
use crate::Orchestrator;
use crate::ident::quote_ident;
use crate::migrate::{MigrationSet, SchemaSet};
use crate::tenant::TenantCode;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Fine.
    Ok,
    /// Worth a look; does not block.
    Warn,
    /// Blocks the run.
    Fail,
}

/// One check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckItem {
    /// What was checked.
    pub name: String,
    /// Outcome.
    pub status: Status,
    /// Details and what to do.
    pub detail: String,
}

/// Every check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// The checks in order.
    pub items: Vec<CheckItem>,
}

impl CheckReport {
    /// True when nothing failed.
    pub fn ok(&self) -> bool {
        self.items.iter().all(|i| i.status != Status::Fail)
    }

    /// A readable list.
    pub fn text(&self) -> String {
        let lines: Vec<String> = self
            .items
            .iter()
            .map(|i| {
                let mark = match i.status {
                    Status::Ok => "ok  ",
                    Status::Warn => "WARN",
                    Status::Fail => "FAIL",
                };
                format!("{mark} {}: {}", i.name, i.detail)
            })
            .collect();
        lines.join("\n")
    }

    fn push(&mut self, name: &str, status: Status, detail: impl Into<String>) {
        self.items.push(CheckItem {
            name: name.to_owned(),
            status,
            detail: detail.into(),
        });
    }
}

/// Runs every check.
#[tracing::instrument(skip_all)]
pub async fn check(
    orchestrator: &Orchestrator,
    config: &LegacyConfig,
) -> Result<CheckReport, LegacyError> {
    let mut report = CheckReport::default();
    report.push(
        "config",
        Status::Ok,
        format!(
            "source {}, default société {}",
            config.source_db()?,
            config.default_societe.code
        ),
    );
    for program in ["pg_dump", "pg_restore"] {
        match tools::find(program).await {
            Ok(path) => report.push(program, Status::Ok, path.display().to_string()),
            Err(e) => report.push(program, Status::Fail, e.to_string()),
        }
    }
    let source = Source::new(config)?;
    let src = match source.connect().await {
        Ok(client) => client,
        Err(e) => {
            report.push("source", Status::Fail, e.to_string());
            return Ok(report);
        }
    };
    report.push(
        "source",
        Status::Ok,
        format!("{} reachable", source.database),
    );
    let schema = Schema::read(&src)
        .await
        .map_err(LegacyError::db("read the source schema"))?;
    for table in [
        &config.societe.table,
        &config.users.table,
        &config.memberships.table,
    ] {
        if !schema.tables.contains_key(table) {
            report.push(
                "source tables",
                Status::Fail,
                format!("table {table} not found; set its name in the config"),
            );
        }
    }
    let graph = Graph::classify(&schema, config);
    check_migrations(orchestrator, &graph, &mut report);
    if let Err(e) = check_targets(orchestrator, config, &src, &mut report).await {
        report.push("targets", Status::Fail, e.to_string());
    }
    if let Err(e) = count_users(config, &src, &mut report).await {
        report.push("users", Status::Fail, e.to_string());
    }
    estimate_disk(config, &src, &mut report).await?;
    Ok(report)
}

fn check_migrations(orchestrator: &Orchestrator, graph: &Graph, report: &mut CheckReport) {
    let dir = orchestrator.settings().migrations_dir.as_deref();
    for (set, class) in [
        (SchemaSet::Auth, None),
        (SchemaSet::Shared, Some(Class::Shared)),
        (SchemaSet::Tenant, Some(Class::Tenant)),
    ] {
        let name = format!("{set} migrations");
        let loaded = match MigrationSet::load(set, dir) {
            Ok(loaded) => loaded,
            Err(e) => {
                report.push(&name, Status::Fail, e.to_string());
                continue;
            }
        };
        let sql: String = loaded
            .migrations()
            .iter()
            .filter_map(|m| m.sql())
            .collect::<Vec<_>>()
            .join("\n")
            .to_lowercase();
        let missing: Vec<&String> = graph
            .tables
            .iter()
            .filter(|(_, c)| Some(c.class) == class)
            .map(|(t, _)| t)
            .filter(|t| {
                !sql.contains(&format!("create table {t} "))
                    && !sql.contains(&format!("create table {t}("))
            })
            .collect();
        if missing.is_empty() {
            report.push(
                &name,
                Status::Ok,
                format!(
                    "{} migration(s), up to V{}",
                    loaded.migrations().len(),
                    loaded.latest_version()
                ),
            );
        } else {
            report.push(&name, Status::Fail, format!("no CREATE TABLE for {missing:?}: add them (see `legacy baseline`) or classify them as skip"));
        }
    }
}

async fn check_targets(
    orchestrator: &Orchestrator,
    config: &LegacyConfig,
    src: &Client,
    report: &mut CheckReport,
) -> Result<(), LegacyError> {
    let mut codes: Vec<String> = read_societes(src, config)
        .await?
        .iter()
        .map(|s| normalise_code(&s.code))
        .collect();
    codes.push(config.default_societe.code.clone());
    let names = orchestrator.names();
    let admin = orchestrator.admin_connection().await?;
    let progress = orchestrator.legacy_run(&config.source_db()?);
    // Before the first `init` there is no AUTH, so no run to resume.
    let resumable: Vec<String> =
        if orchestrator.auth_exists().await? && progress.exists().await.unwrap_or(false) {
            progress
                .tenants()
                .await?
                .into_iter()
                .map(|t| t.code)
                .collect()
        } else {
            Vec::new()
        };
    let mut taken = Vec::new();
    for code in &codes {
        let Ok(parsed) = TenantCode::parse(code) else {
            report.push(
                "tenant codes",
                Status::Fail,
                format!("{code:?} is not a valid tenant code; rename the société"),
            );
            continue;
        };
        let db = names.tenant_db(&parsed);
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
            .await
            .map_err(LegacyError::db("look up a database"))?
            .is_some();
        if exists && !resumable.contains(code) {
            taken.push(db);
        }
    }
    if taken.is_empty() {
        let detail = if resumable.is_empty() {
            format!("{} tenant databases to create", codes.len())
        } else {
            format!(
                "a run of this source can be resumed ({} tenants recorded)",
                resumable.len()
            )
        };
        report.push("targets", Status::Ok, detail);
    } else {
        report.push("targets", Status::Fail, format!("databases {taken:?} exist and belong to no run of this source; drop them or change DB_TENANT_PREFIX"));
    }
    Ok(())
}

async fn count_users(
    config: &LegacyConfig,
    src: &Client,
    report: &mut CheckReport,
) -> Result<(), LegacyError> {
    let sql = format!("SELECT count(*) FROM {}", quote_ident(&config.users.table));
    let users: i64 = src
        .query_one(&sql, &[])
        .await
        .map_err(LegacyError::db("count the users"))?
        .get(0);
    let sql = format!(
        "SELECT count(*) FROM {}",
        quote_ident(&config.memberships.table)
    );
    let links: i64 = src
        .query_one(&sql, &[])
        .await
        .map_err(LegacyError::db("count the memberships"))?
        .get(0);
    report.push(
        "users",
        Status::Ok,
        format!("{users} users and {links} memberships to copy into AUTH"),
    );
    Ok(())
}

/// The split needs about the source's size again on the server, and a
/// compressed backup (estimated at a third of it) in the backups directory.
async fn estimate_disk(
    config: &LegacyConfig,
    src: &Client,
    report: &mut CheckReport,
) -> Result<(), LegacyError> {
    let size: i64 = src
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await
        .map_err(LegacyError::db("read the source size"))?
        .get(0);
    let backup_need = size / 3;
    let free = free_bytes(&config.output.backups).await;
    let (status, detail) = match free {
        Some(free) if free < backup_need => (
            Status::Fail,
            format!(
                "backups need ~{} MB, {} MB free",
                backup_need >> 20,
                free >> 20
            ),
        ),
        Some(free) => (
            Status::Ok,
            format!(
                "source {} MB: the server needs ~{} MB more; backups ~{} MB ({} MB free)",
                size >> 20,
                size >> 20,
                backup_need >> 20,
                free >> 20
            ),
        ),
        None => (
            Status::Warn,
            format!(
                "source {} MB: the server needs ~{} MB more; free space of the backups directory unknown",
                size >> 20,
                size >> 20
            ),
        ),
    };
    report.push("disk", status, detail);
    Ok(())
}

/// Free bytes on the file system of `dir` (or its nearest existing parent), from `df`.
async fn free_bytes(dir: &std::path::Path) -> Option<i64> {
    let existing = dir.ancestors().find(|p| p.exists())?;
    let out = tokio::process::Command::new("df")
        .arg("-Pk")
        .arg(existing)
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let kb: i64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}
