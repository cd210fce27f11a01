//! Settings read from the environment once, at start, into a typed
//! [`Settings`]. A bad value is reported with the variable's name and what is
//! expected; the rest of the code never reads the environment.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `DATABASE_URL` | unset: embedded dev cluster | admin connection (CREATEDB, CREATEROLE) |
//! | `DB_AUTH_NAME` | `tenantd_auth` | AUTH database |
//! | `DB_SHARED_NAME` | `tenantd_shared` | SHARED database |
//! | `DB_TENANT_PREFIX` | `tenantd` | tenant databases are `<prefix>_<code>` |
//! | `TENANTD_SECRET` | required with `DATABASE_URL` | master secret for role passwords |
//! | `TENANTD_LISTEN` | `127.0.0.1:8080` | HTTP listen address |
//! | `TENANTD_MIGRATIONS_DIR` | built-in sets | directory with `auth/`, `shared/`, `tenant/` |
//! | `TENANTD_DEV_DIR` | `./.tenantd` | where the embedded dev cluster lives |
//! | `JWT_SECRET` | unset: JWTs refused | HS256 key of tenant JWTs (≥ 32 bytes) |
//! | `TENANTD_HTTP_BODY_LIMIT` | `1048576` | largest HTTP request body, bytes |
//! | `JWT_LEEWAY_SECS` | `5` | clock skew allowed on a JWT's `exp` and `nbf` |
//! | `JWT_MAX_LIFETIME_SECS` | `86400` | longest JWT accepted: `exp - iat` (or `exp - now` without `iat`) |
//! | `JWT_AUDIENCE` / `JWT_ISSUER` | unset: not checked | the `aud` / `iss` a JWT must carry |
//! | `TENANTD_AUTH_FAILURES_PER_MIN` | `30` | failed authentications per client address and minute before 429 |
//! | `TENANTD_HTTP_MAX_CONNECTIONS` | `4096` | open HTTP connections at most (when full, the longest-waiting connection without a request is closed) |
//! | `TENANTD_HTTP_HEADER_TIMEOUT_MS` | `10000` | a request head must arrive whole within this time of its first byte (of the connection's start for the first request) |
//! | `TENANTD_HTTP_BODY_TIMEOUT_MS` | `30000` | a request body must arrive whole within this time of its head (408 after) |
//! | `TENANTD_HTTP_IDLE_TIMEOUT_MS` | `60000` | a kept-alive connection without a request is closed after this time |
//! | `TENANTD_SQL_TIMEOUT_MS` | `5000` | statement timeout of every tenant connection tenantd hands out (`POST /v1/sql`, the library's tenant clients); a startup option the tenant cannot lift |
//! | `TENANTD_SQL_MAX_ROWS` | `1000` | rows returned at most by `POST /v1/sql` |
//! | `TENANTD_SQL_MAX_BYTES` | `16777216` | bytes of row data returned at most by `POST /v1/sql` (as the server sends the values) |
//! | `TENANTD_RATE_FREE` / `_PRO` / `_ENTERPRISE` | `20` / `100` / `1000` | tenant-routed requests per second by plan |
//! | `TENANTD_AUTH_CACHE_SECS` | `5` | how long a verified API key is trusted before re-reading the catalog |
//! | `TENANTD_LOG_FORMAT` | text | `json` for JSON logs |
//! | `TENANTD_MIGRATE_CONNECTIONS` | `8` | most tenant databases a fleet migration run (at most 8) or `--verify` opens at once (caps `--concurrency`) |
//! | `TENANTD_MAX_CONNECTIONS` | ¾ of the server's `max_connections` minus its reserved slots and 25 for tenantd's admin pools, read at start | server connections all tenant pools together keep open (the global budget) |
//! | `TENANTD_TENANT_MAX_CONNECTIONS` | `10` | server connections one tenant's pool keeps open |
//! | `TENANTD_ACQUIRE_TIMEOUT_MS` | `5000` | how long a request waits for a connection before a retryable "busy" error |
//! | `TENANTD_POOL_IDLE_SECS` | `300` | tenant pools (and connections) unused this long are closed |
//! | `TENANTD_COLD_START_CONCURRENCY` | `8` | new server connections being opened at once, across all tenants |
//! | `TENANTD_TENANT_ROLE_CONNECTION_LIMIT` | `TENANTD_TENANT_MAX_CONNECTIONS` + 10 | `CONNECTION LIMIT` of every tenant role (its pool plus direct `/connection` clients); at least the tenant pool's size; set by tenantd, which the tenant cannot raise |

mod http_settings;

pub use http_settings::{ConnectionLimits, HttpSettings, JwtRules};

use crate::error_kind::{Classify, ErrorKind};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::ident::is_plain_identifier;
use crate::secret::MasterSecret;

/// A setting that could not be accepted.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong and what is expected.
    pub problem: String,
}

impl ConfigError {
    fn new(variable: &'static str, problem: impl Into<String>) -> Self {
        Self {
            variable,
            problem: problem.into(),
        }
    }
}

impl Classify for ConfigError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }
}

/// Where the PostgreSQL server comes from.
#[derive(Debug, Clone)]
pub enum ServerSource {
    /// An existing server, reached with this admin URL.
    Url(Box<tokio_postgres::Config>),
    /// A private cluster tenantd starts under this directory.
    DevCluster(PathBuf),
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The PostgreSQL server to administer.
    pub server: ServerSource,
    /// Name of the AUTH database.
    pub auth_db: String,
    /// Name of the SHARED database.
    pub shared_db: String,
    /// Prefix of tenant database and role names.
    pub tenant_prefix: String,
    /// Master secret; `None` only with the dev cluster, which keeps its own.
    pub secret: Option<MasterSecret>,
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// A directory of migration sets replacing the built-in ones.
    pub migrations_dir: Option<PathBuf>,
    /// Limits and secrets of the HTTP API.
    pub http: HttpSettings,
    /// Most tenant databases a fleet migration run or verify opens at once.
    pub migrate_connections: usize,
    /// Limits of the tenant connection pools.
    pub pool: PoolSettings,
    /// The `CONNECTION LIMIT` of every tenant role.
    pub tenant_role_connection_limit: i32,
}

/// Limits of the tenant connection pools (see `crate::pool`).
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// The global budget of open tenant connections; `None`: a share of the
    /// server's `max_connections`, read when the first connection is opened.
    pub max_connections: Option<usize>,
    /// Open connections one tenant may have.
    pub tenant_max_connections: usize,
    /// How long a request waits for a connection before failing with a retryable error.
    pub acquire_timeout: Duration,
    /// Pools and connections unused this long are closed.
    pub idle: Duration,
    /// New server connections being opened at once.
    pub cold_start_concurrency: usize,
    /// `TENANTD_SQL_TIMEOUT_MS`: the statement timeout of every tenant
    /// connection, a startup option that survives the session reset.
    pub statement_timeout: Duration,
}

impl PoolSettings {
    fn from_lookup(
        get: &impl Fn(&str) -> Option<String>,
        statement_timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let max_connections = get("TENANTD_MAX_CONNECTIONS")
            .map(|raw| parse_count("TENANTD_MAX_CONNECTIONS", Some(raw), 1))
            .transpose()?;
        let tenant_max_connections = parse_count(
            "TENANTD_TENANT_MAX_CONNECTIONS",
            get("TENANTD_TENANT_MAX_CONNECTIONS"),
            10,
        )?;
        if let Some(budget) = max_connections
            && tenant_max_connections > budget
        {
            return Err(ConfigError::new(
                "TENANTD_TENANT_MAX_CONNECTIONS",
                format!(
                    "{tenant_max_connections} exceeds the global budget TENANTD_MAX_CONNECTIONS={budget}; \
                     lower it or raise the budget"
                ),
            ));
        }
        let millis = parse_count(
            "TENANTD_ACQUIRE_TIMEOUT_MS",
            get("TENANTD_ACQUIRE_TIMEOUT_MS"),
            5000,
        )?;
        let idle_secs = parse_count("TENANTD_POOL_IDLE_SECS", get("TENANTD_POOL_IDLE_SECS"), 300)?;
        Ok(Self {
            max_connections,
            tenant_max_connections,
            acquire_timeout: Duration::from_millis(millis as u64),
            idle: Duration::from_secs(idle_secs as u64),
            cold_start_concurrency: parse_count(
                "TENANTD_COLD_START_CONCURRENCY",
                get("TENANTD_COLD_START_CONCURRENCY"),
                8,
            )?,
            statement_timeout,
        })
    }
}

/// Longest prefix that leaves room for `_` and a 40-character code within
/// PostgreSQL's 63-byte identifiers.
const MAX_PREFIX_LEN: usize = 22;

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let secret = get("TENANTD_SECRET")
            .map(|raw| {
                MasterSecret::new(raw.as_bytes())
                    .map_err(|e| ConfigError::new("TENANTD_SECRET", e.to_string()))
            })
            .transpose()?;
        let server = match get("DATABASE_URL") {
            Some(url) => ServerSource::Url(Box::new(parse_database_url(&url)?)),
            None => ServerSource::DevCluster(
                get("TENANTD_DEV_DIR").map_or_else(|| PathBuf::from(".tenantd"), PathBuf::from),
            ),
        };
        if matches!(server, ServerSource::Url(_)) && secret.is_none() {
            return Err(ConfigError::new(
                "TENANTD_SECRET",
                "required when DATABASE_URL is set: tenant role passwords are derived from it \
                 (use at least 32 random characters, e.g. `openssl rand -hex 32`)",
            ));
        }
        let http = HttpSettings::from_lookup(&get)?;
        let statement_timeout = Duration::from_millis(http.sql_timeout_ms);
        let settings = Self {
            server,
            auth_db: database_name("DB_AUTH_NAME", get("DB_AUTH_NAME"), "tenantd_auth")?,
            shared_db: database_name("DB_SHARED_NAME", get("DB_SHARED_NAME"), "tenantd_shared")?,
            tenant_prefix: tenant_prefix(get("DB_TENANT_PREFIX"))?,
            secret,
            listen: parse_listen(get("TENANTD_LISTEN"))?,
            migrations_dir: get("TENANTD_MIGRATIONS_DIR").map(PathBuf::from),
            http,
            migrate_connections: parse_count(
                "TENANTD_MIGRATE_CONNECTIONS",
                get("TENANTD_MIGRATE_CONNECTIONS"),
                8,
            )?,
            pool: PoolSettings::from_lookup(&get, statement_timeout)?,
            tenant_role_connection_limit: 0,
        };
        let settings = Self {
            tenant_role_connection_limit: role_connection_limit(
                get("TENANTD_TENANT_ROLE_CONNECTION_LIMIT"),
                settings.pool.tenant_max_connections,
            )?,
            ..settings
        };
        settings.check_names_distinct()?;
        Ok(settings)
    }

    fn check_names_distinct(&self) -> Result<(), ConfigError> {
        if self.auth_db == self.shared_db {
            return Err(ConfigError::new(
                "DB_SHARED_NAME",
                "must differ from DB_AUTH_NAME: AUTH and SHARED are separate databases",
            ));
        }
        let tenant_like = format!("{}_", self.tenant_prefix);
        for (variable, name) in [
            ("DB_AUTH_NAME", &self.auth_db),
            ("DB_SHARED_NAME", &self.shared_db),
        ] {
            if name.starts_with(&tenant_like) && !name[tenant_like.len()..].starts_with('_') {
                let code = &name[tenant_like.len()..];
                if crate::TenantCode::parse(code).is_ok() {
                    return Err(ConfigError::new(
                        variable,
                        format!(
                            "{name:?} could collide with tenant {code:?}'s database \
                             (DB_TENANT_PREFIX={}); choose another name",
                            self.tenant_prefix
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn parse_database_url(url: &str) -> Result<tokio_postgres::Config, ConfigError> {
    let config: tokio_postgres::Config = url.parse().map_err(|e| {
        ConfigError::new(
            "DATABASE_URL",
            format!("not a PostgreSQL connection URL ({e}); expected e.g. postgres://postgres@127.0.0.1:5432/postgres"),
        )
    })?;
    if config.get_hosts().is_empty() {
        return Err(ConfigError::new(
            "DATABASE_URL",
            "names no host; expected e.g. postgres://postgres@127.0.0.1:5432/postgres",
        ));
    }
    if config.get_user().is_none() {
        return Err(ConfigError::new(
            "DATABASE_URL",
            "names no user; expected a role with CREATEDB and CREATEROLE, e.g. postgres://postgres@host/postgres",
        ));
    }
    Ok(config)
}

fn database_name(
    variable: &'static str,
    raw: Option<String>,
    default: &str,
) -> Result<String, ConfigError> {
    let name = raw.unwrap_or_else(|| default.to_owned());
    if !is_plain_identifier(&name) || name.starts_with("pg_") {
        return Err(ConfigError::new(
            variable,
            format!(
                "invalid database name {name:?}: expected lower-case letters, digits and '_', at most 63 characters, starting with a letter"
            ),
        ));
    }
    Ok(name)
}

fn tenant_prefix(raw: Option<String>) -> Result<String, ConfigError> {
    let prefix = raw.unwrap_or_else(|| "tenantd".to_owned());
    let starts_with_letter = prefix.starts_with(|c: char| c.is_ascii_lowercase());
    if !is_plain_identifier(&prefix)
        || !starts_with_letter
        || prefix.len() > MAX_PREFIX_LEN
        || prefix.starts_with("pg_")
    {
        return Err(ConfigError::new(
            "DB_TENANT_PREFIX",
            format!(
                "invalid prefix {prefix:?}: expected 1 to {MAX_PREFIX_LEN} lower-case letters, digits or '_', starting with a letter"
            ),
        ));
    }
    Ok(prefix)
}

fn parse_listen(raw: Option<String>) -> Result<SocketAddr, ConfigError> {
    raw.as_deref()
        .unwrap_or("127.0.0.1:8080")
        .parse()
        .map_err(|_| {
            ConfigError::new(
                "TENANTD_LISTEN",
                "expected an address:port such as 127.0.0.1:8080 or 0.0.0.0:8080",
            )
        })
}

/// Parses a positive integer setting.
/// `TENANTD_TENANT_ROLE_CONNECTION_LIMIT`: by default the tenant pool's
/// size plus 10 for direct clients; never below the pool's size (its
/// connections would be refused).
fn role_connection_limit(raw: Option<String>, pool_max: usize) -> Result<i32, ConfigError> {
    const VARIABLE: &str = "TENANTD_TENANT_ROLE_CONNECTION_LIMIT";
    let limit = parse_count(VARIABLE, raw, pool_max.saturating_add(10))?;
    if limit < pool_max {
        return Err(ConfigError::new(
            VARIABLE,
            format!(
                "{limit} is below TENANTD_TENANT_MAX_CONNECTIONS={pool_max}: the tenant's own pool \
                 would be refused connections; raise it"
            ),
        ));
    }
    i32::try_from(limit).map_err(|_| {
        ConfigError::new(
            VARIABLE,
            format!("{limit} is too large (at most {})", i32::MAX),
        )
    })
}

pub(crate) fn parse_count(
    variable: &'static str,
    raw: Option<String>,
    default: usize,
) -> Result<usize, ConfigError> {
    match raw {
        None => Ok(default),
        Some(text) => match text.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(ConfigError::new(
                variable,
                format!("expected a positive integer, got {text:?}"),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    const URL: (&str, &str) = (
        "DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/postgres",
    );
    const SECRET: (&str, &str) = ("TENANTD_SECRET", "0123456789abcdef0123456789abcdef");

    #[test]
    fn defaults() {
        let s = settings(&[URL, SECRET]).unwrap();
        assert_eq!(s.auth_db, "tenantd_auth");
        assert_eq!(s.shared_db, "tenantd_shared");
        assert_eq!(s.tenant_prefix, "tenantd");
        assert_eq!(s.pool.max_connections, None);
        assert_eq!(s.pool.tenant_max_connections, 10);
        assert_eq!(s.tenant_role_connection_limit, 20);
        assert_eq!(s.pool.acquire_timeout, Duration::from_secs(5));
        assert_eq!(s.pool.idle, Duration::from_secs(300));
        assert!(matches!(
            settings(&[]).unwrap().server,
            ServerSource::DevCluster(_)
        ));
    }

    #[test]
    fn errors_name_the_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("DATABASE_URL", "mysql://x"), SECRET], "DATABASE_URL"),
            (&[URL], "TENANTD_SECRET"),
            (&[URL, ("TENANTD_SECRET", "short")], "TENANTD_SECRET"),
            (&[URL, SECRET, ("DB_AUTH_NAME", "a;drop")], "DB_AUTH_NAME"),
            (
                &[URL, SECRET, ("DB_SHARED_NAME", "tenantd_auth")],
                "DB_SHARED_NAME",
            ),
            (
                &[URL, SECRET, ("DB_TENANT_PREFIX", "Bad")],
                "DB_TENANT_PREFIX",
            ),
            (
                &[
                    URL,
                    SECRET,
                    ("DB_TENANT_PREFIX", "a_very_long_prefix_that_is_too_long"),
                ],
                "DB_TENANT_PREFIX",
            ),
            (
                &[URL, SECRET, ("TENANTD_LISTEN", "nowhere")],
                "TENANTD_LISTEN",
            ),
            (
                &[URL, SECRET, ("DB_AUTH_NAME", "tenantd_acme")],
                "DB_AUTH_NAME",
            ),
            (
                &[URL, SECRET, ("TENANTD_MAX_CONNECTIONS", "0")],
                "TENANTD_MAX_CONNECTIONS",
            ),
            (
                &[
                    URL,
                    SECRET,
                    ("TENANTD_MAX_CONNECTIONS", "4"),
                    ("TENANTD_TENANT_MAX_CONNECTIONS", "5"),
                ],
                "TENANTD_TENANT_MAX_CONNECTIONS",
            ),
            (
                &[URL, SECRET, ("TENANTD_ACQUIRE_TIMEOUT_MS", "soon")],
                "TENANTD_ACQUIRE_TIMEOUT_MS",
            ),
        ];
        for (vars, variable) in cases {
            let err = settings(vars).unwrap_err();
            assert_eq!(err.variable, *variable, "{vars:?}: {err}");
            assert!(err.to_string().starts_with(variable));
        }
    }

    #[test]
    fn the_role_connection_limit_covers_the_pool() {
        let pool = ("TENANTD_TENANT_MAX_CONNECTIONS", "5");
        let s = settings(&[URL, SECRET, pool]).unwrap();
        assert_eq!(s.tenant_role_connection_limit, 15);
        let limit = ("TENANTD_TENANT_ROLE_CONNECTION_LIMIT", "7");
        let s = settings(&[URL, SECRET, pool, limit]).unwrap();
        assert_eq!(s.tenant_role_connection_limit, 7);
        let low = ("TENANTD_TENANT_ROLE_CONNECTION_LIMIT", "4");
        let err = settings(&[URL, SECRET, pool, low]).unwrap_err();
        assert_eq!(err.variable, "TENANTD_TENANT_ROLE_CONNECTION_LIMIT");
        let huge = ("TENANTD_TENANT_ROLE_CONNECTION_LIMIT", "99999999999");
        assert!(settings(&[URL, SECRET, huge]).is_err());
    }
}
