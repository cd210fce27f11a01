//! What a fleet run is asked to do ([`RunOptions`]) and what it reports:
//! one [`TenantResult`] per tenant as it finishes (to a [`RunObserver`]), a
//! live [`RunProgress`] that a caller can poll, and the closing [`RunSummary`].

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use uuid::Uuid;

pub use crate::catalog::Outcome;
use crate::migrate::SchemaSet;
use crate::tenant::TenantCode;

/// Which sets a run migrates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SetChoice {
    /// AUTH only.
    Auth,
    /// SHARED only.
    Shared,
    /// The template and the tenant databases.
    Tenant,
    /// AUTH, SHARED, then the template and the tenants.
    All,
}

impl SetChoice {
    /// Whether `schema` is part of the choice.
    pub fn includes(self, schema: SchemaSet) -> bool {
        match self {
            Self::All => true,
            Self::Auth => schema == SchemaSet::Auth,
            Self::Shared => schema == SchemaSet::Shared,
            Self::Tenant => schema == SchemaSet::Tenant,
        }
    }
}

/// What a fleet run is asked to do.
#[derive(Debug, Clone, Serialize)]
pub struct RunOptions {
    /// Which sets.
    pub sets: SetChoice,
    /// Only these tenants (empty: every live tenant).
    pub tenants: Vec<TenantCode>,
    /// Tenants migrated at once (default: from the core count); capped by
    /// `TENANTD_MIGRATE_CONNECTIONS`.
    pub concurrency: Option<usize>,
    /// Migrate this many tenants first and stop if any of them fails.
    pub canary: usize,
    /// Go on after a tenant fails (default: stop starting new ones).
    pub continue_on_error: bool,
    /// List what would run where; change nothing.
    pub dry_run: bool,
    /// Quarantine tenants whose migration failed (default true).
    pub quarantine: bool,
    /// Who runs it (for the audit log).
    pub actor: String,
    /// The id of the run's `operations` row, when the caller chose it
    /// beforehand (an HTTP response names the operation before the run holds
    /// the fleet lock); a new id otherwise. Unused by dry runs, which write
    /// no row.
    #[serde(skip)]
    pub operation_id: Option<Uuid>,
}

impl Default for RunOptions {
    /// The defaults of a run, the one definition that `tenantd migrate run`
    /// and `POST /v1/migrations/run` both start from.
    fn default() -> Self {
        Self {
            sets: SetChoice::All,
            tenants: Vec::new(),
            concurrency: None,
            canary: 0,
            continue_on_error: false,
            dry_run: false,
            quarantine: true,
            actor: "library".to_owned(),
            operation_id: None,
        }
    }
}

/// One tenant's result.
#[derive(Debug, Clone, Serialize)]
pub struct TenantResult {
    /// The tenant.
    pub tenant: TenantCode,
    /// Its database.
    pub database: String,
    /// What happened.
    pub outcome: Outcome,
    /// Version before.
    pub from_version: Option<i32>,
    /// Version after.
    pub to_version: Option<i32>,
    /// Versions applied (or, in a dry run, that would be).
    pub applied: Vec<i32>,
    /// The error (failed) or the reason (skipped).
    pub error: Option<String>,
    /// Whether the tenant is now quarantined.
    pub quarantined: bool,
    /// Time spent on it.
    pub elapsed_ms: u64,
}

/// AUTH or SHARED in a run.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseResult {
    /// Which set.
    pub schema: SchemaSet,
    /// The database.
    pub database: String,
    /// Version after the run (before it, in a dry run).
    pub version: Option<i32>,
    /// Versions applied (or that would be).
    pub applied: Vec<i32>,
}

/// The template in a run.
#[derive(Debug, Clone, Serialize)]
pub struct TemplateResult {
    /// The template of the tenant set.
    pub name: String,
    /// Whether the run built it (or, in a dry run, would).
    pub built: bool,
}

/// Live counts of a run, for a progress bar or an HTTP poll (and, read
/// back from a finished run's recorded summary, for another process).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct RunProgress {
    /// Tenants in the plan.
    pub total: usize,
    /// Tenants finished (any outcome).
    pub done: usize,
    /// Migrated.
    pub migrated: usize,
    /// Already current.
    pub current: usize,
    /// Failed.
    pub failed: usize,
    /// Skipped.
    pub skipped: usize,
    /// Dry run: would be migrated.
    pub would_migrate: usize,
}

impl RunProgress {
    /// Counts one result.
    pub fn count(&mut self, outcome: Outcome) {
        self.done += 1;
        match outcome {
            Outcome::Migrated => self.migrated += 1,
            Outcome::Current => self.current += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Skipped => self.skipped += 1,
            Outcome::WouldMigrate => self.would_migrate += 1,
        }
    }
}

/// Told about a run as it goes (progress bars, JSON lines, HTTP progress).
pub trait RunObserver: Send + Sync {
    /// The plan is made: `total` tenants will be reported.
    fn planned(&self, _total: usize) {}
    /// A tenant is finished.
    fn finished(&self, _result: &TenantResult) {}
}

/// An observer that keeps [`RunProgress`] for polling (e.g. an HTTP
/// handler that started the run on a task).
#[derive(Clone, Default)]
pub struct ProgressTracker {
    progress: Arc<Mutex<RunProgress>>,
}

impl ProgressTracker {
    /// The counts so far.
    pub fn snapshot(&self) -> RunProgress {
        self.progress
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl RunObserver for ProgressTracker {
    fn planned(&self, total: usize) {
        self.progress
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .total = total;
    }

    fn finished(&self, result: &TenantResult) {
        self.progress
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .count(result.outcome);
    }
}

/// The closing summary of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    /// The run's `operations` row (none in a dry run).
    pub operation: Option<Uuid>,
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// AUTH and SHARED.
    pub databases: Vec<DatabaseResult>,
    /// The template (when the tenant set is part of the run).
    pub template: Option<TemplateResult>,
    /// Tenant counts.
    pub tenants: RunProgress,
    /// Codes of the tenants that failed.
    pub failed: Vec<TenantCode>,
    /// Why the run stopped early, if it did.
    pub stopped: Option<String>,
    /// Wall time.
    pub elapsed_ms: u64,
}

/// Milliseconds since `start`.
pub(crate) fn elapsed_ms(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}
