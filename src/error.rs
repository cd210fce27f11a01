//! The library's error: what any [`crate::Orchestrator`] call can fail with,
//! and the [`ErrorKind`] that callers (CLI exit codes, HTTP statuses) map.

use crate::catalog::CatalogError;
use crate::config::ConfigError;
use crate::devcluster::DevClusterError;
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
    #[error("PostgreSQL refused an administrative statement: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// A legacy split step failed.
    #[error(transparent)]
    Legacy(Box<crate::legacy::LegacyError>),
    /// The HTTP server could not start or failed.
    #[error(transparent)]
    Serve(#[from] crate::http::ServeError),
    /// A fleet migration run failed or left tenants failed.
    #[error(transparent)]
    Fleet(#[from] FleetError),
}

impl From<crate::legacy::LegacyError> for Error {
    fn from(e: crate::legacy::LegacyError) -> Self {
        Self::Legacy(Box::new(e))
    }
}

/// Broad classes of [`Error`], for exit codes and HTTP statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad settings or input: fix the call (exit 2, HTTP 400/422).
    InvalidInput,
    /// The tenant does not exist (exit 3, HTTP 404).
    NotFound,
    /// The request conflicts with the current state (exit 4, HTTP 409).
    Conflict,
    /// The server or a dependency is unreachable; retry later (exit 5, HTTP 503).
    Unavailable,
    /// Anything else (exit 1, HTTP 500).
    Internal,
}

impl Error {
    /// When the call may be retried: `Some` only for [`Error::Busy`].
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Busy { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Config(_) | Self::InvalidInput(_) => ErrorKind::InvalidInput,
            Self::Migrate(
                MigrateError::MissingSet { .. }
                | MigrateError::Load { .. }
                | MigrateError::Empty { .. },
            ) => ErrorKind::InvalidInput,
            Self::Provision(ProvisionError::NotFound(_)) => ErrorKind::NotFound,
            Self::Provision(
                ProvisionError::AlreadyExists(_)
                | ProvisionError::WrongStatus { .. }
                | ProvisionError::NameTaken { .. },
            )
            | Self::TenantUnavailable { .. } => ErrorKind::Conflict,
            Self::Server(_)
            | Self::UnderMaintenance { .. }
            | Self::Busy { .. }
            | Self::Connection { .. }
            | Self::Catalog(CatalogError::Unavailable(_))
            | Self::Provision(
                ProvisionError::Server(_)
                | ProvisionError::ShuttingDown
                | ProvisionError::Catalog(CatalogError::Unavailable(_))
                | ProvisionError::Template(
                    TemplateError::Server(_) | TemplateError::Catalog(CatalogError::Unavailable(_)),
                ),
            )
            | Self::Template(
                TemplateError::Server(_) | TemplateError::Catalog(CatalogError::Unavailable(_)),
            ) => ErrorKind::Unavailable,
            Self::Catalog(CatalogError::AlreadyExists(_)) => ErrorKind::Conflict,
            Self::Legacy(e) => e.kind(),
            Self::Serve(e) => e.kind(),
            Self::Fleet(FleetError::UnknownTenant(_)) => ErrorKind::NotFound,
            Self::Fleet(FleetError::AuthBehind { .. }) => ErrorKind::Conflict,
            Self::Fleet(
                FleetError::Server(_) | FleetError::Catalog(CatalogError::Unavailable(_)),
            ) => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        }
    }
}
