//! The embedded dev cluster: with `DATABASE_URL` unset, `tenantd dev start`
//! initialises and starts a private PostgreSQL cluster under
//! `TENANTD_DEV_DIR`, tenant commands run against it, a second start reuses
//! it, and `tenantd dev stop` stops it. The cluster is private: nothing it
//! holds appears on the shared test server.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::TestEnv;

/// A fresh cluster directory under /tmp, stopped and removed on drop (even
/// when the test fails).
struct DevDir {
    path: PathBuf,
}

impl DevDir {
    fn new() -> Self {
        let path = Path::new("/tmp").join(format!("tenantd-devtest-{:08x}", rand::random::<u32>()));
        std::fs::create_dir(&path).expect("create the dev dir");
        // The `postgres` OS user runs the server when the tests run as root.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod the dev dir");
        Self { path }
    }

    /// `tenantd <args>` against the dev cluster: DATABASE_URL and
    /// TENANTD_SECRET unset (nothing configured), this test's names.
    fn command(&self, env: &TestEnv, args: &[&str]) -> Command {
        let mut command = env.command();
        command
            .env_remove("DATABASE_URL")
            .env_remove("TENANTD_SECRET")
            .env("TENANTD_DEV_DIR", &self.path)
            .args(args)
            .stdin(std::process::Stdio::null());
        command
    }
}

impl Drop for DevDir {
    fn drop(&mut self) {
        let mut stop = Command::new(env!("CARGO_BIN_EXE_tenantd"));
        stop.args(["dev", "stop"])
            .env_remove("DATABASE_URL")
            .env("TENANTD_DEV_DIR", &self.path)
            .env("TENANTD_LOG", "warn");
        match stop.output() {
            Ok(out) if out.status.success() => {}
            other => eprintln!(
                "could not stop the dev cluster in {}: {other:?}",
                self.path.display()
            ),
        }
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("could not remove {}: {e}", self.path.display());
        }
    }
}

async fn run(command: Command) -> Output {
    tokio::process::Command::from(command)
        .output()
        .await
        .expect("run tenantd")
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs the command, asserts exit 0 and returns its stdout.
async fn ok(command: Command) -> String {
    let output = run(command).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The first `postgres://` URL in `text`.
fn url_in(text: &str) -> String {
    text.split_whitespace()
        .find(|word| word.starts_with("postgres://"))
        .unwrap_or_else(|| panic!("no postgres:// URL in {text:?}"))
        .to_owned()
}

fn port_of(url: &str) -> u16 {
    let config: tokio_postgres::Config = url.parse().expect("URL");
    config.get_ports()[0]
}

#[tokio::test]
async fn dev_cluster_starts_serves_tenants_is_reused_and_stops() {
    let env = TestEnv::new();
    let dev = DevDir::new();

    let url = url_in(&ok(dev.command(&env, &["dev", "start"])).await);
    let port = port_of(&url);
    assert_ne!(
        port,
        port_of(&common::server_url()),
        "a private cluster, not the shared server"
    );
    assert!(Path::new(&dev.path).join("data/PG_VERSION").exists());
    let admin = common::connect(&url).await;
    let one: i32 = admin
        .query_one("SELECT 1", &[])
        .await
        .expect("SELECT 1")
        .get(0);
    assert_eq!(one, 1);

    ok(dev.command(&env, &["tenant", "create", "demo", "--name", "Demo"])).await;
    let database = format!("{}_demo", env.prefix);
    let on_cluster = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
        .await
        .expect("query");
    assert!(on_cluster.is_some(), "{database} lives in the dev cluster");
    assert!(
        !env.databases().await.contains(&database),
        "nothing on the shared server"
    );
    let tenant_url = ok(dev.command(&env, &["tenant", "url", "demo"])).await;
    let tenant_url = tenant_url.trim();
    assert_eq!(port_of(tenant_url), port, "{tenant_url}");
    let tenant = common::connect(tenant_url).await;
    let user: String = tenant
        .query_one("SELECT current_user::text", &[])
        .await
        .expect("query")
        .get(0);
    assert_eq!(user, database);
    drop(tenant);
    // The cluster is tenantd's alone: init closed its maintenance
    // databases to PUBLIC, so the tenant's role reaches none of them.
    for maintenance in ["postgres", "template1"] {
        let mut config: tokio_postgres::Config = tenant_url.parse().expect("URL");
        config.dbname(maintenance);
        let refused = common::connect_config(&config)
            .await
            .expect_err("a tenant role cannot open a maintenance database");
        assert_eq!(
            refused.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{maintenance}: {refused}"
        );
    }
    drop(admin);

    let again = ok(dev.command(&env, &["dev", "start", "--json"])).await;
    let again: serde_json::Value = serde_json::from_str(&again).expect("JSON");
    assert_eq!(again["url"], url.as_str(), "the running cluster is reused");

    let stopped = ok(dev.command(&env, &["dev", "stop"])).await;
    assert!(stopped.contains("dev cluster stopped"), "{stopped}");
    let config: tokio_postgres::Config = url.parse().expect("URL");
    assert!(
        common::connect_config(&config).await.is_err(),
        "the stopped cluster refuses connections"
    );
    let idle = ok(dev.command(&env, &["dev", "stop"])).await;
    assert!(idle.contains("was not running"), "{idle}");
}
