//! Fleet migrations: the schema of AUTH, SHARED, the template and every
//! tenant database, seen and changed as one fleet.
//!
//! - [`Fleet::status`] reads the catalog only (no connection to tenant
//!   databases); with `verify` it also reads every tenant database's history
//!   (bounded concurrency) and reports drift.
//! - [`Fleet::run`] migrates AUTH, SHARED, then the template (so tenants born
//!   during the run are already at the new version), then the tenants with
//!   bounded concurrency, under one catalog-wide advisory lock per run and the
//!   per-database lock of `crate::migrate::MigrationSet::apply`. A tenant whose
//!   migration fails keeps its previous version and is quarantined.
//!
//! This module decides what runs where and records it; it holds no SQL of
//! the catalog (see `crate::catalog`) and prints nothing (see `cli`).

mod report;
mod run;
mod status;
mod tenant;

use crate::error_kind::{Classify, ErrorKind};
use std::sync::Arc;

pub use crate::migrate::Drift;
pub use report::{
    DatabaseResult, Outcome, ProgressTracker, RunObserver, RunOptions, RunProgress, RunSummary,
    SetChoice, TemplateResult, TenantResult,
};
pub use status::{DatabaseStatus, FleetStatus, TemplateStatus, TenantMigrationStatus, TenantState};

use crate::catalog::{Catalog, CatalogError, OperationKind};
use crate::migrate::{MigrateError, MigrationSet, SchemaSet};
use crate::names::Names;
use crate::server::{Server, ServerError};
use crate::template::{TemplateError, TemplateKeeper};
use crate::tenant::TenantCode;

/// Most tenants a run migrates at once, whatever the budget: each holds an
/// AUTH connection for its life-cycle lock and briefly needs a second one,
/// and the catalog pool has 16 (shared with the rest of the process).
pub const MAX_RUN_CONCURRENCY: usize = 8;
/// Kind of the `operations` row of a fleet run.
pub const RUN_OPERATION_KIND: OperationKind = OperationKind::MigrateRun;

/// A fleet status or run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// AUTH or SHARED could not be migrated or read.
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    /// The template could not be built.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A connection failed.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// A `--tenant` code names no tenant.
    #[error("unknown tenant {0}; `tenantd tenant list` shows the existing ones")]
    UnknownTenant(TenantCode),
    /// AUTH is behind its files, so the catalog cannot record tenant migrations.
    #[error(
        "the AUTH database is behind its migrations (pending {pending:?}); \
         run `tenantd migrate run --set auth` (or `--set all`) first"
    )]
    AuthBehind {
        /// The AUTH versions not applied yet.
        pending: Vec<i32>,
    },
    /// The run finished, but some tenants failed.
    #[error(
        "{failed} tenant(s) failed to migrate ({codes}); they keep their previous schema \
         and the error is in the catalog (`tenantd migrate status`): fix and rerun `tenantd migrate run`"
    )]
    TenantsFailed {
        /// How many failed.
        failed: usize,
        /// Their codes, comma-separated.
        codes: String,
    },
}

impl Classify for FleetError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Catalog(e) => e.kind(),
            Self::Migrate(e) => e.kind(),
            Self::Template(e) => e.kind(),
            Self::Server(e) => e.kind(),
            Self::UnknownTenant(_) => ErrorKind::NotFound,
            Self::AuthBehind { .. } => ErrorKind::Conflict,
            Self::TenantsFailed { .. } => ErrorKind::Internal,
        }
    }
}

/// Everything a fleet status or run works with (cheap to clone).
#[derive(Clone)]
pub struct Fleet {
    server: Server,
    catalog: Catalog,
    names: Names,
    templates: TemplateKeeper,
    auth: Arc<MigrationSet>,
    shared: Arc<MigrationSet>,
    tenant: Arc<MigrationSet>,
    connections: usize,
}

/// The parts a [`Fleet`] is made of (handed over by the orchestrator).
pub struct FleetParts {
    /// The server.
    pub server: Server,
    /// The catalog.
    pub catalog: Catalog,
    /// Database and role names.
    pub names: Names,
    /// The template keeper of the tenant set.
    pub templates: TemplateKeeper,
    /// The AUTH set.
    pub auth: Arc<MigrationSet>,
    /// The SHARED set.
    pub shared: Arc<MigrationSet>,
    /// The tenant set.
    pub tenant: Arc<MigrationSet>,
    /// Most tenant databases opened at once (`TENANTD_MIGRATE_CONNECTIONS`).
    pub connections: usize,
}

impl Fleet {
    /// A fleet over these parts.
    pub fn new(parts: FleetParts) -> Self {
        Self {
            server: parts.server,
            catalog: parts.catalog,
            names: parts.names,
            templates: parts.templates,
            auth: parts.auth,
            shared: parts.shared,
            tenant: parts.tenant,
            connections: parts.connections.max(1),
        }
    }

    /// Closes run `id`'s `operations` row as failed with `error` if it is
    /// still `running` (its task died before closing it); false if it was not.
    pub async fn close_abandoned_run(
        &self,
        id: uuid::Uuid,
        error: &str,
    ) -> Result<bool, FleetError> {
        Ok(self.catalog.fail_if_running(id, error).await?)
    }

    /// The set of a schema.
    pub fn set(&self, schema: SchemaSet) -> &Arc<MigrationSet> {
        match schema {
            SchemaSet::Auth => &self.auth,
            SchemaSet::Shared => &self.shared,
            SchemaSet::Tenant => &self.tenant,
        }
    }

    /// The concurrency of a run: `requested`, else twice the core count,
    /// never more than the connection budget nor [`MAX_RUN_CONCURRENCY`].
    pub fn concurrency(&self, requested: Option<usize>) -> usize {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let cap = self.connections.min(MAX_RUN_CONCURRENCY);
        requested.unwrap_or(2 * cores).clamp(1, cap)
    }

    /// The name of the AUTH or SHARED database.
    fn database_of(&self, schema: SchemaSet) -> &str {
        match schema {
            SchemaSet::Auth => self.names.auth_db(),
            _ => self.names.shared_db(),
        }
    }
}
