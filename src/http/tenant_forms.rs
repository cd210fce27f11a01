//! The request and response bodies of `/v1/tenants`, and their validation
//! into domain values (a bad field is a 422 naming the field).

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use crate::catalog::TenantPatch;
use crate::secret::sha256;
use crate::tenant::{
    NewTenant, Plan, Region, TenantCode, TenantError, TenantStatus, check_email, check_name,
    check_reason, check_settings,
};

/// Default and largest page sizes of the tenant list.
const DEFAULT_PAGE: i64 = 100;
const MAX_PAGE: i64 = 1_000;

/// `POST /v1/tenants` body.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Code: 2-40 characters, `^[a-z][a-z0-9_]*$`.
    #[schema(example = "acme", pattern = "^[a-z][a-z0-9_]{1,39}$")]
    pub code: String,
    /// Display name (1-200 characters, no control character).
    #[schema(example = "Acme Steel", min_length = 1, max_length = 200)]
    pub name: String,
    /// DZ, CH, FR (default), BE or CA.
    #[schema(pattern = "^(DZ|CH|FR|BE|CA)$")]
    pub region: Option<String>,
    /// free (default), pro or enterprise.
    #[schema(pattern = "^(free|pro|enterprise)$")]
    pub plan: Option<String>,
    /// Administrator e-mail (an `@`, no white space or control character).
    #[schema(
        max_length = 320,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]*@[^\s\x00-\x1f\x7f-\x9f]*$"
    )]
    pub admin_email: Option<String>,
}

impl CreateTenant {
    /// The tenant to create, or a 422 naming the bad field.
    pub fn validate(&self) -> Result<NewTenant, ApiError> {
        let code = TenantCode::parse(&self.code).map_err(|e| field("code", e))?;
        Ok(NewTenant {
            code,
            name: name(&self.name)?,
            region: parse_or(&self.region, "region", Region::Fr)?,
            plan: parse_or(&self.plan, "plan", Plan::Free)?,
            admin_email: email(self.admin_email.as_deref())?,
        })
    }

    /// Fingerprint of the request, to tell an idempotent retry from a new request.
    pub fn fingerprint(&self) -> [u8; 32] {
        sha256(&serde_json::to_vec(self).unwrap_or_default())
    }
}

/// `PATCH /v1/tenants/{code}` body: only the fields to change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchTenant {
    /// New display name (1-200 characters, no control character).
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// New region: DZ, CH, FR, BE or CA.
    #[schema(pattern = "^(DZ|CH|FR|BE|CA)$")]
    pub region: Option<String>,
    /// New plan: free, pro or enterprise.
    #[schema(pattern = "^(free|pro|enterprise)$")]
    pub plan: Option<String>,
    /// New administrator e-mail; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(
        max_length = 320,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]*@[^\s\x00-\x1f\x7f-\x9f]*$"
    )]
    pub admin_email: Option<Option<String>>,
    /// New settings object (replaces the old one).
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Value>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl PatchTenant {
    /// The change to apply, or a 422.
    pub fn validate(&self) -> Result<TenantPatch, ApiError> {
        if let Some(settings) = &self.settings {
            check_settings(settings).map_err(invalid_field)?;
        }
        let patch = TenantPatch {
            name: self.name.as_deref().map(name).transpose()?,
            region: self
                .region
                .as_ref()
                .map(|r| parse("region", r))
                .transpose()?,
            plan: self.plan.as_ref().map(|p| parse("plan", p)).transpose()?,
            admin_email: match &self.admin_email {
                None => None,
                Some(e) => Some(email(e.as_deref())?),
            },
            settings: self.settings.clone(),
        };
        if patch.is_empty() {
            return Err(ApiError::invalid(
                "nothing to change: send at least one of name, region, plan, admin_email, settings",
            ));
        }
        Ok(patch)
    }
}

/// `POST /v1/tenants/{code}/suspend` body (optional).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuspendBody {
    /// Why (kept in the catalog; at most 1000 characters, no NUL).
    #[schema(max_length = 1000)]
    pub reason: Option<String>,
}

impl SuspendBody {
    /// The reason, or a 422 naming `reason`.
    pub fn validate(self) -> Result<Option<String>, ApiError> {
        if let Some(reason) = &self.reason {
            check_reason(reason).map_err(invalid_field)?;
        }
        Ok(self.reason)
    }
}

/// Query of `GET /v1/tenants`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this status (deleted and failed tenants show only when asked for).
    pub status: Option<String>,
    /// Only this region.
    pub region: Option<String>,
    /// Only this plan.
    pub plan: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

impl ListQuery {
    /// The page size, or a 400 outside 1-1000.
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.limit.unwrap_or(DEFAULT_PAGE) {
            limit @ 1..=MAX_PAGE => Ok(limit),
            _ => Err(ApiError::bad_request(format!(
                "limit: must be 1 to {MAX_PAGE}"
            ))),
        }
    }

    /// The status filter.
    pub fn parsed_status(&self) -> Result<Option<TenantStatus>, ApiError> {
        self.status.as_ref().map(|s| query("status", s)).transpose()
    }

    /// The region filter.
    pub fn parsed_region(&self) -> Result<Option<Region>, ApiError> {
        self.region.as_ref().map(|s| query("region", s)).transpose()
    }

    /// The plan filter.
    pub fn parsed_plan(&self) -> Result<Option<Plan>, ApiError> {
        self.plan.as_ref().map(|s| query("plan", s)).transpose()
    }

    /// The cursor (the last code of the previous page).
    pub fn parsed_cursor(&self) -> Result<Option<TenantCode>, ApiError> {
        self.cursor
            .as_ref()
            .map(|c| {
                TenantCode::parse(c)
                    .map_err(|_| ApiError::bad_request("cursor: pass back a next_cursor value"))
            })
            .transpose()
    }
}

/// A tenant code from a URL path; a value no tenant can have is a 404.
/// The code is recorded on the request's span, so its log lines name the tenant.
pub fn tenant_code(raw: &str) -> Result<TenantCode, ApiError> {
    let code =
        TenantCode::parse(raw).map_err(|e| ApiError::not_found(format!("no such tenant: {e}")))?;
    tracing::Span::current().record("tenant", code.as_str());
    Ok(code)
}

fn field(name: &str, error: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(format!("{name}: {error}")).with("field", name)
}

/// A domain check's refusal as a 422: its message, and the field it names.
fn invalid_field(error: TenantError) -> ApiError {
    match error {
        TenantError::InvalidField { field, .. } => {
            ApiError::invalid(error.to_string()).with("field", field)
        }
        other => ApiError::invalid(other.to_string()),
    }
}

fn name(raw: &str) -> Result<String, ApiError> {
    let trimmed = raw.trim();
    check_name(trimmed).map_err(invalid_field)?;
    Ok(trimmed.to_owned())
}

fn email(raw: Option<&str>) -> Result<Option<String>, ApiError> {
    raw.map(|e| check_email(e).map(|()| e.to_owned()))
        .transpose()
        .map_err(invalid_field)
}

fn parse<T: std::str::FromStr>(name: &str, raw: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    raw.parse().map_err(|e| field(name, e))
}

fn parse_or<T: std::str::FromStr>(
    raw: &Option<String>,
    name: &str,
    default: T,
) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    raw.as_deref().map_or(Ok(default), |r| parse(name, r))
}

fn query<T: std::str::FromStr>(name: &str, raw: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    raw.parse()
        .map_err(|e| ApiError::bad_request(format!("{name}: {e}")))
}
