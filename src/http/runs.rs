//! [`RunRegistry`]: the fleet runs this process started over HTTP, by
//! operation id — live progress while they go, then their summary or error —
//! so `GET /v1/operations/{id}` can answer before the run's catalog row
//! exists (the run first waits for the fleet lock) and for dry runs, which
//! write no row. The catalog stays the record; this is only a view of the
//! runs of this process, and it forgets the oldest finished ones.
//!
//! A run goes on on its own task after the request that started it ends.
//! Graceful shutdown waits for the runs in flight ([`RunRegistry::wait`]),
//! so that their operation rows are closed and no tenant is left half-way;
//! a killed process leaves the row `running` (each tenant's migration is
//! one transaction, so a rerun picks up where it stopped).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::fleet::{Fleet, ProgressTracker, RunObserver, RunOptions, RunSummary, TenantResult};

/// Finished runs remembered at most (the catalog keeps them all).
const KEPT_RUNS: usize = 100;

/// The fleet runs started over HTTP by this process.
#[derive(Clone, Default)]
pub struct RunRegistry {
    inner: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    runs: Mutex<BTreeMap<Uuid, Arc<Run>>>,
    tasks: Mutex<JoinSet<()>>,
}

/// One run: what it was asked, its progress and how it ended.
struct Run {
    options: RunOptions,
    started_at: DateTime<Utc>,
    observer: Collector,
    end: Mutex<Option<(RunEnd, DateTime<Utc>)>>,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub enum RunEnd {
    /// It ran to its end (some tenants may have failed: see the summary).
    Finished(RunSummary),
    /// It could not run (the error, as the catalog would record it).
    Failed(String),
}

/// A run as seen at one moment.
#[derive(Debug, Clone)]
pub struct RunView {
    /// The operation id.
    pub id: Uuid,
    /// What it was asked.
    pub options: RunOptions,
    /// When it was started.
    pub started_at: DateTime<Utc>,
    /// When it ended, if it did.
    pub finished_at: Option<DateTime<Utc>>,
    /// How it ended, if it did.
    pub end: Option<RunEnd>,
    /// Tenant counts so far.
    pub progress: crate::fleet::RunProgress,
    /// Per-tenant results of a dry run (a real run records them in the catalog).
    pub results: Option<Vec<TenantResult>>,
}

impl RunRegistry {
    /// Starts `options` on `fleet` on its own task; `options.operation_id`
    /// must be set (it is the registry key). Returns the run as it starts.
    pub fn start(&self, fleet: Fleet, options: RunOptions) -> Option<RunView> {
        let id = options.operation_id?;
        let run = Arc::new(Run {
            observer: Collector::new(options.dry_run),
            options,
            started_at: Utc::now(),
            end: Mutex::new(None),
        });
        self.remember(id, run.clone());
        let task = run.clone();
        let mut tasks = lock(&self.inner.tasks);
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            let ended = match fleet.run(&task.options, &task.observer).await {
                Ok(summary) => RunEnd::Finished(summary),
                Err(error) => {
                    tracing::warn!(operation = %id, %error, "fleet run over HTTP failed");
                    RunEnd::Failed(error.to_string())
                }
            };
            *lock(&task.end) = Some((ended, Utc::now()));
        });
        Some(view(id, &run))
    }

    /// The run with this operation id, if this process started it and still
    /// remembers it.
    pub fn get(&self, id: Uuid) -> Option<RunView> {
        let run = lock(&self.inner.runs).get(&id).cloned()?;
        Some(view(id, &run))
    }

    /// Waits for every run in flight to end.
    pub async fn wait(&self) {
        let mut tasks = std::mem::take(&mut *lock(&self.inner.tasks));
        if !tasks.is_empty() {
            tracing::info!(
                runs = tasks.len(),
                "waiting for fleet runs started over HTTP"
            );
        }
        while tasks.join_next().await.is_some() {}
    }

    fn remember(&self, id: Uuid, run: Arc<Run>) {
        let mut runs = lock(&self.inner.runs);
        runs.insert(id, run);
        if runs.len() <= KEPT_RUNS {
            return;
        }
        // Ids are UUIDv7: in key order, the oldest first.
        let finished: Vec<Uuid> = runs
            .iter()
            .filter(|(_, r)| lock(&r.end).is_some())
            .map(|(id, _)| *id)
            .take(runs.len() - KEPT_RUNS)
            .collect();
        for id in finished {
            runs.remove(&id);
        }
    }
}

fn view(id: Uuid, run: &Run) -> RunView {
    let (end, finished_at) = lock(&run.end).clone().unzip();
    RunView {
        id,
        options: run.options.clone(),
        started_at: run.started_at,
        finished_at,
        end,
        progress: run.observer.tracker.snapshot(),
        results: run.observer.results.as_ref().map(|r| lock(r).clone()),
    }
}

/// Counts every tenant; keeps the results of dry runs.
struct Collector {
    tracker: ProgressTracker,
    results: Option<Mutex<Vec<TenantResult>>>,
}

impl Collector {
    fn new(dry_run: bool) -> Self {
        Self {
            tracker: ProgressTracker::default(),
            results: dry_run.then(Mutex::default),
        }
    }
}

impl RunObserver for Collector {
    fn planned(&self, total: usize) {
        self.tracker.planned(total);
    }

    fn finished(&self, result: &TenantResult) {
        self.tracker.finished(result);
        if let Some(results) = &self.results {
            lock(results).push(result.clone());
        }
    }
}

/// Locks a mutex, ignoring poisoning (the data stays consistent: every
/// critical section is a single assignment or push).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
