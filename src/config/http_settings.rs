//! [`HttpSettings`]: the limits and secrets of `tenantd serve`, read with the
//! rest of [`crate::Settings`] (see the table in [`super`]).

use super::{ConfigError, parse_count};

/// Settings of the HTTP API.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// `JWT_SECRET`: HS256 key of accepted JWTs; `None` refuses every JWT.
    pub jwt_secret: Option<String>,
    /// `TENANTD_HTTP_BODY_LIMIT`: largest request body, in bytes.
    pub body_limit: usize,
    /// `TENANTD_SQL_TIMEOUT_MS`: statement timeout of tenant connections
    /// (also [`super::PoolSettings::statement_timeout`]).
    pub sql_timeout_ms: u64,
    /// `TENANTD_SQL_MAX_ROWS`: rows returned at most by `POST /v1/sql`.
    pub sql_max_rows: usize,
    /// `TENANTD_SQL_MAX_BYTES`: bytes of row data returned at most by `POST /v1/sql`.
    pub sql_max_bytes: usize,
    /// `TENANTD_RATE_FREE` / `_PRO` / `_ENTERPRISE`: tenant-routed requests
    /// per second (and burst) by plan.
    pub rate_per_plan: [u32; 3],
    /// `TENANTD_AUTH_CACHE_SECS`: how long a verified API key is trusted
    /// before the catalog is asked again (revocations through this process
    /// apply at once).
    pub auth_cache_secs: u64,
}

/// Shortest accepted `JWT_SECRET`, in bytes.
const MIN_JWT_SECRET_LEN: usize = 32;

impl HttpSettings {
    /// Reads the settings through `get` (a value is `None` when unset or blank).
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let jwt_secret = get("JWT_SECRET");
        if jwt_secret
            .as_ref()
            .is_some_and(|s| s.len() < MIN_JWT_SECRET_LEN)
        {
            return Err(ConfigError {
                variable: "JWT_SECRET",
                problem: format!(
                    "must be at least {MIN_JWT_SECRET_LEN} bytes (e.g. `openssl rand -hex 32`)"
                ),
            });
        }
        let count = |name: &'static str, default: usize| parse_count(name, get(name), default);
        let rate = |name: &'static str, default: usize| -> Result<u32, ConfigError> {
            u32::try_from(count(name, default)?).map_err(|_| ConfigError {
                variable: name,
                problem: "too large: expected requests per second below 4294967296".to_owned(),
            })
        };
        Ok(Self {
            jwt_secret,
            body_limit: count("TENANTD_HTTP_BODY_LIMIT", 1 << 20)?,
            sql_timeout_ms: count("TENANTD_SQL_TIMEOUT_MS", 5_000)? as u64,
            sql_max_rows: count("TENANTD_SQL_MAX_ROWS", 1_000)?,
            sql_max_bytes: count("TENANTD_SQL_MAX_BYTES", 16 << 20)?,
            rate_per_plan: [
                rate("TENANTD_RATE_FREE", 20)?,
                rate("TENANTD_RATE_PRO", 100)?,
                rate("TENANTD_RATE_ENTERPRISE", 1_000)?,
            ],
            auth_cache_secs: count("TENANTD_AUTH_CACHE_SECS", 5)? as u64,
        })
    }
}
