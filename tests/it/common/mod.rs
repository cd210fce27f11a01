//! Test harness: every test gets its own name prefix (tenant databases and
//! roles, AUTH, SHARED, template) on the real PostgreSQL server named by
//! `TENANTD_TEST_DATABASE_URL` (default: the local server), and drops
//! everything carrying that prefix when it ends — even when it fails.

#![allow(dead_code)]

use std::collections::HashMap;
use std::process::Command;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tenantd::{Orchestrator, Settings, TenantCode};
use tokio_postgres::{Client, NoTls};

/// The server the tests run against.
pub fn server_url() -> String {
    std::env::var("TENANTD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A secret used by every test.
pub const TEST_SECRET: &str = "test-secret-0123456789abcdef0123456789";

/// Tests share the server; a test that fills the server's connection slots
/// on purpose has it alone (the others would be refused meanwhile).
static SERVER: RwLock<()> = RwLock::new(());

/// How a test holds the server: with the others, or alone.
#[allow(dead_code)]
enum ServerUse {
    Shared(RwLockReadGuard<'static, ()>),
    Exclusive(RwLockWriteGuard<'static, ()>),
}

/// One test's private corner of the server.
pub struct TestEnv {
    /// Prefix of every database and role this test creates.
    pub prefix: String,
    vars: HashMap<String, String>,
    // Released after the cleanup in `Drop`.
    _server: ServerUse,
}

impl TestEnv {
    /// A new environment with a random prefix (`tdt_` + 8 hex digits),
    /// sharing the server with the other tests.
    pub fn new() -> Self {
        let guard = SERVER.read().unwrap_or_else(PoisonError::into_inner);
        Self::with(ServerUse::Shared(guard))
    }

    /// A new environment that has the server to itself: it waits for the
    /// running tests to end, and the others wait for it.
    pub fn exclusive() -> Self {
        let guard = SERVER.write().unwrap_or_else(PoisonError::into_inner);
        Self::with(ServerUse::Exclusive(guard))
    }

    fn with(server: ServerUse) -> Self {
        let prefix = format!("tdt_{:08x}", rand::random::<u32>());
        let vars = [
            ("DATABASE_URL", server_url()),
            ("TENANTD_SECRET", TEST_SECRET.to_owned()),
            ("DB_AUTH_NAME", format!("{prefix}_auth")),
            ("DB_SHARED_NAME", format!("{prefix}_shared")),
            ("DB_TENANT_PREFIX", prefix.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Self {
            prefix,
            vars,
            _server: server,
        }
    }

    /// Sets (or overrides) an environment variable of this test's settings.
    pub fn set(&mut self, name: &str, value: &str) -> &mut Self {
        self.vars.insert(name.to_owned(), value.to_owned());
        self
    }

    /// The variables this test's tenantd runs with.
    pub fn vars(&self) -> &HashMap<String, String> {
        &self.vars
    }

    /// Settings for this test.
    pub fn settings(&self) -> Settings {
        Settings::from_lookup(|k| self.vars.get(k).cloned()).expect("test settings are valid")
    }

    /// An orchestrator on this test's names, after `init`.
    pub async fn orchestrator(&self) -> Orchestrator {
        let orchestrator = Orchestrator::connect(self.settings())
            .await
            .expect("connect");
        orchestrator.init().await.expect("init");
        orchestrator
    }

    /// The `tenantd` binary with this test's environment (and nothing else
    /// of tenantd's from the calling environment).
    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tenantd"));
        for (name, _) in std::env::vars() {
            if name.starts_with("TENANTD_") || name.starts_with("DB_") || name == "DATABASE_URL" {
                command.env_remove(name);
            }
        }
        command.envs(&self.vars).env("TENANTD_LOG", "warn");
        command
    }

    /// A tenant code.
    pub fn code(&self, code: &str) -> TenantCode {
        TenantCode::parse(code).expect("valid test code")
    }

    /// An admin connection to the server's maintenance database.
    pub async fn admin(&self) -> Client {
        connect(&server_url()).await
    }

    /// An admin connection to `database`.
    pub async fn admin_to(&self, database: &str) -> Client {
        let mut config: tokio_postgres::Config = server_url().parse().expect("test URL");
        config.dbname(database);
        connect_config(&config).await.expect("admin connection")
    }

    /// Databases whose name starts with this test's prefix, sorted.
    pub async fn databases(&self) -> Vec<String> {
        let rows = self
            .admin()
            .await
            .query(
                "SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1",
                &[&format!("{}_", self.prefix)],
            )
            .await
            .expect("list databases");
        rows.iter().map(|r| r.get(0)).collect()
    }

    /// Roles whose name starts with this test's prefix, sorted.
    pub async fn roles(&self) -> Vec<String> {
        let rows = self
            .admin()
            .await
            .query(
                "SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY 1",
                &[&format!("{}_", self.prefix)],
            )
            .await
            .expect("list roles");
        rows.iter().map(|r| r.get(0)).collect()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        // Runs on its own thread and runtime: Drop cannot await, and the
        // test's runtime may be shutting down.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(drop_prefixed(&prefix));
        });
        if cleanup.join().is_err() {
            eprintln!("cleanup of test prefix {} failed", self.prefix);
        }
    }
}

/// Drops every database and role named `<prefix>_…`.
pub async fn drop_prefixed(prefix: &str) {
    let Ok(admin) = connect_config(&server_url().parse().expect("test URL")).await else {
        return;
    };
    match tenantd::purge::purge_prefix(&admin, prefix).await {
        Ok(purged) => {
            for failure in purged.failures {
                eprintln!("cleanup: cannot drop {failure}");
            }
        }
        Err(e) => eprintln!("cleanup: cannot list what to drop: {e}"),
    }
}

/// Connects with a URL, panicking with a helpful message when the server is down.
pub async fn connect(url: &str) -> Client {
    connect_config(&url.parse().expect("URL"))
        .await
        .unwrap_or_else(|e| {
            panic!("cannot reach the test PostgreSQL at {url}: {e}; set TENANTD_TEST_DATABASE_URL")
        })
}

/// Connects with a config; the connection task runs in the background.
pub async fn connect_config(
    config: &tokio_postgres::Config,
) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}
