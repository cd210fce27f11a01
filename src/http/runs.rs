//! [`RunRegistry`]: the fleet runs this process started over HTTP, by
//! operation id — live progress while they go, then their summary or error —
//! so `GET /v1/operations/{id}` can answer before the run's catalog row
//! exists (the run first waits for the fleet lock) and for dry runs, which
//! write no row. The catalog stays the record; this is only a view of the
//! runs of this process, and it forgets the oldest finished ones.
//!
//! A run goes on on its own task after the request that started it ends.
//! Graceful shutdown waits for the runs in flight ([`RunRegistry::wait`]),
//! so that their operation rows are closed and no tenant is left half-way.
//! A run whose task ends in an error or a panic has its row closed as
//! `failed` at once (if the run had not closed it itself); a killed process
//! leaves the row `running` until `tenantd reconcile` (run by `serve` at
//! start) finds nobody holding the fleet-run lock and closes it (each
//! tenant's migration is one transaction, so a rerun picks up where it
//! stopped).

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use futures::FutureExt;
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
            let run = AssertUnwindSafe(fleet.run(&task.options, &task.observer));
            let ended = match run.catch_unwind().await {
                Ok(Ok(summary)) => RunEnd::Finished(summary),
                Ok(Err(error)) => {
                    tracing::warn!(operation = %id, %error, "fleet run over HTTP failed");
                    RunEnd::Failed(error.to_string())
                }
                Err(panic) => {
                    let error = format!("the run's task panicked: {}", panic_message(&*panic));
                    tracing::error!(operation = %id, %error, "fleet run over HTTP died");
                    RunEnd::Failed(error)
                }
            };
            if let RunEnd::Failed(error) = &ended {
                close_row(&fleet, id, error).await;
            }
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

/// Closes the run's catalog row as failed if the run left it `running`.
async fn close_row(fleet: &Fleet, id: Uuid, error: &str) {
    match fleet.close_abandoned_run(id, error).await {
        Ok(true) => tracing::warn!(operation = %id, "closed the failed run's operation"),
        Ok(false) => {}
        Err(e) => tracing::error!(operation = %id, error = %e,
            "cannot close the failed run's operation; `tenantd reconcile` will"),
    }
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
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
