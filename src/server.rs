//! The PostgreSQL server tenantd administers: admin connections to any of its
//! databases, and the connection settings a tenant's own role uses.
//!
//! This module opens connections; it does not decide what runs on them.

use crate::error_kind::{Classify, ErrorKind};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

/// How long a connection attempt may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection could not be made or a pool could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The server did not accept a connection.
    #[error(
        "cannot connect to PostgreSQL database {database:?} at {address}: {}; \
         check DATABASE_URL and that the server is running",
        crate::pg_error::describe(source)
    )]
    Unreachable {
        /// The database being opened.
        database: String,
        /// host:port of the server.
        address: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A pool could not open a connection.
    #[error(
        "cannot connect to PostgreSQL database {database:?} at {address}: {detail}; \
         check DATABASE_URL and that the server is running"
    )]
    PoolUnavailable {
        /// The database being opened.
        database: String,
        /// host:port of the server.
        address: String,
        /// The pool's error with its causes.
        detail: String,
    },
    /// A pool could not be built from the settings.
    #[error("cannot build a connection pool for {database:?}: {reason}")]
    Pool {
        /// The database.
        database: String,
        /// Why.
        reason: String,
    },
}

impl Classify for ServerError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Unreachable { .. } | Self::PoolUnavailable { .. } | Self::Pool { .. } => {
                ErrorKind::Unavailable
            }
        }
    }
}

/// The server, reached with the admin role of `DATABASE_URL`.
#[derive(Clone, Debug)]
pub struct Server {
    admin: Config,
}

impl Server {
    /// A server reached with these admin settings (the database name is ignored).
    pub fn new(mut admin: Config) -> Self {
        if admin.get_connect_timeout().is_none() {
            admin.connect_timeout(CONNECT_TIMEOUT);
        }
        if admin.get_application_name().is_none() {
            admin.application_name("tenantd");
        }
        Self { admin }
    }

    /// Admin settings for `database`.
    pub fn admin_config(&self, database: &str) -> Config {
        let mut config = self.admin.clone();
        config.dbname(database);
        config
    }

    /// Settings for `role` with `password` on `database` (a tenant's own connection).
    pub fn role_config(&self, database: &str, role: &str, password: &str) -> Config {
        let mut config = self.admin_config(database);
        config.user(role).password(password);
        config
    }

    /// Checks a connection out of `pool` (a pool of this server's `database`),
    /// naming the server and database when none can be opened.
    pub async fn checkout(
        &self,
        pool: &Pool,
        database: &str,
    ) -> Result<deadpool_postgres::Object, ServerError> {
        pool.get().await.map_err(|e| ServerError::PoolUnavailable {
            database: database.to_owned(),
            address: self.address(),
            detail: crate::pg_error::describe(&e),
        })
    }

    /// Opens an admin connection to `database`; its driver task runs in the background.
    pub async fn connect(&self, database: &str) -> Result<Client, ServerError> {
        connect(&self.admin_config(database)).await
    }

    /// A pool of admin connections to `database` (opened lazily).
    pub fn admin_pool(&self, database: &str, max_size: usize) -> Result<Pool, ServerError> {
        pool(self.admin_config(database), max_size)
    }

    /// The database named in `DATABASE_URL` (default `postgres`), where
    /// `CREATE DATABASE` and `CREATE ROLE` run.
    pub fn maintenance_db(&self) -> &str {
        self.admin.get_dbname().unwrap_or("postgres")
    }

    /// `host:port` of the server, for messages.
    pub fn address(&self) -> String {
        address(&self.admin)
    }

    /// A `postgres://` URL for `role` on `database`.
    pub fn url(&self, database: &str, role: &str, password: &str) -> String {
        let host = match self.admin.get_hosts().first() {
            Some(Host::Tcp(host)) if host.contains(':') => format!("[{host}]"),
            Some(Host::Tcp(host)) => host.clone(),
            Some(Host::Unix(path)) => {
                return format!(
                    "postgres://{role}:{password}@/{database}?host={}&port={}",
                    path.display(),
                    self.port()
                );
            }
            None => "localhost".to_owned(),
        };
        format!(
            "postgres://{role}:{password}@{host}:{}/{database}",
            self.port()
        )
    }

    /// The server's first host (a name, an address or a socket directory).
    pub fn host(&self) -> String {
        match self.admin.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            Some(Host::Unix(path)) => path.display().to_string(),
            None => "localhost".to_owned(),
        }
    }

    /// The server's first port.
    pub fn port(&self) -> u16 {
        self.admin.get_ports().first().copied().unwrap_or(5432)
    }

    /// The admin role's name.
    pub fn admin_user(&self) -> &str {
        self.admin.get_user().unwrap_or("postgres")
    }
}

/// Opens a connection with `config` and drives it on a background task.
pub async fn connect(config: &Config) -> Result<Client, ServerError> {
    let (client, connection) =
        config
            .connect(NoTls)
            .await
            .map_err(|source| ServerError::Unreachable {
                database: config.get_dbname().unwrap_or_default().to_owned(),
                address: address(config),
                source,
            })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            let error = crate::pg_error::describe(&error);
            tracing::debug!(%error, "PostgreSQL connection ended with an error");
        }
    });
    Ok(client)
}

/// A lazily-filled pool of at most `max_size` connections made with `config`.
pub fn pool(config: Config, max_size: usize) -> Result<Pool, ServerError> {
    let database = config.get_dbname().unwrap_or_default().to_owned();
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| ServerError::Pool {
            database,
            reason: e.to_string(),
        })
}

fn address(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    format!(
        "{host}:{}",
        config.get_ports().first().copied().unwrap_or(5432)
    )
}
