//! `POST /v1/sql`: one statement in the caller's tenant database, as the
//! tenant's own role (through [`crate::Orchestrator::tenant_client`]).
//!
//! The statement passes [`super::sql_guard`], is prepared with the extended
//! protocol (so a second statement is refused by the server — recognised by
//! SQLSTATE and position, never by message text, which follows
//! `lc_messages`), and runs alone in the implicit transaction of one
//! Bind/Execute/Sync, which the server commits or rolls back before it
//! answers: the connection goes back idle, never inside a transaction (the
//! guard refuses `BEGIN` and every other transaction control). The
//! statement timeout (`TENANTD_SQL_TIMEOUT_MS`) is a startup option of the
//! pool's connections, and the session reset is pipelined behind the
//! statement ([`TenantClient::reset_session`], no extra round trip): what a
//! function the tenant wrote changed in the session (settings, timeout,
//! role, temporary tables…) never reaches the next request. At most
//! `TENANTD_SQL_MAX_ROWS` rows and `TENANTD_SQL_MAX_BYTES` bytes of row data
//! come back (`truncated`, with the cap in `truncated_reason`); the rest of
//! the reply is still read, so that a statement failing after the caps, or
//! at its COMMIT, is answered with its error. A request dropped half-way
//! (client gone) discards its connection instead of returning it with a
//! statement still running.

use crate::pool::TenantClient;
use axum::Json;
use axum::extract::State;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::Statement;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::TenantCaller;
use super::error::{ApiError, Problem, from_statement};
use super::extract::ApiJson;
use super::sql_guard;
use super::sql_values::{self, Param};
use super::state::AppState;
use crate::pg_error;

/// Prepared statements cached per connection at most, before the cache is emptied.
const STATEMENT_CACHE_LIMIT: usize = 256;

/// A statement to run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// One SQL statement; `$1`, `$2`… are parameters.
    pub sql: String,
    /// Parameter values, bound by the types the statement expects.
    #[serde(default)]
    pub params: Vec<Value>,
}

/// A result column.
#[derive(Debug, Serialize, ToSchema)]
pub struct SqlColumn {
    /// Column name.
    pub name: String,
    /// PostgreSQL type name.
    #[serde(rename = "type")]
    pub type_name: String,
}

/// The statement's result.
#[derive(Debug, Serialize, ToSchema)]
pub struct SqlResult {
    /// Result columns (empty for statements returning no rows).
    pub columns: Vec<SqlColumn>,
    /// Rows, each an array of values in column order.
    #[schema(value_type = Vec<Vec<Object>>)]
    pub rows: Vec<Vec<Value>>,
    /// Rows returned, or rows affected for INSERT/UPDATE/DELETE.
    pub row_count: u64,
    /// True when the result held more than the rows returned.
    pub truncated: bool,
    /// Which cap cut the result, when `truncated`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated_reason: Option<Truncation>,
}

/// The cap that cut a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Truncation {
    /// More rows than `TENANTD_SQL_MAX_ROWS`.
    Rows,
    /// More row data than `TENANTD_SQL_MAX_BYTES` bytes.
    Bytes,
}

/// The route of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(run_sql))
}

/// Run one SQL statement in the caller's tenant database.
#[utoipa::path(post, path = "/v1/sql", tag = "tenant",
    request_body = SqlRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The statement ran", body = SqlResult),
        (status = 400, description = "Refused or invalid statement", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad credentials", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Admin key, suspended tenant or missing privilege", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "Statement timeout", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Constraint violation", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad parameters or result types", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limit", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Tenant database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all, fields(tenant = %caller.code))]
async fn run_sql(
    State(state): State<AppState>,
    caller: TenantCaller,
    ApiJson(request): ApiJson<SqlRequest>,
) -> Result<Json<SqlResult>, ApiError> {
    sql_guard::check(&request.sql).map_err(ApiError::bad_request)?;
    let client = state.orchestrator().tenant_client(&caller.code).await?;
    let settings = state.settings();
    let mut guard = ConnectionGuard(Some(client));
    let limits = Limits {
        timeout_ms: settings.sql_timeout_ms,
        max_rows: settings.sql_max_rows,
        max_bytes: settings.sql_max_bytes,
    };
    let result = run(guard.client()?, &request, limits).await;
    match result {
        Ok(Ran { result, clean }) => {
            if clean {
                guard.release();
            }
            Ok(Json(result))
        }
        Err(RunError::Clean(error)) => {
            guard.release();
            Err(error)
        }
        Err(RunError::Dirty(error)) => Err(error),
    }
}

impl RunError {
    /// A failure the server answered; the session reset behind it decides.
    fn after_reset(clean: bool, error: ApiError) -> Self {
        if clean {
            Self::Clean(error)
        } else {
            Self::Dirty(error)
        }
    }
}

/// A failure, and whether the connection is still fit for the pool.
enum RunError {
    /// The transaction ended: the connection can be reused.
    Clean(ApiError),
    /// The connection's state is unknown: it must be discarded.
    Dirty(ApiError),
}

async fn run(client: &TenantClient, request: &SqlRequest, limits: Limits) -> Result<Ran, RunError> {
    // Prepared outside the transaction: a refused statement leaves nothing to
    // roll back, and a cached one costs no round trip.
    let statement = prepare(client, &request.sql)
        .await
        .map_err(|error| refused(&error, &request.sql, limits.timeout_ms))?;
    let params = bind_all(&statement, &request.params)
        .map_err(|detail| RunError::Clean(ApiError::invalid(detail)))?;
    execute(client, &statement, &params, limits).await
}

/// Maps a failed prepare. A second statement is refused by the server with
/// a position-less `42601` ([`pg_error::is_multiple_commands`]); the text
/// must also hold a `;` with a statement after it, so that no other syntax
/// error is ever reported as one.
fn refused(error: &tokio_postgres::Error, sql: &str, timeout_ms: u64) -> RunError {
    let problem = if pg_error::is_multiple_commands(error) && sql_guard::has_second_statement(sql) {
        ApiError::bad_request("send one statement per request: multiple statements are refused")
            .with(
                "sqlstate",
                tokio_postgres::error::SqlState::SYNTAX_ERROR.code(),
            )
    } else {
        from_statement(error, timeout_ms)
    };
    match error.as_db_error() {
        Some(_) => RunError::Clean(problem),
        None => RunError::Dirty(problem),
    }
}

async fn prepare(client: &TenantClient, sql: &str) -> Result<Statement, tokio_postgres::Error> {
    if client.statement_cache.size() > STATEMENT_CACHE_LIMIT {
        client.statement_cache.clear();
    }
    client.prepare_cached(sql).await
}

fn bind_all(statement: &Statement, params: &[Value]) -> Result<Vec<Param>, String> {
    let types = statement.params();
    if types.len() != params.len() {
        return Err(format!(
            "the statement takes {} parameter(s), the request sent {}",
            types.len(),
            params.len()
        ));
    }
    params
        .iter()
        .zip(types)
        .enumerate()
        .map(|(i, (value, ty))| sql_values::bind(i + 1, value, ty))
        .collect()
}

/// Runs the prepared statement in one Bind/Execute/Sync and the session
/// reset ([`TenantClient::reset_session`]) behind it, pipelined: both leave
/// in one write and come back in one round trip. The statement runs in an
/// implicit transaction the server has ended when it answers; its whole
/// reply is read, rows beyond the caps included (and dropped), so that an
/// error raised after them — by a later row or by the COMMIT — is answered
/// as the error it is.
async fn execute(
    client: &TenantClient,
    statement: &Statement,
    params: &[Param],
    limits: Limits,
) -> Result<Ran, RunError> {
    let timeout_ms = limits.timeout_ms;
    let rows = async {
        let stream = client
            .query_raw(
                statement,
                params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync)),
            )
            .await?;
        futures::pin_mut!(stream);
        let kept = keep_within(stream.as_mut(), limits).await?;
        Ok::<_, tokio_postgres::Error>((kept, stream.rows_affected()))
    };
    // Polled in order: the statement is sent first, then the reset.
    let (rows, reset) = futures::future::join(rows, client.reset_session()).await;
    let clean = match reset {
        Ok(clean) => clean,
        // The session may hold what the statement left in it.
        Err(error) => return Err(RunError::Dirty(from_statement(&error, timeout_ms))),
    };
    let (kept, affected) = match rows {
        Ok(found) => found,
        // The server answered: it rolled the statement back and is idle.
        Err(error) if error.as_db_error().is_some() => {
            forget_stale_plans(client, &error);
            return Err(RunError::after_reset(
                clean,
                from_statement(&error, timeout_ms),
            ));
        }
        Err(error) => return Err(RunError::Dirty(from_statement(&error, timeout_ms))),
    };
    let columns = statement
        .columns()
        .iter()
        .map(|c| SqlColumn {
            name: c.name().to_owned(),
            type_name: c.type_().name().to_owned(),
        })
        .collect();
    let values = kept
        .rows
        .iter()
        .map(|row| (0..row.len()).map(|i| sql_values::column(row, i)).collect())
        .collect::<Result<Vec<Vec<Value>>, String>>()
        .map_err(|detail| RunError::after_reset(clean, ApiError::invalid(detail)))?;
    let row_count = if statement.columns().is_empty() {
        affected.unwrap_or(0)
    } else {
        values.len() as u64
    };
    let result = SqlResult {
        columns,
        rows: values,
        row_count,
        truncated: kept.truncated.is_some(),
        truncated_reason: kept.truncated,
    };
    Ok(Ran { result, clean })
}

/// A statement that ran, and whether its session was reset clean.
struct Ran {
    result: SqlResult,
    clean: bool,
}

/// The caps of one request.
#[derive(Debug, Clone, Copy)]
struct Limits {
    timeout_ms: u64,
    max_rows: usize,
    max_bytes: usize,
}

/// The rows kept within the caps, and which cap cut the rest.
struct Kept {
    rows: Vec<tokio_postgres::Row>,
    truncated: Option<Truncation>,
}

/// Reads the whole reply of `stream`, keeping rows while both caps allow.
async fn keep_within(
    mut stream: std::pin::Pin<&mut tokio_postgres::RowStream>,
    limits: Limits,
) -> Result<Kept, tokio_postgres::Error> {
    let mut kept = Kept {
        rows: Vec::new(),
        truncated: None,
    };
    let mut bytes = 0;
    while let Some(row) = stream.try_next().await? {
        if kept.truncated.is_some() {
            continue;
        }
        let size = sql_values::row_size(&row);
        if kept.rows.len() == limits.max_rows {
            kept.truncated = Some(Truncation::Rows);
        } else if bytes + size > limits.max_bytes {
            kept.truncated = Some(Truncation::Bytes);
        } else {
            bytes += size;
            kept.rows.push(row);
        }
    }
    Ok(kept)
}

/// A schema change invalidates cached plans: forget them so the next call re-prepares.
fn forget_stale_plans(client: &TenantClient, error: &tokio_postgres::Error) {
    if pg_error::is_stale_statement(error) {
        client.statement_cache.clear();
    }
}

/// Holds the pooled connection; unless released, dropping it discards the
/// connection (a request cancelled mid-transaction must not return it).
struct ConnectionGuard(Option<TenantClient>);

impl ConnectionGuard {
    fn client(&mut self) -> Result<&TenantClient, ApiError> {
        self.0
            .as_ref()
            .ok_or_else(|| ApiError::internal(&"connection guard used after release"))
    }

    fn release(&mut self) {
        drop(self.0.take());
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            TenantClient::discard(client);
        }
    }
}
