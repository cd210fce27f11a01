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
    #[error("PostgreSQL refused an administrative statement: {0}")]
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
