//! What one run of the split shares between its steps: how it was asked to
//! behave ([`RunOptions`]), who hears of its progress ([`RunObserver`]), and
//! the context its copy tasks share (`Ctx`: the orchestrator, the source,
//! the run's record in AUTH and what is done).

use std::collections::HashSet;
use std::sync::atomic::AtomicUsize;

use super::{LegacyConfig, Source};
use crate::Orchestrator;
use crate::catalog::LegacyRun;

/// How `run` behaves.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Testing only (feature `testing`): abort the process after this many
    /// tables are copied (committed in the tenant database, not yet recorded in AUTH).
    #[cfg(feature = "testing")]
    pub crash_after_tables: Option<usize>,
}

/// Receives a run's progress as the copy goes (every method defaults to
/// doing nothing). Units are table copies: one per tenant table per tenant.
pub trait RunObserver: Send + Sync {
    /// The copy has `units` units in all.
    fn planned(&self, _units: u64) {}
    /// `units` more units are done (copied now, done by an earlier
    /// invocation, or empty in the source).
    fn advanced(&self, _units: u64) {}
    /// The table `table` of tenant `tenant` is being copied.
    fn copying(&self, _tenant: &str, _table: &str) {}
}

/// A [`RunObserver`] that ignores the progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl RunObserver for NoProgress {}

/// Everything the copy tasks share.
pub(crate) struct Ctx<'a> {
    pub(crate) orchestrator: &'a Orchestrator,
    pub(crate) config: &'a LegacyConfig,
    pub(crate) source: Source,
    pub(crate) progress: LegacyRun,
    pub(crate) done: HashSet<(String, String)>,
    // Read only by the crash point of the `testing` feature.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) options: &'a RunOptions,
    pub(crate) copied: AtomicUsize,
    pub(crate) observer: &'a dyn RunObserver,
}
