//! The library's error: what any [`crate::Orchestrator`] call can fail with.
//! Its class ([`ErrorKind`], for CLI exit codes and HTTP statuses) is the
//! class of the module error it wraps: each module classifies its own errors
//! ([`Classify`]), and this file only delegates.

use crate::apikey::ApiKeyError;
use crate::catalog::CatalogError;
use crate::config::ConfigError;
use crate::devcluster::DevClusterError;
pub use crate::error_kind::{Classify, ErrorKind};
use crate::fleet::FleetError;
use crate::migrate::MigrateError;
use crate::provision::ProvisionError;
use crate::server::ServerError;
use crate::template::TemplateError;
use crate::tenant::{TenantCode, TenantError, TenantStatus};

/// An orchestrator call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An input value (code, region, plan…) is invalid.
    #[error(transparent)]
    InvalidInput(#[from] TenantError),
    /// An API key could not be issued as asked.
    #[error(transparent)]
    ApiKey(#[from] ApiKeyError),
    /// The embedded dev cluster failed.
    #[error(transparent)]
    DevCluster(#[from] DevClusterError),
    /// The server could not be reached.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A migration set failed to load or apply.
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    /// The template failed.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A life-cycle step failed.
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    /// The tenant exists but cannot take connections in its status.
    #[error("tenant {code} is {status}: it takes no connections")]
    TenantUnavailable {
        /// The tenant.
        code: TenantCode,
        /// Its status.
        status: TenantStatus,
    },
    /// The tenant is quarantined: a fleet migration failed on it, so its
    /// schema is older than the application expects. Refused until a later
    /// `tenantd migrate run` succeeds (kind [`ErrorKind::Unavailable`]:
    /// retry later, HTTP 503).
    #[error(
        "tenant {code} is under maintenance: its last schema migration failed ({reason}); \
         fix it and rerun `tenantd migrate run --tenant {code}`"
    )]
    UnderMaintenance {
        /// The tenant.
        code: TenantCode,
        /// The recorded migration error.
        reason: String,
    },
    /// A pooled connection could not be had.
    #[error("no connection to {database}: {reason}")]
    Connection {
        /// The database.
        database: String,
        /// Why.
        reason: String,
    },
    /// Every connection the budget allows stayed busy for the whole acquire
    /// timeout: retry after `retry_after` (HTTP 503 with `Retry-After`).
    #[error("{reason}; retry in {} ms", retry_after.as_millis())]
    Busy {
        /// What was waited for, and which limit was full.
        reason: String,
        /// When a retry has a fair chance.
        retry_after: std::time::Duration,
    },
    /// An admin statement failed.
    #[error(
        "PostgreSQL refused an administrative statement: {}",
        crate::pg_error::describe(.0)
    )]
    Db(#[from] tokio_postgres::Error),
    /// A fleet migration run failed or left tenants failed.
    #[error(transparent)]
    Fleet(#[from] FleetError),
}

impl Error {
    /// When the call may be retried: `Some` only for [`Error::Busy`].
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Busy { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The class of this error (see [`Classify`]).
    pub fn kind(&self) -> ErrorKind {
        Classify::kind(self)
    }
}

impl Classify for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Config(e) => e.kind(),
            Self::InvalidInput(e) => e.kind(),
            Self::ApiKey(e) => e.kind(),
            Self::DevCluster(e) => e.kind(),
            Self::Server(e) => e.kind(),
            Self::Catalog(e) => e.kind(),
            Self::Migrate(e) => e.kind(),
            Self::Template(e) => e.kind(),
            Self::Provision(e) => e.kind(),
            Self::Fleet(e) => e.kind(),
            Self::Db(e) => e.kind(),
            Self::TenantUnavailable { .. } => ErrorKind::Conflict,
            Self::UnderMaintenance { .. } | Self::Connection { .. } | Self::Busy { .. } => {
                ErrorKind::Unavailable
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legacy::LegacyError;
    use crate::migrate::SchemaSet;
    use crate::pool::PoolError;
    use refinery::error::WrapMigrationError;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const MESSAGE: &str = "type \"year\" does not exist";
    const DETAIL: &str = "the detail";
    const HINT: &str = "the hint";

    /// PostgreSQL's ErrorResponse message with a SQLSTATE, message, detail and hint.
    fn error_response() -> Vec<u8> {
        let mut fields = Vec::new();
        for (tag, value) in [
            (b'S', "ERROR"),
            (b'V', "ERROR"),
            (b'C', "42704"),
            (b'M', MESSAGE),
            (b'D', DETAIL),
            (b'H', HINT),
        ] {
            fields.push(tag);
            fields.extend(value.as_bytes());
            fields.push(0);
        }
        fields.push(0);
        let mut message = vec![b'E'];
        message.extend(u32::try_from(fields.len() + 4).unwrap().to_be_bytes());
        message.extend(fields);
        message
    }

    /// A real driver error holding a PostgreSQL error (its `Display` is the
    /// bare "db error"): a one-shot server answers the startup message with
    /// an ErrorResponse, as PostgreSQL does for an unknown database.
    async fn db_error() -> tokio_postgres::Error {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut length = [0; 4];
            socket.read_exact(&mut length).await.unwrap();
            let mut startup = vec![0; u32::from_be_bytes(length) as usize - 4];
            socket.read_exact(&mut startup).await.unwrap();
            socket.write_all(&error_response()).await.unwrap();
        });
        let url = format!("host=127.0.0.1 port={port} user=u dbname=d sslmode=disable");
        let error = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .err()
            .unwrap();
        assert_eq!(error.to_string(), "db error", "the driver's own Display");
        error
    }

    fn refinery_error(source: tokio_postgres::Error) -> refinery::Error {
        Err::<(), _>(source)
            .migration_err("error applying migration V2__year", None)
            .unwrap_err()
    }

    /// The `.rs` files under `dir`, recursively.
    fn rust_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(rust_files(&path));
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
        files
    }

    /// Read from the sources, so that a new variant cannot slip by: every
    /// `#[error]` of a variant holding a driver or refinery error shows it
    /// through `pg_error::describe` (or is `transparent`, or carries the
    /// description in a `message` field).
    #[test]
    fn every_error_holding_a_driver_error_displays_it_through_describe() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut offenders = Vec::new();
        for file in rust_files(&src) {
            let text = std::fs::read_to_string(&file).unwrap();
            for attribute in text.split("#[error(").skip(1) {
                let end = ["\n    ///", "\n}"]
                    .iter()
                    .filter_map(|e| attribute.find(e))
                    .min()
                    .unwrap_or(attribute.len());
                let variant = &attribute[..end];
                let holds = ["tokio_postgres::Error", "refinery::Error", "PgError"]
                    .iter()
                    .any(|t| variant.contains(t));
                let shown = variant.contains("describe(")
                    || variant.starts_with("transparent")
                    || variant.contains("message: String");
                if holds && !shown {
                    let first = variant.lines().next().unwrap_or_default();
                    offenders.push(format!("{}: #[error({first}", file.display()));
                }
            }
        }
        assert!(offenders.is_empty(), "bare driver errors: {offenders:#?}");
    }

    #[tokio::test]
    async fn no_error_type_displays_a_bare_db_error() {
        let database = || "tdt_db".to_owned();
        let shown = [
            Error::Db(db_error().await).to_string(),
            ProvisionError::Db(db_error().await).to_string(),
            TemplateError::Db(db_error().await).to_string(),
            CatalogError::Db(db_error().await).to_string(),
            CatalogError::Unavailable(deadpool_postgres::PoolError::Backend(db_error().await))
                .to_string(),
            crate::notify::NotifyError::Db(db_error().await).to_string(),
            MigrateError::Db {
                database: database(),
                source: db_error().await,
            }
            .to_string(),
            MigrateError::Run {
                set: SchemaSet::Tenant,
                database: database(),
                source: refinery_error(db_error().await),
            }
            .to_string(),
            MigrateError::Outside {
                set: SchemaSet::Tenant,
                database: database(),
                migration: "V2__year".to_owned(),
                number: 1,
                source: db_error().await,
            }
            .to_string(),
            ServerError::Unreachable {
                database: database(),
                address: "127.0.0.1:1".to_owned(),
                source: db_error().await,
            }
            .to_string(),
            PoolError::Connect {
                database: database(),
                source: db_error().await,
            }
            .to_string(),
            PoolError::Limits(db_error().await).to_string(),
            LegacyError::Source {
                database: database(),
                source: db_error().await,
            }
            .to_string(),
            LegacyError::db("read the source schema")(db_error().await).to_string(),
            crate::pg_error::describe(&refinery_error(db_error().await)),
        ];
        for text in shown {
            assert!(!text.contains("db error"), "{text}");
            for part in [MESSAGE, DETAIL, HINT, "SQLSTATE 42704"] {
                assert!(text.contains(part), "{part} missing from: {text}");
            }
        }
    }
}
