//! The legacy split: batch steps that move the single-database ERP monolith
//! into AUTH, SHARED and one database per société —
//! backup → audit → clean → check → run → verify, with rollback and baseline.
//!
//! Each step is a module with one job; this module holds their shared error
//! and the [`Source`] connection. The steps only read the monolith, except
//! `clean --execute` (which archives what it deletes) and `rollback` (which
//! restores the backup when `clean --execute` changed the source).
//!
//! ## Layout
//! - [`config`]: the TOML configuration file.
//! - `schema`: tables, columns and foreign keys of a database.
//! - `graph`: classification from the foreign-key graph; ownership paths.
//! - `fixture` (feature `testing`): a generated TopSteel-like monolith for tests and benchmarks.
//!   (The run's record in AUTH — its tenants and copied units — is
//!   `crate::catalog::LegacyRun`, reached through the orchestrator.)
//! - `context`: what one run shares between its steps (options, observer, copy context).
//! - [`tools`]: pg_dump / pg_restore.
//! - `command`: the `tenantd legacy …` command line.
//! - `infra`: deployment objects a run may create (for rollback).
//! - `identity`: users and memberships copied into AUTH.
//! - [`backup`], [`audit`], [`clean`], [`check`], [`run`] (with `fanout` and `copy`),
//!   [`verify`], [`rollback`], [`baseline`]: the steps.

pub mod audit;
pub mod backup;
pub mod baseline;
pub mod check;
pub mod clean;
pub(crate) mod command;
pub mod config;
mod context;
mod copy;
mod fanout;
#[cfg(feature = "testing")]
pub mod fixture;
mod graph;
mod identity;
mod infra;
pub mod rollback;
pub mod run;
mod schema;
pub mod tools;
pub mod verify;

use std::path::PathBuf;

use tokio_postgres::Client;

use crate::error_kind::{Classify, ErrorKind};

pub use config::{Class, ConfigFileError, LegacyConfig};

/// A legacy step failed.
#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    /// The configuration file is unusable.
    #[error(transparent)]
    Config(#[from] ConfigFileError),
    /// The source monolith could not be reached.
    #[error(
        "cannot connect to the source database {database:?}: {}; check [source] url in the config",
        crate::pg_error::describe(source)
    )]
    Source {
        /// The source database.
        database: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A statement failed.
    #[error("PostgreSQL refused a legacy statement ({context}): {message}")]
    Db {
        /// What was being done.
        context: String,
        /// PostgreSQL's message, detail and hint.
        message: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// pg_dump or pg_restore failed or is missing.
    #[error("{program} failed: {output}")]
    Tool {
        /// The program.
        program: String,
        /// What it printed.
        output: String,
    },
    /// The orchestrator (AUTH, SHARED, provisioning) failed.
    #[error(transparent)]
    Orchestrator(Box<crate::Error>),
    /// The step refuses to run in the current state; the message says why and what to do.
    #[error("{0}")]
    Refused(String),
    /// `verify` found differences (printed as a report before this error).
    #[error(
        "verify found {0} mismatch(es); see the report above, fix the cause and run `legacy run` again"
    )]
    VerifyFailed(usize),
}

impl From<crate::catalog::CatalogError> for LegacyError {
    fn from(e: crate::catalog::CatalogError) -> Self {
        Self::Orchestrator(Box::new(e.into()))
    }
}

impl From<crate::Error> for LegacyError {
    fn from(e: crate::Error) -> Self {
        Self::Orchestrator(Box::new(e))
    }
}

impl Classify for LegacyError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Config(_) => ErrorKind::InvalidInput,
            Self::Source { .. } => ErrorKind::Unavailable,
            Self::Orchestrator(e) => e.kind(),
            Self::Refused(_) => ErrorKind::Conflict,
            Self::Db { source, .. } => source.kind(),
            Self::Io { .. } | Self::Tool { .. } | Self::VerifyFailed(_) => ErrorKind::Internal,
        }
    }
}

impl LegacyError {
    /// A [`LegacyError::Db`] with context.
    pub fn db(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Self {
        let context = context.into();
        move |source| Self::Db {
            context,
            message: crate::pg_error::describe(&source),
            source,
        }
    }

    /// A [`LegacyError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

/// The monolith being split.
pub struct Source {
    /// Its connection settings.
    pub config: tokio_postgres::Config,
    /// Its database name.
    pub database: String,
}

impl Source {
    /// The source named by `config`.
    pub fn new(config: &LegacyConfig) -> Result<Self, LegacyError> {
        Ok(Self {
            config: config.source_config()?,
            database: config.source_db()?,
        })
    }

    /// A new connection to the source.
    pub async fn connect(&self) -> Result<Client, LegacyError> {
        crate::server::connect(&self.config)
            .await
            .map_err(|e| match e {
                crate::server::ServerError::Unreachable { source, .. } => LegacyError::Source {
                    database: self.database.clone(),
                    source,
                },
                other => LegacyError::Orchestrator(Box::new(other.into())),
            })
    }
}

/// One row of the source's société table (`[societe]` in the config).
#[derive(Debug, Clone)]
pub struct SourceSociete {
    /// Its key (what the tenant tables' foreign keys refer to), as text.
    pub key: String,
    /// Its code as the source spells it (see [`normalise_code`]).
    pub code: String,
    /// Its display name, if the source has one.
    pub name: Option<String>,
}

/// Every société of the source, by key: the one query of the société table
/// that audit, check and run share.
pub async fn read_societes(
    src: &Client,
    config: &LegacyConfig,
) -> Result<Vec<SourceSociete>, LegacyError> {
    let s = &config.societe;
    let sql = format!(
        "SELECT {}::text, {}::text, {}::text FROM {} ORDER BY 1",
        crate::ident::quote_ident(&s.key),
        crate::ident::quote_ident(&s.code_column),
        crate::ident::quote_ident(&s.name_column),
        crate::ident::quote_ident(&s.table)
    );
    let rows = src
        .query(&sql, &[])
        .await
        .map_err(LegacyError::db("read the sociétés"))?;
    Ok(rows
        .iter()
        .map(|row| SourceSociete {
            key: row.get(0),
            code: row.get(1),
            name: row.get(2),
        })
        .collect())
}

/// Writes `value` as pretty JSON to `path`, creating its directory.
pub fn write_json<T: serde::Serialize>(
    path: &std::path::Path,
    value: &T,
) -> Result<(), LegacyError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(LegacyError::io(dir))?;
    }
    let text = serde_json::to_string_pretty(value).map_err(|e| LegacyError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(path, text).map_err(LegacyError::io(path))
}

/// A tenant code made from a société code: lower-case, other characters
/// replaced by `_`, prefixed with `s_` when it does not start with a letter.
pub fn normalise_code(raw: &str) -> String {
    let mut code: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if !code.starts_with(|c: char| c.is_ascii_lowercase()) {
        code.insert_str(0, "s_");
    }
    code.truncate(40);
    code
}

#[cfg(test)]
mod tests {
    #[test]
    fn normalises_societe_codes() {
        assert_eq!(super::normalise_code("TS-01"), "ts_01");
        assert_eq!(super::normalise_code("01 Nord"), "s_01_nord");
    }
}
