//! `/v1/tenants`: the tenant life cycle for admins — create (idempotent with
//! `Idempotency-Key`), list with filters and a cursor, show, patch, suspend,
//! resume, delete (with `?confirm=`), password rotation, and the connection
//! settings that backends resolve by société.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{AdminCaller, Caller};
use super::error::{ApiError, Problem};
use super::extract::{ApiJson, ApiPath, ApiQuery, OptionalJson};
use super::state::AppState;
use super::tenant_forms::{CreateTenant, ListQuery, PatchTenant, SuspendBody, tenant_code};
use crate::TenantConnection;
use crate::provision::ProvisionPath;
use crate::tenant::{Plan, Region, Tenant, TenantStatus};
use crate::{TenantCode, TenantFilter};

/// A tenant as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantBody {
    /// Stable id.
    pub id: Uuid,
    /// Code: `^[a-z][a-z0-9_]{1,39}$`.
    #[schema(value_type = String)]
    pub code: TenantCode,
    /// Display name.
    pub name: String,
    /// Region.
    #[schema(value_type = String, example = "FR")]
    pub region: Region,
    /// Plan.
    #[schema(value_type = String, example = "pro")]
    pub plan: Plan,
    /// Life-cycle status.
    #[schema(value_type = String, example = "active")]
    pub status: TenantStatus,
    /// Why it is in this status.
    pub status_reason: Option<String>,
    /// Administrator e-mail.
    pub admin_email: Option<String>,
    /// Free-form settings.
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    /// Database (and role) name.
    pub database: String,
    /// Newest tenant migration applied.
    pub schema_version: Option<i32>,
    /// Generation of the role's derived password (bumped by each rotation).
    pub password_generation: i32,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl From<Tenant> for TenantBody {
    fn from(t: Tenant) -> Self {
        Self {
            id: t.id,
            code: t.code,
            name: t.name,
            region: t.region,
            plan: t.plan,
            status: t.status,
            status_reason: t.status_reason,
            admin_email: t.admin_email,
            settings: t.settings,
            database: t.database_name,
            schema_version: t.schema_version,
            password_generation: t.password_generation,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// A page of tenants.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantPage {
    /// The tenants, ordered by code.
    pub items: Vec<TenantBody>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_tenant, list_tenants))
        .routes(routes!(get_tenant, patch_tenant, delete_tenant))
        .routes(routes!(suspend_tenant))
        .routes(routes!(resume_tenant))
        .routes(routes!(rotate_tenant_password))
        .routes(routes!(tenant_connection))
}

/// Create a tenant (role, database cloned from the template, schema).
#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", request_body = CreateTenant,
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$",
        description = "Replays the first response to this key (1 to 255 visible ASCII characters, no space)")),
    responses(
        (status = 201, description = "Created", body = TenantBody, headers(("Location" = String))),
        (status = 409, description = "A live tenant has this code", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_tenant(
    State(state): State<AppState>,
    admin: AdminCaller,
    headers: HeaderMap,
    ApiJson(form): ApiJson<CreateTenant>,
) -> Result<Response, ApiError> {
    let new = form.validate()?;
    let actor = format!("api-key:{}", admin.key_id);
    let work = || async {
        let created = async {
            let tenant = state
                .orchestrator()
                .create_tenant_via(new, ProvisionPath::Template, &actor)
                .await?;
            Ok::<_, ApiError>(created_response(tenant))
        };
        created.await.unwrap_or_else(IntoResponse::into_response)
    };
    match headers.get("idempotency-key") {
        None => Ok(work().await),
        Some(key) => {
            let key = key
                .to_str()
                .map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII"))?;
            let fingerprint = form.fingerprint();
            let scope = admin.key_id.to_string();
            state
                .idempotency()
                .run(&scope, key, fingerprint, work)
                .await
        }
    }
}

fn created_response(tenant: Tenant) -> Response {
    let location = format!("/v1/tenants/{}", tenant.code);
    let mut response = (StatusCode::CREATED, Json(TenantBody::from(tenant))).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// List tenants (live ones unless `status` is given), by code, a page at a time.
#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of tenants", body = TenantPage),
        (status = 400, description = "Invalid filter", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_tenants(
    State(state): State<AppState>,
    _admin: AdminCaller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<TenantPage>, ApiError> {
    let limit = query.limit()?;
    let filter = TenantFilter {
        status: query.parsed_status()?,
        region: query.parsed_region()?,
        plan: query.parsed_plan()?,
        include_gone: false,
        after: query.parsed_cursor()?,
        limit: Some(limit + 1),
    };
    let mut tenants = state.orchestrator().tenants(&filter).await?;
    let more = tenants.len() as i64 > limit;
    tenants.truncate(limit as usize);
    let next_cursor = more
        .then(|| tenants.last().map(|t| t.code.to_string()))
        .flatten();
    Ok(Json(TenantPage {
        items: tenants.into_iter().map(TenantBody::from).collect(),
        next_cursor,
    }))
}

/// Show one tenant.
#[utoipa::path(get, path = "/v1/tenants/{code}", tag = "tenants",
    params(("code" = String, Path)), security(("bearer" = [])),
    responses(
        (status = 200, description = "The tenant", body = TenantBody),
        (status = 404, description = "Unknown tenant", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_tenant(
    State(state): State<AppState>,
    _admin: AdminCaller,
    ApiPath(code): ApiPath<String>,
) -> Result<Json<TenantBody>, ApiError> {
    let code = tenant_code(&code)?;
    Ok(Json(state.orchestrator().tenant(&code).await?.into()))
}

/// Change a tenant's name, region, plan, e-mail or settings.
#[utoipa::path(patch, path = "/v1/tenants/{code}", tag = "tenants", request_body = PatchTenant,
    params(("code" = String, Path)), security(("bearer" = [])),
    responses(
        (status = 200, description = "The changed tenant", body = TenantBody),
        (status = 404, description = "Unknown tenant", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field", body = Problem, content_type = "application/problem+json"),
    ))]
async fn patch_tenant(
    State(state): State<AppState>,
    _admin: AdminCaller,
    ApiPath(code): ApiPath<String>,
    ApiJson(form): ApiJson<PatchTenant>,
) -> Result<Json<TenantBody>, ApiError> {
    let code = tenant_code(&code)?;
    let patch = form.validate()?;
    let tenant = state.orchestrator().update_tenant(&code, &patch).await?;
    Ok(Json(tenant.into()))
}

/// Query of `DELETE /v1/tenants/{code}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConfirmQuery {
    /// Must repeat the tenant's code.
    #[param(required = true)]
    pub confirm: Option<String>,
}

/// Drop a tenant's database and role (the catalog keeps it as `deleted`).
#[utoipa::path(delete, path = "/v1/tenants/{code}", tag = "tenants",
    params(("code" = String, Path), ConfirmQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "Dropped", body = TenantBody),
        (status = 400, description = "Missing confirm", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "confirm does not repeat the code", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown tenant", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_tenant(
    State(state): State<AppState>,
    _admin: AdminCaller,
    ApiPath(code): ApiPath<String>,
    ApiQuery(query): ApiQuery<ConfirmQuery>,
) -> Result<Json<TenantBody>, ApiError> {
    let code = tenant_code(&code)?;
    // A missing `confirm` is a malformed request (400); one naming another
    // tenant conflicts with the target (409): no schema can say that
    // `confirm` must equal the path's code.
    match query.confirm.as_deref() {
        None => {
            return Err(ApiError::bad_request(format!(
                "dropping a tenant destroys its database: repeat its code, DELETE /v1/tenants/{code}?confirm={code}"
            )));
        }
        Some(confirm) if confirm != code.as_str() => {
            return Err(ApiError::conflict(format!(
                "confirm does not repeat the tenant's code: DELETE /v1/tenants/{code}?confirm={code}"
            )));
        }
        Some(_) => {}
    }
    Ok(Json(state.orchestrator().drop_tenant(&code).await?.into()))
}

/// Suspend a tenant: its role cannot log in, its sessions end.
#[utoipa::path(post, path = "/v1/tenants/{code}/suspend", tag = "tenants",
    params(("code" = String, Path)), request_body(content = Option<SuspendBody>), security(("bearer" = [])),
    responses(
        (status = 200, description = "Suspended", body = TenantBody),
        (status = 404, description = "Unknown tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not active", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid reason (over 1000 characters, or a NUL)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn suspend_tenant(
    State(state): State<AppState>,
    _admin: AdminCaller,
    ApiPath(code): ApiPath<String>,
    OptionalJson(body): OptionalJson<SuspendBody>,
) -> Result<Json<TenantBody>, ApiError> {
    let code = tenant_code(&code)?;
    let reason = body.map(SuspendBody::validate).transpose()?.flatten();
    let tenant = state
        .orchestrator()
        .suspend_tenant(&code, reason.as_deref())
        .await?;
    Ok(Json(tenant.into()))
}

/// Resume a suspended tenant.
#[utoipa::path(post, path = "/v1/tenants/{code}/resume", tag = "tenants",
    params(("code" = String, Path)), security(("bearer" = [])),
    responses(
        (status = 200, description = "Resumed", body = TenantBody),
        (status = 404, description = "Unknown tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not suspended", body = Problem, content_type = "application/problem+json"),
    ))]
async fn resume_tenant(
    State(state): State<AppState>,
    _admin: AdminCaller,
    ApiPath(code): ApiPath<String>,
) -> Result<Json<TenantBody>, ApiError> {
    let code = tenant_code(&code)?;
    Ok(Json(
        state.orchestrator().resume_tenant(&code).await?.into(),
    ))
}

/// Rotate a tenant role's password: the next generation of its derivation;
/// the sessions of the old one end and tenantd's pools reconnect. The new
/// password is read at `/connection`.
#[utoipa::path(post, path = "/v1/tenants/{code}/rotate-password", tag = "tenants",
    params(("code" = String, Path)), security(("bearer" = [])),
    responses(
        (status = 200, description = "Rotated", body = TenantBody),
        (status = 404, description = "Unknown tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Neither active nor suspended", body = Problem, content_type = "application/problem+json"),
    ))]
async fn rotate_tenant_password(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(code): ApiPath<String>,
) -> Result<Json<TenantBody>, ApiError> {
    let code = tenant_code(&code)?;
    let actor = format!("api-key:{}", admin.key_id);
    let tenant = state
        .orchestrator()
        .rotate_tenant_password_as(&code, &actor)
        .await?;
    Ok(Json(tenant.into()))
}

/// Connection settings of a tenant's database, its role's password
/// included: for an admin API key or that tenant's own API key; a JWT (a
/// user's session) is refused with 403.
#[utoipa::path(get, path = "/v1/tenants/{code}/connection", tag = "tenants",
    params(("code" = String, Path)), security(("bearer" = [])),
    responses(
        (status = 200, description = "How to connect as the tenant's role (password included): admin API key or that tenant's own API key", body = TenantConnection),
        (status = 403, description = "Another tenant's API key, or a JWT (a JWT never reads the role's password)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown tenant", body = Problem, content_type = "application/problem+json"),
    ))]
async fn tenant_connection(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(code): ApiPath<String>,
) -> Result<Response, ApiError> {
    let code = tenant_code(&code)?;
    caller.may_read_connection(&code)?;
    let connection = state.orchestrator().tenant_connection(&code).await?;
    let mut response = Json(connection).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
