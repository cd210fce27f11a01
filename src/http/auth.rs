//! Who is calling: `Authorization: Bearer <token>` where the token is an API
//! key (`tdk_…`, admin- or tenant-scoped, looked up by its SHA-256) or a JWT
//! (HS256 with `JWT_SECRET`, claims `sub`, `tenant_id`, `exp`, optional
//! `iat` and `nbf`; `aud` / `iss` when `JWT_AUDIENCE` / `JWT_ISSUER` are set;
//! `JWT_LEEWAY_SECS` of clock skew; at most `JWT_MAX_LIFETIME_SECS` long).
//! Every failed authentication counts against the client's address
//! ([`super::auth_failures`]).
//!
//! Extractors: [`Caller`] (anyone authenticated), [`AdminCaller`] (admin keys
//! only) and [`TenantCaller`] (a tenant key or JWT; the tenant comes from the
//! credentials, never from the request, and its plan's rate limit applies).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use uuid::Uuid;

use super::error::ApiError;
use super::state::AppState;
use crate::apikey::{ApiKeyScope, KEY_PREFIX, hash_key};
use crate::config::JwtRules;
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
    /// What the caller authenticated with.
    pub credential: Credential,
}

/// The kind of credential a tenant caller presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// A tenant-scoped API key (`tdk_…`).
    ApiKey,
    /// A JWT signed with `JWT_SECRET`.
    Jwt,
}

/// An admin caller.
#[derive(Debug, Clone)]
pub struct AdminCaller {
    /// The admin key's id.
    pub key_id: Uuid,
}

/// JWT claims tenantd reads (`exp`, `nbf`, `aud` and `iss` are checked by
/// the verifier).
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    tenant_id: Uuid,
    exp: u64,
    iat: Option<u64>,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let address = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        if let Some(address) = address {
            state.auth_failures().check(address).await?;
        }
        let caller = match authenticate(parts, state).await {
            Ok(caller) => caller,
            Err(error) if error.status() == StatusCode::UNAUTHORIZED => {
                if let Some(address) = address {
                    state.auth_failures().record(address).await?;
                }
                return Err(error);
            }
            Err(error) => return Err(error),
        };
        if let Self::Tenant(t) = &caller {
            tracing::Span::current().record("tenant", t.code.as_str());
        }
        Ok(caller)
    }
}

async fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let token = bearer(parts)?;
    if token.starts_with(KEY_PREFIX) {
        from_key(token, state).await
    } else if token.split('.').count() == 3 {
        Ok(Caller::Tenant(from_jwt(token, state).await?))
    } else {
        Err(ApiError::unauthorized(
            "the bearer token is neither a tenantd API key (tdk_…) nor a JWT",
        ))
    }
}

impl Caller {
    /// Who may read a tenant's connection settings, its role's password
    /// included: an admin key, or that tenant's own API key. A JWT is a
    /// user's session, not a backend's credential; it never gets the
    /// password, which outlives the token.
    pub fn may_read_connection(&self, code: &TenantCode) -> Result<(), ApiError> {
        match self {
            Self::Admin { .. } => Ok(()),
            Self::Tenant(tenant) if tenant.credential == Credential::Jwt => {
                Err(ApiError::forbidden(
                    "a JWT cannot read a tenant's role password; use the tenant's API key",
                ))
            }
            Self::Tenant(tenant) if tenant.code != *code => Err(ApiError::forbidden(
                "a tenant credential reaches only its own tenant's connection",
            )),
            Self::Tenant(_) => Ok(()),
        }
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
                credential: Credential::ApiKey,
            }))
        }
        _ => Err(ApiError::unauthorized(
            "this tenant key's tenant is gone; ask an admin for a new key",
        )),
    }
}

async fn from_jwt(token: &str, state: &AppState) -> Result<TenantCaller, ApiError> {
    let settings = state.settings();
    let secret = settings.jwt_secret.as_deref().ok_or_else(|| {
        ApiError::unauthorized("JWTs are not accepted: the server has no JWT_SECRET")
    })?;
    let rules = &settings.jwt;
    let data = jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation(rules),
    )
    .map_err(|e| jwt_refused(&e))?;
    let claims = data.claims;
    check_lifetime(&claims, rules)?;
    tracing::debug!(sub = %claims.sub, tenant_id = %claims.tenant_id, "JWT verified");
    let (code, plan) = state
        .tenant_by_id(claims.tenant_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the JWT's tenant_id names no tenant"))?;
    Ok(TenantCaller {
        tenant_id: claims.tenant_id,
        code,
        plan,
        credential: Credential::Jwt,
    })
}

/// HS256 with `exp` and `sub` required, `nbf` honoured, the configured
/// leeway, and `aud` / `iss` when they are configured.
fn validation(rules: &JwtRules) -> Validation {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = rules.leeway_secs;
    validation.validate_nbf = true;
    let mut required = vec!["exp", "sub"];
    match &rules.audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        None => validation.validate_aud = false,
    }
    if let Some(issuer) = &rules.issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    validation.set_required_spec_claims(&required);
    validation
}

fn jwt_refused(error: &jsonwebtoken::errors::Error) -> ApiError {
    match error.kind() {
        JwtErrorKind::ExpiredSignature => {
            ApiError::unauthorized("the JWT has expired; get a new one")
        }
        JwtErrorKind::ImmatureSignature => {
            ApiError::unauthorized("the JWT is not valid yet (its nbf is in the future)")
        }
        JwtErrorKind::InvalidAudience => {
            ApiError::unauthorized("the JWT's aud does not name this server (JWT_AUDIENCE)")
        }
        JwtErrorKind::InvalidIssuer => {
            ApiError::unauthorized("the JWT's iss is not the accepted issuer (JWT_ISSUER)")
        }
        JwtErrorKind::InvalidSignature => ApiError::unauthorized("the JWT's signature is invalid"),
        _ => ApiError::unauthorized(format!(
            "the JWT is invalid ({error}); expected HS256 with claims sub, tenant_id, exp, iat"
        )),
    }
}

/// Refuses a token issued in the future or living longer than
/// `JWT_MAX_LIFETIME_SECS` (`exp - iat`, or `exp - now` without `iat`).
fn check_lifetime(claims: &Claims, rules: &JwtRules) -> Result<(), ApiError> {
    let now = jsonwebtoken::get_current_timestamp();
    let issued = claims.iat.unwrap_or(now);
    if issued > now.saturating_add(rules.leeway_secs) {
        return Err(ApiError::unauthorized(
            "the JWT's iat is in the future; check the issuer's clock",
        ));
    }
    let lifetime = claims.exp.saturating_sub(issued);
    if lifetime > rules.max_lifetime_secs {
        return Err(ApiError::unauthorized(format!(
            "the JWT lives {lifetime} s, longer than the {} s this server accepts \
             (JWT_MAX_LIFETIME_SECS); issue shorter-lived tokens",
            rules.max_lifetime_secs
        )));
    }
    Ok(())
}
