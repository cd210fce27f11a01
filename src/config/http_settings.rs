//! [`HttpSettings`]: the limits and secrets of `tenantd serve`, read with the
//! rest of [`crate::Settings`] (see the table in [`super`]).

use std::time::Duration;

use super::{ConfigError, parse_count};

/// Settings of the HTTP API.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// `JWT_SECRET`: HS256 key of accepted JWTs; `None` refuses every JWT.
    pub jwt_secret: Option<String>,
    /// What a JWT must carry besides its signature.
    pub jwt: JwtRules,
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
    /// `TENANTD_AUTH_FAILURES_PER_MIN`: failed authentications one client
    /// address may make per minute before it gets 429s.
    pub auth_failures_per_min: u32,
    /// Connection limits and timeouts of the listener.
    pub connections: ConnectionLimits,
}

/// What an accepted JWT must satisfy (`JWT_*`).
#[derive(Debug, Clone)]
pub struct JwtRules {
    /// `JWT_LEEWAY_SECS`: clock skew allowed on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// `JWT_MAX_LIFETIME_SECS`: longest `exp - iat` (or `exp - now`) accepted.
    pub max_lifetime_secs: u64,
    /// `JWT_AUDIENCE`: when set, the `aud` a token must name.
    pub audience: Option<String>,
    /// `JWT_ISSUER`: when set, the `iss` a token must carry.
    pub issuer: Option<String>,
}

/// How many HTTP connections are served at once and how long each phase of
/// a connection may last.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// `TENANTD_HTTP_MAX_CONNECTIONS`: open HTTP connections at most.
    pub max_connections: usize,
    /// `TENANTD_HTTP_HEADER_TIMEOUT_MS`: a request's head must arrive whole
    /// within this time of its first byte (of the connection's start, for
    /// its first request).
    pub header_timeout: Duration,
    /// `TENANTD_HTTP_BODY_TIMEOUT_MS`: a request's body must arrive whole
    /// within this time of its head.
    pub body_timeout: Duration,
    /// `TENANTD_HTTP_IDLE_TIMEOUT_MS`: a kept-alive connection without a
    /// request is closed after this time.
    pub idle_timeout: Duration,
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
        Ok(Self {
            jwt_secret,
            jwt: JwtRules::from_lookup(get)?,
            body_limit: count("TENANTD_HTTP_BODY_LIMIT", 1 << 20)?,
            sql_timeout_ms: count("TENANTD_SQL_TIMEOUT_MS", 5_000)? as u64,
            sql_max_rows: count("TENANTD_SQL_MAX_ROWS", 1_000)?,
            sql_max_bytes: count("TENANTD_SQL_MAX_BYTES", 16 << 20)?,
            rate_per_plan: [
                rate(get, "TENANTD_RATE_FREE", 20)?,
                rate(get, "TENANTD_RATE_PRO", 100)?,
                rate(get, "TENANTD_RATE_ENTERPRISE", 1_000)?,
            ],
            auth_cache_secs: count("TENANTD_AUTH_CACHE_SECS", 5)? as u64,
            auth_failures_per_min: rate(get, "TENANTD_AUTH_FAILURES_PER_MIN", 30)?,
            connections: ConnectionLimits::from_lookup(get)?,
        })
    }
}

impl JwtRules {
    fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            leeway_secs: parse_secs(get, "JWT_LEEWAY_SECS", 5)?,
            max_lifetime_secs: parse_count(
                "JWT_MAX_LIFETIME_SECS",
                get("JWT_MAX_LIFETIME_SECS"),
                86_400,
            )? as u64,
            audience: get("JWT_AUDIENCE"),
            issuer: get("JWT_ISSUER"),
        })
    }
}

impl ConnectionLimits {
    fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let millis = |name: &'static str, default: usize| {
            parse_count(name, get(name), default).map(|ms| Duration::from_millis(ms as u64))
        };
        Ok(Self {
            max_connections: parse_count(
                "TENANTD_HTTP_MAX_CONNECTIONS",
                get("TENANTD_HTTP_MAX_CONNECTIONS"),
                4_096,
            )?,
            header_timeout: millis("TENANTD_HTTP_HEADER_TIMEOUT_MS", 10_000)?,
            body_timeout: millis("TENANTD_HTTP_BODY_TIMEOUT_MS", 30_000)?,
            idle_timeout: millis("TENANTD_HTTP_IDLE_TIMEOUT_MS", 60_000)?,
        })
    }
}

/// A positive count that fits a `u32` (a rate).
fn rate(
    get: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
    default: usize,
) -> Result<u32, ConfigError> {
    u32::try_from(parse_count(name, get(name), default)?).map_err(|_| ConfigError {
        variable: name,
        problem: "too large: expected a count below 4294967296".to_owned(),
    })
}

/// A number of seconds, zero allowed.
fn parse_secs(
    get: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
) -> Result<u64, ConfigError> {
    match get(name) {
        None => Ok(default),
        Some(text) => text.trim().parse::<u64>().map_err(|_| ConfigError {
            variable: name,
            problem: format!("expected a number of seconds (0 or more), got {text:?}"),
        }),
    }
}
