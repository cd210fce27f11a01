//! `/v1/migrations`: fleet migrations for admins — the fleet's schema status
//! (as `tenantd migrate status --json`) and starting a run (as `tenantd
//! migrate run`), which answers 202 with its operation at once and goes on
//! on its own task (see [`super::runs`]); `GET /v1/operations/{id}` follows it.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::AdminCaller;
use super::error::{ApiError, Problem};
use super::extract::{ApiQuery, OptionalJson};
use super::operations::OperationBody;
use super::state::AppState;
use crate::fleet::{FleetStatus, RunOptions, SetChoice};
use crate::tenant::TenantCode;

/// Query of `GET /v1/migrations`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    /// Also open every tenant database and compare its migration history
    /// with the files and the catalog (drift is reported as `divergent`).
    pub verify: Option<bool>,
}

/// Which sets a run migrates.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunSets {
    /// The AUTH database.
    Auth,
    /// The SHARED database.
    Shared,
    /// The template and every tenant database.
    Tenant,
    /// AUTH, SHARED, then the template and the tenants.
    All,
}

/// Body of `POST /v1/migrations/run` (every member optional; the options
/// of `tenantd migrate run`, with the defaults of [`RunOptions::default`]).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Which sets (default `all`).
    #[serde(default = "defaults::sets")]
    pub sets: RunSets,
    /// Only these tenants (default: every live tenant).
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Tenants migrated at once (default: twice the core count), capped by
    /// TENANTD_MIGRATE_CONNECTIONS and 8.
    #[schema(minimum = 1)]
    pub concurrency: Option<usize>,
    /// Migrate this many tenants first; stop if any of them fails.
    #[serde(default = "defaults::canary")]
    pub canary: usize,
    /// Go on after a tenant fails (default: start no new tenant).
    #[serde(default = "defaults::continue_on_error")]
    pub continue_on_error: bool,
    /// List what would run where and change nothing (no catalog row: the
    /// operation is known to this server process only).
    #[serde(default = "defaults::dry_run")]
    pub dry_run: bool,
    /// Refuse tenants whose migration failed until a run succeeds (default true).
    #[serde(default = "defaults::quarantine")]
    pub quarantine: bool,
}

/// Each omitted member of a [`RunRequest`] takes [`RunOptions::default`]'s value.
mod defaults {
    use super::{RunOptions, RunSets};

    pub(super) fn sets() -> RunSets {
        RunOptions::default().sets.into()
    }

    pub(super) fn canary() -> usize {
        RunOptions::default().canary
    }

    pub(super) fn continue_on_error() -> bool {
        RunOptions::default().continue_on_error
    }

    pub(super) fn dry_run() -> bool {
        RunOptions::default().dry_run
    }

    pub(super) fn quarantine() -> bool {
        RunOptions::default().quarantine
    }
}

impl Default for RunRequest {
    /// What an empty body asks: the defaults of a run, as the CLI's.
    fn default() -> Self {
        let defaults = RunOptions::default();
        Self {
            sets: defaults.sets.into(),
            tenants: Vec::new(),
            concurrency: defaults.concurrency,
            canary: defaults.canary,
            continue_on_error: defaults.continue_on_error,
            dry_run: defaults.dry_run,
            quarantine: defaults.quarantine,
        }
    }
}

impl From<SetChoice> for RunSets {
    fn from(sets: SetChoice) -> Self {
        match sets {
            SetChoice::Auth => Self::Auth,
            SetChoice::Shared => Self::Shared,
            SetChoice::Tenant => Self::Tenant,
            SetChoice::All => Self::All,
        }
    }
}

/// The answer of `POST /v1/migrations/run`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunAccepted {
    /// The run's operation, as `GET /v1/operations/{id}` shows it.
    pub operation: OperationBody,
}

impl RunRequest {
    /// The run options, once every field is checked.
    fn validate(self, actor: String) -> Result<RunOptions, ApiError> {
        if self.concurrency == Some(0) {
            return Err(ApiError::invalid(
                "concurrency must be at least 1 (omit it for the default)",
            ));
        }
        let tenants = self
            .tenants
            .iter()
            .map(|code| {
                TenantCode::parse(code).map_err(|e| {
                    ApiError::invalid(format!("tenants: {e}")).with("field", "tenants")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RunOptions {
            sets: match self.sets {
                RunSets::Auth => SetChoice::Auth,
                RunSets::Shared => SetChoice::Shared,
                RunSets::Tenant => SetChoice::Tenant,
                RunSets::All => SetChoice::All,
            },
            tenants,
            concurrency: self.concurrency,
            canary: self.canary,
            continue_on_error: self.continue_on_error,
            dry_run: self.dry_run,
            quarantine: self.quarantine,
            actor,
            operation_id: Some(Uuid::now_v7()),
        })
    }
}

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(fleet_status))
        .routes(routes!(start_run))
}

/// Schema versions of AUTH, SHARED, the template and every tenant (as
/// `tenantd migrate status --json`): from the catalog, or with `verify=true`
/// from every tenant database's own history too.
#[utoipa::path(get, path = "/v1/migrations", tag = "migrations", params(StatusQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Fleet status: `databases`, `template`, `tenants` (each with \
            `version`, `pending` and `state`), `counts`", body = Object),
        (status = 400, description = "Invalid query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown credentials", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
    ))]
async fn fleet_status(
    State(state): State<AppState>,
    _admin: AdminCaller,
    ApiQuery(query): ApiQuery<StatusQuery>,
) -> Result<Json<FleetStatus>, ApiError> {
    let verify = query.verify.unwrap_or(false);
    let status = state.orchestrator().fleet().status(verify).await;
    Ok(Json(status.map_err(crate::Error::from)?))
}

/// Start a fleet migration run; it goes on after this answer — follow it
/// with `GET /v1/operations/{id}` (the `Location`).
#[utoipa::path(post, path = "/v1/migrations/run", tag = "migrations",
    request_body(content = Option<RunRequest>, description = "Run options (an empty body runs everything)"),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Started", body = RunAccepted, headers(("Location" = String))),
        (status = 401, description = "No or unknown credentials", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "A listed tenant does not exist", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid or unknown member", body = Problem, content_type = "application/problem+json"),
    ))]
async fn start_run(
    State(state): State<AppState>,
    admin: AdminCaller,
    OptionalJson(body): OptionalJson<RunRequest>,
) -> Result<Response, ApiError> {
    let options = body
        .unwrap_or_default()
        .validate(format!("api-key:{}", admin.key_id))?;
    for code in &options.tenants {
        // Unknown codes are refused now rather than failing the run later.
        state.orchestrator().tenant(code).await?;
    }
    let run = state
        .runs()
        .start(state.orchestrator().fleet(), options)
        .ok_or_else(|| ApiError::internal(&"a fleet run was started without an operation id"))?;
    let location = format!("/v1/operations/{}", run.id);
    let body = RunAccepted {
        operation: run.into(),
    };
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}
