//! Who is calling: `Authorization: Bearer <token>` where the token is an API
//! key (`tdk_…`, admin- or tenant-scoped, looked up by its SHA-256) or a JWT
//! (HS256 with `JWT_SECRET`, claims `sub`, `tenant_id`, `exp`, `iat`).
//!
//! Extractors: [`Caller`] (anyone authenticated), [`AdminCaller`] (admin keys
//! only) and [`TenantCaller`] (a tenant key or JWT; the tenant comes from the
//! credentials, never from the request, and its plan's rate limit applies).

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use uuid::Uuid;

use super::error::ApiError;
use super::state::AppState;
use crate::apikey::{ApiKeyScope, KEY_PREFIX, hash_key};
use crate::tenant::{Plan, TenantCode};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub enum Caller {
    /// An admin API key.
    Admin {
        /// The key's id.
        key_id: Uuid,
    },
    /// A tenant-bound credential.
    Tenant(TenantCaller),
}

/// A caller bound to one tenant (tenant API key or JWT).
#[derive(Debug, Clone)]
pub struct TenantCaller {
    /// The tenant's id.
    pub tenant_id: Uuid,
    /// The tenant's code.
    pub code: TenantCode,
    /// The tenant's plan (drives the rate limit).
    pub plan: Plan,
}

/// An admin caller.
#[derive(Debug, Clone)]
pub struct AdminCaller {
    /// The admin key's id.
    pub key_id: Uuid,
}

/// JWT claims tenantd reads.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    tenant_id: Uuid,
    #[allow(dead_code)]
    exp: u64,
    #[allow(dead_code)]
    iat: u64,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        let caller = if token.starts_with(KEY_PREFIX) {
            from_key(token, state).await?
        } else if token.split('.').count() == 3 {
            Self::Tenant(from_jwt(token, state).await?)
        } else {
            return Err(ApiError::unauthorized(
                "the bearer token is neither a tenantd API key (tdk_…) nor a JWT",
            ));
        };
        if let Self::Tenant(t) = &caller {
            tracing::Span::current().record("tenant", t.code.as_str());
        }
        Ok(caller)
    }
}

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Admin { key_id } => Ok(Self { key_id }),
            Caller::Tenant(_) => Err(ApiError::forbidden(
                "this route needs an admin API key; tenant keys and JWTs only reach tenant routes",
            )),
        }
    }
}

impl FromRequestParts<AppState> for TenantCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Tenant(tenant) => {
                if let Err(wait) = state.limits().check(tenant.tenant_id, tenant.plan) {
                    return Err(ApiError::rate_limited(
                        format!(
                            "tenant {} spent its {} plan's request rate; retry after the Retry-After delay",
                            tenant.code, tenant.plan
                        ),
                        wait,
                    ));
                }
                Ok(tenant)
            }
            Caller::Admin { .. } => Err(ApiError::forbidden(
                "admin keys are bound to no tenant; call tenant routes with a tenant API key or JWT",
            )),
        }
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
        ApiError::unauthorized("send credentials as `Authorization: Bearer <API key or JWT>`")
    })?;
    header
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized("the Authorization header must be `Bearer <API key or JWT>`")
        })
}

async fn from_key(token: &str, state: &AppState) -> Result<Caller, ApiError> {
    let key = state.api_key(hash_key(token)).await?.ok_or_else(|| {
        ApiError::unauthorized("unknown or revoked API key; ask an admin for a new one")
    })?;
    match (key.scope, &key.tenant_code, key.tenant_id, key.tenant_plan) {
        (ApiKeyScope::Admin, _, _, _) => Ok(Caller::Admin { key_id: key.id }),
        (ApiKeyScope::Tenant, Some(code), Some(tenant_id), Some(plan)) => {
            Ok(Caller::Tenant(TenantCaller {
                tenant_id,
                code: code.clone(),
                plan,
            }))
        }
        _ => Err(ApiError::unauthorized(
            "this tenant key's tenant is gone; ask an admin for a new key",
        )),
    }
}

async fn from_jwt(token: &str, state: &AppState) -> Result<TenantCaller, ApiError> {
    let secret = state.settings().jwt_secret.as_deref().ok_or_else(|| {
        ApiError::unauthorized("JWTs are not accepted: the server has no JWT_SECRET")
    })?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map_err(|e| match e.kind() {
        JwtErrorKind::ExpiredSignature => {
            ApiError::unauthorized("the JWT has expired; get a new one")
        }
        JwtErrorKind::InvalidSignature => ApiError::unauthorized("the JWT's signature is invalid"),
        _ => ApiError::unauthorized(format!(
            "the JWT is invalid ({e}); expected HS256 with claims sub, tenant_id, exp, iat"
        )),
    })?;
    let claims = data.claims;
    tracing::debug!(sub = %claims.sub, tenant_id = %claims.tenant_id, "JWT verified");
    let (code, plan) = state
        .tenant_by_id(claims.tenant_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the JWT's tenant_id names no tenant"))?;
    Ok(TenantCaller {
        tenant_id: claims.tenant_id,
        code,
        plan,
    })
}
