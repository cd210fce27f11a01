//! [`ApiError`]: the one error type of the HTTP API. Every failure — a
//! library error, a SQLSTATE from a tenant's statement, an extractor
//! rejection, an unknown route — becomes an `application/problem+json`
//! response here (RFC 9457: `type`, `title`, `status`, `detail`).
//!
//! The mapping from [`crate::ErrorKind`] and SQLSTATEs to statuses lives in
//! this file only. A 5xx never carries its cause to the client: the cause is
//! logged and the client gets a generic detail.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio_postgres::error::SqlState;
use utoipa::ToSchema;

use crate::catalog::CatalogError;
use crate::error::{Error, ErrorKind};
use crate::pg_error;
use crate::provision::ProvisionError;
use crate::tenant::TenantStatus;

/// Base of every problem `type` URI.
const TYPE_BASE: &str = "https://tenantd.dev/problems/";
/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";
/// Seconds a client is told to wait before retrying an unavailable dependency.
const UNAVAILABLE_RETRY_SECS: u64 = 1;
/// The detail of a 503 for an unavailable dependency.
const UNAVAILABLE_DETAIL: &str = "a database is unreachable or its connection budget is spent; \
                                  retry after the Retry-After delay";

/// An `application/problem+json` body (RFC 9457).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short, stable summary of the kind of problem.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request and what to do next.
    pub detail: String,
    /// Extra members (e.g. `existing` for a duplicate).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extra: Map<String, Value>,
}

/// An HTTP API failure, rendered as problem+json (boxed: it travels in
/// every handler's `Result`).
#[derive(Debug)]
pub struct ApiError(Box<Details>);

#[derive(Debug)]
struct Details {
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
    detail: String,
    extra: Map<String, Value>,
    retry_after: Option<u64>,
    location: Option<String>,
}

impl ApiError {
    /// A problem with this status, slug (the end of its `type`), title and detail.
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self(Box::new(Details {
            status,
            slug,
            title,
            detail: detail.into(),
            extra: Map::new(),
            retry_after: None,
            location: None,
        }))
    }

    /// 400: the request is malformed.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
        )
    }

    /// 422: the request is well-formed but a value is invalid.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-input",
            "Invalid input",
            detail,
        )
    }

    /// 401: no usable credentials.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            detail,
        )
    }

    /// 403: the credentials do not allow this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    /// 404: nothing here.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// 409: conflicts with the current state.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
    }

    /// 429: the tenant's rate limit is spent; retry after `wait`.
    pub fn rate_limited(detail: impl Into<String>, wait: Duration) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            detail,
        );
        error.0.retry_after = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
        error
    }

    /// 503: a dependency is unavailable; retry later.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        let mut error = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            detail,
        );
        error.0.retry_after = Some(UNAVAILABLE_RETRY_SECS);
        error
    }

    /// 500: a server fault. `cause` is logged, never sent to the client.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
            "the server failed to handle the request; it has been logged — retry later or \
             report the X-Request-Id of this response",
        )
    }

    /// Adds an extra member to the body.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.extra.insert(key.to_owned(), value.into());
        self
    }

    /// Sets the `Location` header (e.g. the existing resource of a 409).
    pub fn with_location(mut self, location: String) -> Self {
        self.0.location = Some(location);
        self
    }

    /// The status of this error.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The problem body.
    pub fn problem(&self) -> Problem {
        let d = &self.0;
        Problem {
            kind: format!("{TYPE_BASE}{}", d.slug),
            title: d.title.to_owned(),
            status: d.status.as_u16(),
            detail: d.detail.clone(),
            extra: d.extra.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let details = *self.0;
        let mut response = (details.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = details.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(location) = details
            .location
            .and_then(|l| HeaderValue::from_str(&l).ok())
        {
            headers.insert(header::LOCATION, location);
        }
        response
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match &error {
            Error::TenantUnavailable { code, status } => tenant_unavailable(code, *status),
            Error::Provision(ProvisionError::AlreadyExists(code))
            | Error::Catalog(CatalogError::AlreadyExists(code)) => {
                let existing = format!("/v1/tenants/{code}");
                Self::conflict(format!(
                    "tenant {code} already exists; see {existing}, or choose another code"
                ))
                .with("existing", existing.clone())
                .with_location(existing)
            }
            _ => match error.kind() {
                ErrorKind::InvalidInput => Self::invalid(error.to_string()),
                ErrorKind::NotFound => Self::not_found(error.to_string()),
                ErrorKind::Conflict => Self::conflict(error.to_string()),
                ErrorKind::Unavailable => {
                    tracing::warn!(%error, "dependency unavailable");
                    Self::unavailable(UNAVAILABLE_DETAIL)
                }
                ErrorKind::Internal => Self::internal(&error),
            },
        }
    }
}

impl From<CatalogError> for ApiError {
    fn from(error: CatalogError) -> Self {
        Error::from(error).into()
    }
}

fn tenant_unavailable(code: &crate::TenantCode, status: TenantStatus) -> ApiError {
    match status {
        TenantStatus::Suspended => ApiError::forbidden(format!(
            "tenant {code} is suspended; an admin can resume it with POST /v1/tenants/{code}/resume"
        )),
        _ if !status.is_live() => ApiError::not_found(format!("tenant {code} is {status}")),
        _ => ApiError::unavailable(format!(
            "tenant {code} is {status}; retry when it is active"
        )),
    }
}

/// Maps the error of a tenant's own statement (`POST /v1/sql`). A transient
/// failure ([`pg_error::is_transient`]: a lost connection, a server shutting
/// down or full) and a server-side fault (classes 53, 57, 58, XX) are a 503;
/// other errors with a SQLSTATE are the caller's to fix and keep
/// PostgreSQL's message; a driver fault without one is a 500.
pub fn from_statement(error: &tokio_postgres::Error, timeout_ms: u64) -> ApiError {
    if pg_error::is_transient(error) {
        tracing::warn!(error = %pg_error::describe(error), "tenant statement lost its connection");
        return ApiError::unavailable("the tenant database connection failed; retry later")
            .with_sqlstate(error);
    }
    let Some(db) = error.as_db_error() else {
        return ApiError::internal(&pg_error::describe(error));
    };
    let code = db.code();
    let class = &code.code()[..2];
    let detail = pg_error::message_and_hint(db);
    if pg_error::is_query_canceled(error) {
        return ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "statement-timeout",
            "Statement timeout",
            format!(
                "the statement ran longer than {timeout_ms} ms and was cancelled; \
                 make it cheaper or ask an admin to raise TENANTD_SQL_TIMEOUT_MS"
            ),
        );
    }
    let error = match class {
        "23" => ApiError::new(
            StatusCode::CONFLICT,
            "constraint-violation",
            "Constraint violation",
            detail,
        ),
        "40" => ApiError::new(
            StatusCode::CONFLICT,
            "serialization-failure",
            "Retry the statement",
            detail,
        ),
        "42" if *code == SqlState::INSUFFICIENT_PRIVILEGE => ApiError::forbidden(detail),
        "22" | "P0" => ApiError::invalid(detail),
        "53" | "57" | "58" | "XX" => {
            tracing::warn!(sqlstate = code.code(), %detail, "tenant database failure");
            ApiError::unavailable("the tenant database is unavailable; retry later")
        }
        _ => ApiError::new(
            StatusCode::BAD_REQUEST,
            "statement-rejected",
            "Statement rejected",
            detail,
        ),
    };
    error.with("sqlstate", code.code())
}

impl ApiError {
    /// Adds the `sqlstate` member when the error has one.
    fn with_sqlstate(self, error: &tokio_postgres::Error) -> Self {
        match error.code() {
            Some(code) => self.with("sqlstate", code.code()),
            None => self,
        }
    }
}
