//! A restarted PostgreSQL server is survived: the real HTTP server runs over
//! a private cluster (never the shared test server) that is stopped and
//! restarted under it. During the outage requests get 503 with
//! `Retry-After` (not 500); once the server is back, `/v1/sql` and `/readyz`
//! answer 200 within seconds (pool connections broken by the restart are
//! discarded, not handed out), and the catalog listener subscribes again,
//! so a suspend done by another orchestrator still reaches this process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use tenantd::{Error, Orchestrator};

use crate::http_support::{TestServer, assert_problem};

/// A private PostgreSQL cluster under /tmp, run by the `postgres` OS user
/// when the tests run as root; stopped and removed on drop (even when the
/// test fails).
struct PrivateCluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
}

impl PrivateCluster {
    /// Initialises and starts a cluster with trust authentication on a free port.
    fn start() -> Self {
        let dir = Path::new("/tmp").join(format!("tenantd-restart-{:08x}", rand::random::<u32>()));
        std::fs::create_dir(&dir).expect("create the cluster dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let cluster = Self {
            bin: bindir(),
            dir,
            port,
        };
        if is_root() {
            let chown = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&cluster.dir)
                .status()
                .expect("chown");
            assert!(chown.success());
        }
        let data = cluster.data();
        cluster.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "--no-sync"],
        );
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{data}'\n\
             max_connections = 100\nfsync = off\n"
        );
        let conf_path = cluster.dir.join("data/postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).expect("postgresql.conf");
        text.push_str(&conf);
        std::fs::write(&conf_path, text).expect("write postgresql.conf");
        cluster.pg_ctl(&["start", "-w", "-t", "60"]);
        cluster
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// The admin URL.
    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl <args> -D <data> -l <log>`.
    fn pg_ctl(&self, args: &[&str]) {
        let data = self.data();
        let log = self.dir.join("postgres.log").display().to_string();
        let mut all = args.to_vec();
        all.extend(["-D", &data, "-l", &log]);
        self.run("pg_ctl", &all);
    }

    /// Runs a PostgreSQL program, as `postgres` when we are root; panics on failure.
    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let output = command
            .args(args)
            .current_dir("/")
            .output()
            .expect("run a PostgreSQL program");
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["stop", "-m", "immediate", "-D", &data])
            .current_dir("/")
            .output();
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("could not remove {}: {e}", self.dir.display());
        }
    }
}

/// The directory of `initdb` and `pg_ctl`: `pg_config --bindir`, else the
/// newest `/usr/lib/postgresql/*/bin`.
fn bindir() -> PathBuf {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && dir.join("pg_ctl").exists() {
            return dir;
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("a local PostgreSQL installation")
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop().expect("pg_ctl in /usr/lib/postgresql").1
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

/// Polls `check` every 50 ms until it holds; how long it took, or `None` after `limit`.
async fn within<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// `POST /v1/sql` `SELECT 1` with `key`: its status, and the `Retry-After` of a 503.
async fn select_one(server: &TestServer, key: &str) -> StatusCode {
    let (status, body) = server.sql(key, "SELECT 1 AS one", json!([])).await;
    if status == StatusCode::OK {
        assert_eq!(body["rows"][0][0], 1, "{body}");
    }
    status
}

async fn readyz(server: &TestServer) -> StatusCode {
    server
        .send(Method::GET, "/readyz", None, None)
        .await
        .status()
}

/// While the server is down, a request is answered 503 with `Retry-After`.
async fn assert_unavailable(server: &TestServer, method: Method, path: &str, key: Option<&str>) {
    let body = (path == "/v1/sql").then(|| json!({ "sql": "SELECT 1", "params": [] }));
    let response = server.send(method, path, key, body).await;
    assert!(
        response.headers().contains_key("retry-after"),
        "{path} during the outage: {} without Retry-After",
        response.status()
    );
    assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_server_is_survived_by_pools_readiness_and_the_listener() {
    let cluster = PrivateCluster::start();
    let url = cluster.url();
    let server = TestServer::start_with(&[
        ("DATABASE_URL", &url),
        ("TENANTD_ACQUIRE_TIMEOUT_MS", "1000"),
        // Keys are read again after a second, so the outage reaches auth too.
        ("TENANTD_AUTH_CACHE_SECS", "1"),
    ])
    .await;
    server.create_tenant("acme", "pro").await;
    let key = server.tenant_key("acme").await;
    assert_eq!(select_one(&server, &key).await, StatusCode::OK);
    assert_eq!(readyz(&server).await, StatusCode::OK);
    let code = server.env.code("acme");
    let listening = within(Duration::from_secs(5), || async {
        server.orchestrator.pool_stats().notify_connected
    })
    .await;
    assert!(listening.is_some(), "the catalog listener subscribed");

    // The outage: answered 503 + Retry-After, never 500.
    cluster.pg_ctl(&["stop", "-w", "-m", "fast"]);
    assert_unavailable(&server, Method::POST, "/v1/sql", Some(&key)).await;
    assert_unavailable(&server, Method::GET, "/readyz", None).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_unavailable(&server, Method::POST, "/v1/sql", Some(&key)).await;
    assert_unavailable(
        &server,
        Method::GET,
        "/v1/tenants/acme",
        Some(&server.admin_key),
    )
    .await;

    // Back: served again within seconds.
    cluster.pg_ctl(&["start", "-w", "-t", "60"]);
    let back = Instant::now();
    let sql_ok = within(Duration::from_secs(5), || async {
        select_one(&server, &key).await == StatusCode::OK
    })
    .await;
    assert!(sql_ok.is_some(), "/v1/sql answers 200 after the restart");
    let ready = within(Duration::from_secs(5), || async {
        readyz(&server).await == StatusCode::OK
    })
    .await;
    assert!(ready.is_some(), "/readyz answers 200 after the restart");
    eprintln!(
        "served again {:?} after the server was back",
        back.elapsed()
    );

    let resubscribed = within(Duration::from_secs(10), || async {
        let stats = server.orchestrator.pool_stats();
        stats.notify_connected && stats.notify_reconnects >= 1
    })
    .await;
    assert!(
        resubscribed.is_some(),
        "the listener subscribed again after the outage"
    );

    // A restart: connections broken by it are not handed out.
    cluster.pg_ctl(&["restart", "-w", "-m", "fast", "-t", "60"]);
    let first = select_one(&server, &key).await;
    assert_eq!(
        first,
        StatusCode::OK,
        "the first request after a restart gets a fresh connection"
    );
    let stats = server.orchestrator.pool_stats();
    assert!(stats.connections_opened >= 3, "{stats:?}");

    // The listener subscribed again: a suspend in another process arrives.
    let resubscribed = within(Duration::from_secs(10), || async {
        let stats = server.orchestrator.pool_stats();
        stats.notify_connected && stats.notify_reconnects >= 2
    })
    .await;
    assert!(
        resubscribed.is_some(),
        "the listener subscribed again after the restart: {:?}",
        server.orchestrator.pool_stats()
    );
    // The route is cached again before the suspend (only a notification can
    // change it for the next minute).
    assert_eq!(select_one(&server, &key).await, StatusCode::OK);
    let other = Orchestrator::connect(server.env.settings())
        .await
        .expect("another orchestrator");
    other
        .suspend_tenant(&code, Some("restart test"))
        .await
        .expect("suspend");
    let refused = within(Duration::from_secs(2), || async {
        matches!(
            server.orchestrator.tenant_client(&code).await,
            Err(Error::TenantUnavailable { .. })
        )
    })
    .await;
    assert!(
        refused.is_some(),
        "the suspend done elsewhere reached this process's pool"
    );
    assert_ne!(select_one(&server, &key).await, StatusCode::OK);
    other.close();
    server.stop().await;
    drop(cluster);
}
