//! `GET /v1/operations/{id}`: one entry of the audit log (admin API key) —
//! a tenant's create or drop, or a fleet migration run with its live counts
//! and per-tenant results.
//!
//! The catalog row is the record. A run started by this process is also in
//! the [`super::runs::RunRegistry`]: its counts come from there while it
//! goes, and it is found even before its row exists (the run waits for the
//! fleet lock first) or when it writes none (a dry run).

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::AdminCaller;
use super::error::{ApiError, Problem};
use super::extract::ApiPath;
use super::runs::{RunEnd, RunView};
use super::state::AppState;
use crate::catalog::{FleetRunRow, OperationRow};
use crate::fleet::{RUN_OPERATION_KIND, RunProgress, TenantResult};

/// An operation as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OperationBody {
    /// Its id.
    pub id: Uuid,
    /// What it does: `create`, `drop`, `migrate_run`, …
    #[schema(example = "migrate_run")]
    pub kind: String,
    /// `running`, `succeeded` or `failed` (a run where a tenant failed is `failed`).
    #[schema(example = "running")]
    pub status: String,
    /// The tenant it is about (none for a fleet run).
    pub tenant: Option<String>,
    /// Who started it (`api-key:<id>`, `cli`, …).
    pub actor: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed.
    pub error: Option<String>,
    /// Free-form detail; for a run: `options`, the plan and, once ended, `summary`.
    #[schema(value_type = Object)]
    pub detail: Value,
    /// Tenant counts of a fleet run.
    pub progress: Option<RunProgress>,
    /// Per-tenant results of a fleet run, in the order they finished
    /// (tenants already current are counted, not listed).
    pub results: Option<Vec<TenantResultBody>>,
}

/// One tenant's result in a fleet run.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantResultBody {
    /// The tenant.
    pub tenant: String,
    /// `migrated`, `failed`, `skipped` or (dry run) `would_migrate`.
    pub outcome: String,
    /// Version before.
    pub from_version: Option<i32>,
    /// Version after.
    pub to_version: Option<i32>,
    /// Versions applied (or that would be).
    pub applied: Vec<i32>,
    /// Why it failed or was skipped.
    pub error: Option<String>,
    /// When it finished (absent for a dry run).
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<FleetRunRow> for TenantResultBody {
    fn from(r: FleetRunRow) -> Self {
        Self {
            tenant: r.tenant_code,
            outcome: r.outcome,
            from_version: r.from_version,
            to_version: r.to_version,
            applied: r.applied,
            error: r.error,
            finished_at: Some(r.finished_at),
        }
    }
}

impl From<TenantResult> for TenantResultBody {
    fn from(r: TenantResult) -> Self {
        Self {
            tenant: r.tenant.to_string(),
            outcome: r.outcome.as_str().to_owned(),
            from_version: r.from_version,
            to_version: r.to_version,
            applied: r.applied,
            error: r.error,
            finished_at: None,
        }
    }
}

impl From<RunView> for OperationBody {
    /// A run known only to this process (no catalog row yet, or a dry run).
    fn from(run: RunView) -> Self {
        let (status, error, summary) = match &run.end {
            None => ("running", None, None),
            Some(RunEnd::Failed(e)) => ("failed", Some(e.clone()), None),
            Some(RunEnd::Finished(s)) if !s.failed.is_empty() => (
                "failed",
                Some(format!("{} tenant(s) failed", s.failed.len())),
                Some(s),
            ),
            Some(RunEnd::Finished(s)) => ("succeeded", None, Some(s)),
        };
        let mut detail = json!({ "options": &run.options });
        if let Some(summary) = summary {
            detail["summary"] = json!(summary);
        }
        let results = run.results.unwrap_or_default();
        Self {
            id: run.id,
            kind: RUN_OPERATION_KIND.to_owned(),
            status: status.to_owned(),
            tenant: None,
            actor: run.options.actor.clone(),
            started_at: run.started_at,
            finished_at: run.finished_at,
            error,
            detail,
            progress: Some(run.progress.clone()),
            results: Some(results.into_iter().map(Into::into).collect()),
        }
    }
}

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_operation))
}

/// Show an operation; for a fleet run, its progress and per-tenant results.
#[utoipa::path(get, path = "/v1/operations/{id}", tag = "migrations",
    params(("id" = Uuid, Path, description = "Operation id (from POST /v1/migrations/run's Location)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The operation", body = OperationBody),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown credentials", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown operation", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_operation(
    State(state): State<AppState>,
    _admin: AdminCaller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<OperationBody>, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|e| {
        ApiError::bad_request(format!(
            "{id:?} is not an operation id ({e}); use the id of a Location header"
        ))
    })?;
    let live = state.runs().get(id);
    let orchestrator = state.orchestrator();
    let Some(row) = orchestrator.operation(id).await? else {
        return live.map(|run| Json(run.into())).ok_or_else(|| {
            ApiError::not_found(format!(
                "no operation {id}; it may belong to another deployment"
            ))
        });
    };
    let mut body = from_row(row);
    if body.kind == RUN_OPERATION_KIND {
        let results = orchestrator.fleet_run_results(id).await?;
        body.progress = Some(match live {
            Some(run) => run.progress.clone(),
            None => recorded_progress(&body.detail, &results),
        });
        body.results = Some(results.into_iter().map(Into::into).collect());
    }
    Ok(Json(body))
}

fn from_row(row: OperationRow) -> OperationBody {
    OperationBody {
        id: row.id,
        kind: row.kind,
        status: row.status,
        tenant: row.tenant_code,
        actor: row.actor,
        started_at: row.started_at,
        finished_at: row.finished_at,
        error: row.error,
        detail: row.detail,
        progress: None,
        results: None,
    }
}

/// Counts of a run this process does not hold: the summary once it ended,
/// else the plan and the results recorded so far (current tenants are not
/// recorded one by one, so `done` lags until the end).
fn recorded_progress(detail: &Value, results: &[FleetRunRow]) -> RunProgress {
    if let Some(tenants) = detail.pointer("/summary/tenants") {
        return serde_json::from_value(tenants.clone()).unwrap_or_default();
    }
    let mut progress = RunProgress {
        total: detail["planned"].as_u64().unwrap_or(0) as usize,
        done: results.len(),
        ..RunProgress::default()
    };
    for r in results {
        match r.outcome.as_str() {
            "migrated" => progress.migrated += 1,
            "failed" => progress.failed += 1,
            "skipped" => progress.skipped += 1,
            _ => progress.current += 1,
        }
    }
    progress
}
