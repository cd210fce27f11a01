//! `/v1/api-keys`: admins create (the secret is in the 201 response and
//! nowhere else), list and revoke API keys, admin-scoped or bound to one
//! tenant, through [`crate::Orchestrator::issue_api_key`] and its siblings.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::AdminCaller;
use super::error::{ApiError, Problem};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::state::AppState;
use crate::apikey::{ApiKeyRecord, ApiKeyScope, IssuedApiKey};
use crate::tenant::TenantCode;

/// `POST /v1/api-keys` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// A name saying who uses the key.
    #[schema(example = "billing backend")]
    pub name: String,
    /// `admin` or `tenant`.
    pub scope: ApiKeyScope,
    /// The tenant's code (required for, and only for, `tenant` keys).
    pub tenant: Option<String>,
}

/// An API key (without its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyBody {
    /// Identifier (for revocation).
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// First characters of the key.
    pub prefix: String,
    /// Scope.
    pub scope: ApiKeyScope,
    /// The tenant of a tenant key.
    #[schema(value_type = Option<String>)]
    pub tenant: Option<TenantCode>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Revocation time.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiKeyRecord> for KeyBody {
    fn from(k: ApiKeyRecord) -> Self {
        Self {
            id: k.id,
            name: k.name,
            prefix: k.key_prefix,
            scope: k.scope,
            tenant: k.tenant_code,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// A new key, with its secret (shown this once).
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedKey {
    /// The key's record.
    #[serde(flatten)]
    pub key: KeyBody,
    /// The secret: send it as `Authorization: Bearer <key>`. It is not stored.
    pub key_secret: String,
}

impl From<IssuedApiKey> for IssuedKey {
    fn from(issued: IssuedApiKey) -> Self {
        Self {
            key: issued.record.into(),
            key_secret: issued.secret,
        }
    }
}

/// Query of `GET /v1/api-keys`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct KeyQuery {
    /// Only the keys of this tenant.
    pub tenant: Option<String>,
    /// Include revoked keys.
    pub include_revoked: Option<bool>,
}

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(revoke_key))
}

/// Create an API key; the response holds the secret, which is never shown again.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", request_body = CreateKey,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; `key_secret` is shown only now", body = IssuedKey),
        (status = 404, description = "Unknown tenant", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_key(
    State(state): State<AppState>,
    _admin: AdminCaller,
    ApiJson(form): ApiJson<CreateKey>,
) -> Result<(StatusCode, Json<IssuedKey>), ApiError> {
    let tenant = match (form.scope, &form.tenant) {
        (ApiKeyScope::Tenant, Some(code)) => {
            Some(TenantCode::parse(code).map_err(|e| ApiError::invalid(format!("tenant: {e}")))?)
        }
        (ApiKeyScope::Tenant, None) => {
            return Err(ApiError::invalid("tenant: required for a tenant key"));
        }
        (ApiKeyScope::Admin, Some(_)) => {
            return Err(ApiError::invalid(
                "tenant: an admin key is bound to no tenant",
            ));
        }
        (ApiKeyScope::Admin, None) => None,
    };
    let issued = state
        .orchestrator()
        .issue_api_key(&form.name, form.scope, tenant.as_ref())
        .await?;
    Ok((StatusCode::CREATED, Json(issued.into())))
}

/// List API keys, newest first.
#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys", params(KeyQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "The keys", body = Vec<KeyBody>)))]
async fn list_keys(
    State(state): State<AppState>,
    _admin: AdminCaller,
    ApiQuery(query): ApiQuery<KeyQuery>,
) -> Result<Json<Vec<KeyBody>>, ApiError> {
    let tenant = query
        .tenant
        .as_deref()
        .map(TenantCode::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("tenant: {e}")))?;
    let keys = state
        .orchestrator()
        .api_keys(tenant.as_ref(), query.include_revoked.unwrap_or(false))
        .await?;
    Ok(Json(keys.into_iter().map(KeyBody::from).collect()))
}

/// Revoke an API key: it authenticates nothing from now on.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api-keys",
    params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No live key has this id", body = Problem, content_type = "application/problem+json"),
    ))]
async fn revoke_key(
    State(state): State<AppState>,
    _admin: AdminCaller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    let hash = state
        .orchestrator()
        .revoke_api_key(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no live API key has id {id}")))?;
    state.forget_key(&hash).await;
    Ok(StatusCode::NO_CONTENT)
}
