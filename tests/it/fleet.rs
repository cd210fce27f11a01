//! Fleet migrations against a real PostgreSQL: a V2 reaching 30 tenants
//! through a temporary TENANTD_MIGRATIONS_DIR, a V3 failing for one tenant
//! (stop, continue, quarantine, recovery), canaries, two concurrent runs,
//! dry runs, status without connections and `--verify` drift.

use std::path::{Path, PathBuf};

use crate::common::TestEnv;
use futures::{StreamExt, stream};
use tenantd::fleet::Drift;
use tenantd::fleet::{ProgressTracker, RunOptions, SetChoice, TenantState};
use tenantd::{Error, ErrorKind, NewTenant, Orchestrator, TenantCode};

/// A copy of the built-in `migrations/` tree in a temporary directory,
/// removed when dropped.
struct MigrationsDir {
    root: PathBuf,
}

impl MigrationsDir {
    fn new(env: &TestEnv) -> Self {
        let root = std::env::temp_dir().join(format!("{}_migrations", env.prefix));
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        for set in ["auth", "shared", "tenant"] {
            std::fs::create_dir_all(root.join(set)).unwrap();
            for entry in std::fs::read_dir(source.join(set)).unwrap() {
                let path = entry.unwrap().path();
                std::fs::copy(&path, root.join(set).join(path.file_name().unwrap())).unwrap();
            }
        }
        Self { root }
    }

    fn add_tenant(&self, file: &str, sql: &str) {
        std::fs::write(self.root.join("tenant").join(file), sql).unwrap();
    }

    fn path(&self) -> &str {
        self.root.to_str().unwrap()
    }
}

impl Drop for MigrationsDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// An environment whose migration sets are read from a temporary directory.
fn env_with_dir() -> (TestEnv, MigrationsDir) {
    let mut env = TestEnv::new();
    let dir = MigrationsDir::new(&env);
    env.set("TENANTD_MIGRATIONS_DIR", dir.path());
    (env, dir)
}

/// A V2 adding a column and counting how often it ran.
const V2: &str = "ALTER TABLE clients ADD COLUMN fleet_note text;\n\
                  CREATE TABLE fleet_effect (n integer NOT NULL);\n\
                  INSERT INTO fleet_effect VALUES (1);\n";
/// A V3 that fails where clients share a VAT number.
const V3: &str = "CREATE UNIQUE INDEX clients_vat_unique ON clients (vat_number);\n";

/// Creates tenants two at a time (gentle on a server shared by many tests).
async fn create_tenants(orchestrator: &Orchestrator, env: &TestEnv, codes: &[String]) {
    let created: Vec<_> = stream::iter(codes)
        .map(|code| orchestrator.create_tenant(NewTenant::new(env.code(code), "Fleet test")))
        .buffer_unordered(2)
        .collect()
        .await;
    for c in created {
        c.unwrap();
    }
}

fn codes(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("t{i:02}")).collect()
}

/// Versions in a tenant database's refinery history.
async fn history(env: &TestEnv, code: &str) -> Vec<i32> {
    let client = env.admin_to(&format!("{}_{code}", env.prefix)).await;
    let rows = client
        .query(
            "SELECT version FROM refinery_schema_history ORDER BY version",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

async fn insert_duplicate_vat(env: &TestEnv, code: &str) {
    let client = env.admin_to(&format!("{}_{code}", env.prefix)).await;
    client
        .batch_execute(
            "INSERT INTO clients (code, name, currency, vat_number) VALUES \
             ('A', 'A', 'EUR', 'FR1'), ('B', 'B', 'EUR', 'FR1')",
        )
        .await
        .unwrap();
}

async fn version(orchestrator: &Orchestrator, code: &TenantCode) -> Option<i32> {
    orchestrator.tenant(code).await.unwrap().schema_version
}

fn options(concurrency: usize) -> RunOptions {
    RunOptions {
        concurrency: Some(concurrency),
        ..RunOptions::default()
    }
}

#[tokio::test]
async fn thirty_tenants_reach_v2_and_a_failing_v3_is_quarantined() {
    let (env, dir) = env_with_dir();
    let v1 = env.orchestrator().await;
    let all = codes(30);
    create_tenants(&v1, &env, &all).await;
    v1.suspend_tenant(&env.code("t05"), Some("unpaid"))
        .await
        .unwrap();
    v1.drop_tenant(&env.code("t29")).await.unwrap();

    drop(v1);
    dir.add_tenant("V2__fleet_note.sql", V2);
    let v2 = Orchestrator::connect(env.settings()).await.unwrap();
    let status = v2.fleet().status(false).await.unwrap();
    assert_eq!(
        status.count(TenantState::Pending),
        29,
        "{:?}",
        status.counts
    );
    assert!(!status.template.present, "a new set needs a new template");

    // Spawned, as an HTTP handler would, polling the tracker meanwhile.
    let (fleet, tracker) = (v2.fleet(), ProgressTracker::default());
    let polled = tracker.clone();
    let run = tokio::spawn(async move { fleet.run(&options(4), &polled).await });
    let summary = run.await.unwrap().unwrap();
    if let Some(code) = summary.failed.first() {
        let failed = v2.tenant(code).await.unwrap();
        panic!("{code} failed: {:?}", failed.migration_error);
    }
    assert_eq!(summary.tenants.migrated, 29, "{summary:?}");
    assert_eq!(summary.tenants.failed, 0);
    assert_eq!(tracker.snapshot().migrated, 29);
    assert!(summary.template.as_ref().unwrap().built);
    for code in &all[..29] {
        assert_eq!(history(&env, code).await, vec![1, 2], "{code}");
        assert_eq!(version(&v2, &env.code(code)).await, Some(2), "{code}");
    }
    let suspended = v2.tenant(&env.code("t05")).await.unwrap();
    assert_eq!(
        suspended.schema_version,
        Some(2),
        "suspended tenants are migrated too"
    );
    assert!(
        !env.databases()
            .await
            .contains(&format!("{}_t29", env.prefix))
    );
    let born = v2
        .create_tenant(NewTenant::new(env.code("zborn"), "Born at V2"))
        .await
        .unwrap();
    assert_eq!(
        born.schema_version,
        Some(2),
        "the template was migrated first"
    );
    assert_eq!(history(&env, "zborn").await, vec![1, 2]);
    // What a fleet run (or the rebuilt template) creates is the tenant's.
    for code in ["t00", "t05", "zborn"] {
        let database = format!("{}_{code}", env.prefix);
        let owner: String = env
            .admin_to(&database)
            .await
            .query_one(
                "SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE relname = 'fleet_effect'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(owner, database, "{code}");
    }
    let again = v2.fleet().run(&options(4), &tracker).await.unwrap();
    assert_eq!((again.tenants.current, again.tenants.migrated), (30, 0));

    drop(v2);
    dir.add_tenant("V3__vat_unique.sql", V3);
    insert_duplicate_vat(&env, "t00").await;
    let v3 = Orchestrator::connect(env.settings()).await.unwrap();
    v3_stop_mode(&env, &v3).await;
    v3_continue_mode(&env, &v3).await;
    v3_recovery(&env, &v3).await;
}

/// Default mode: the first failure stops the run; the others stay at V2.
async fn v3_stop_mode(env: &TestEnv, v3: &Orchestrator) {
    let summary = v3
        .fleet()
        .run(&options(1), &ProgressTracker::default())
        .await
        .unwrap();
    assert_eq!(summary.failed, vec![env.code("t00")], "{summary:?}");
    assert_eq!(summary.tenants.migrated, 0);
    assert_eq!(summary.tenants.skipped, 29, "{summary:?}");
    assert!(summary.stopped.is_some());
    let bad = v3.tenant(&env.code("t00")).await.unwrap();
    assert_eq!(bad.schema_version, Some(2), "a failed migration leaves V2");
    assert!(bad.quarantined);
    let error = bad.migration_error.unwrap();
    assert!(
        error.contains("clients_vat_unique") || error.contains("duplicate"),
        "{error}"
    );
    assert_eq!(history(env, "t00").await, vec![1, 2]);
    assert_eq!(
        history(env, "t01").await,
        vec![1, 2],
        "not started after the failure"
    );
    let refused = v3.tenant_client(&env.code("t00")).await.unwrap_err();
    assert!(
        matches!(refused, Error::UnderMaintenance { .. }),
        "{refused}"
    );
    assert_eq!(refused.kind(), ErrorKind::Unavailable);
    assert!(v3.tenant_client(&env.code("t01")).await.is_ok());
    let op = summary.operation.unwrap();
    let rows = v3_catalog_results(v3, op).await;
    assert_eq!(rows.iter().filter(|r| r.outcome == "failed").count(), 1);
    assert_eq!(rows.iter().filter(|r| r.outcome == "skipped").count(), 29);
}

async fn v3_catalog_results(v3: &Orchestrator, op: uuid::Uuid) -> Vec<tenantd::FleetRunRow> {
    v3.fleet_run_results(op).await.unwrap()
}

/// `--continue-on-error`: every other tenant reaches V3.
async fn v3_continue_mode(env: &TestEnv, v3: &Orchestrator) {
    let opts = RunOptions {
        continue_on_error: true,
        ..options(4)
    };
    let summary = v3
        .fleet()
        .run(&opts, &ProgressTracker::default())
        .await
        .unwrap();
    assert_eq!(summary.failed, vec![env.code("t00")], "{summary:?}");
    assert_eq!(summary.tenants.migrated, 29, "{summary:?}");
    assert!(summary.stopped.is_none());
    assert_eq!(history(env, "t01").await, vec![1, 2, 3]);
    assert_eq!(version(v3, &env.code("t00")).await, Some(2));
}

/// `--no-quarantine` keeps serving; once the data is fixed, a run lifts the quarantine.
async fn v3_recovery(env: &TestEnv, v3: &Orchestrator) {
    let only_bad = RunOptions {
        tenants: vec![env.code("t00")],
        quarantine: false,
        ..options(2)
    };
    let summary = v3
        .fleet()
        .run(&only_bad, &ProgressTracker::default())
        .await
        .unwrap();
    assert_eq!(summary.tenants.failed, 1);
    assert!(!v3.tenant(&env.code("t00")).await.unwrap().quarantined);
    drop(v3.tenant_client(&env.code("t00")).await.unwrap());

    let client = env.admin_to(&format!("{}_t00", env.prefix)).await;
    client
        .batch_execute("DELETE FROM clients WHERE code = 'B'")
        .await
        .unwrap();
    let fixed = RunOptions {
        tenants: vec![env.code("t00")],
        ..options(2)
    };
    let summary = v3
        .fleet()
        .run(&fixed, &ProgressTracker::default())
        .await
        .unwrap();
    assert_eq!(summary.tenants.migrated, 1, "{summary:?}");
    let tenant = v3.tenant(&env.code("t00")).await.unwrap();
    assert_eq!(tenant.schema_version, Some(3));
    assert!(!tenant.quarantined && tenant.migration_error.is_none());
    let status = v3.fleet().status(true).await.unwrap();
    assert_eq!(
        status.count(TenantState::Current),
        30,
        "{:?}",
        status.counts
    );
}

#[tokio::test]
async fn a_template_whose_history_diverges_is_rebuilt_from_scratch() {
    let (env, dir) = env_with_dir();
    let v1 = env.orchestrator().await;
    let old = v1.init().await.unwrap().template;
    let file = dir.root.join("tenant/V1__erp_schema.sql");
    let mut sql = std::fs::read_to_string(&file).unwrap();
    sql.push_str("\nCREATE TABLE fleet_extra (id integer);\n");
    std::fs::write(&file, sql).unwrap();
    let changed = env.orchestrator().await;
    let report = changed.init().await.unwrap();
    assert!(report.template != old, "a changed set has a new template");
    let tenant = changed
        .create_tenant(NewTenant::new(env.code("fresh"), "Fresh"))
        .await
        .unwrap();
    assert_eq!(tenant.schema_version, Some(1));
    let client = changed.tenant_client(&env.code("fresh")).await.unwrap();
    client
        .execute("INSERT INTO fleet_extra VALUES (1)", &[])
        .await
        .unwrap();
}

#[tokio::test]
async fn canary_failure_stops_the_run() {
    let (env, dir) = env_with_dir();
    let v1 = env.orchestrator().await;
    create_tenants(&v1, &env, &codes(4)).await;
    insert_duplicate_vat(&env, "t00").await;
    drop(v1);
    dir.add_tenant("V2__vat_unique.sql", V3);
    let v2 = Orchestrator::connect(env.settings()).await.unwrap();
    let opts = RunOptions {
        canary: 1,
        continue_on_error: true,
        ..options(4)
    };
    let summary = v2
        .fleet()
        .run(&opts, &ProgressTracker::default())
        .await
        .unwrap();
    assert_eq!(summary.failed, vec![env.code("t00")], "{summary:?}");
    assert_eq!((summary.tenants.migrated, summary.tenants.skipped), (0, 3));
    assert_eq!(summary.stopped.as_deref(), Some("a canary tenant failed"));
    assert_eq!(history(&env, "t03").await, vec![1]);
}

#[tokio::test]
async fn two_concurrent_runs_apply_each_migration_once() {
    let (env, dir) = env_with_dir();
    let v1 = env.orchestrator().await;
    let all = codes(6);
    create_tenants(&v1, &env, &all).await;
    drop(v1);
    dir.add_tenant("V2__fleet_note.sql", V2);
    let a = Orchestrator::connect(env.settings()).await.unwrap();
    let b = Orchestrator::connect(env.settings()).await.unwrap();
    let (tracker_a, tracker_b) = (ProgressTracker::default(), ProgressTracker::default());
    let (fleet_a, fleet_b) = (a.fleet(), b.fleet());
    let (opts_a, opts_b) = (options(3), options(2));
    let (ra, rb, created) = tokio::join!(
        fleet_a.run(&opts_a, &tracker_a),
        fleet_b.run(&opts_b, &tracker_b),
        b.create_tenant(NewTenant::new(
            env.code("during"),
            "Created during the runs"
        )),
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.tenants.failed + rb.tenants.failed, 0);
    assert_eq!(
        ra.tenants.migrated + rb.tenants.migrated,
        6,
        "{ra:?} {rb:?}"
    );
    assert_eq!(created.unwrap().schema_version, Some(2));
    for code in all.iter().map(String::as_str).chain(["during"]) {
        assert_eq!(history(&env, code).await, vec![1, 2], "{code}");
        let client = env.admin_to(&format!("{}_{code}", env.prefix)).await;
        let row = client
            .query_one("SELECT count(*) FROM fleet_effect", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), 1, "{code}: V2 ran once");
    }
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let (env, dir) = env_with_dir();
    let v1 = env.orchestrator().await;
    create_tenants(&v1, &env, &codes(3)).await;
    drop(v1);
    dir.add_tenant("V2__fleet_note.sql", V2);
    let v2 = Orchestrator::connect(env.settings()).await.unwrap();
    let databases = env.databases().await;
    let opts = RunOptions {
        dry_run: true,
        ..RunOptions::default()
    };
    let summary = v2
        .fleet()
        .run(&opts, &ProgressTracker::default())
        .await
        .unwrap();
    assert_eq!(summary.tenants.would_migrate, 3, "{summary:?}");
    assert!(
        summary.template.as_ref().unwrap().built,
        "it would build the template"
    );
    assert!(summary.operation.is_none());
    assert_eq!(env.databases().await, databases, "no template was built");
    for code in codes(3) {
        assert_eq!(history(&env, &code).await, vec![1]);
        assert_eq!(version(&v2, &env.code(&code)).await, Some(1));
    }
    let auth = env.admin_to(&format!("{}_auth", env.prefix)).await;
    let runs = auth
        .query_one(
            "SELECT count(*) FROM operations WHERE kind = 'migrate_run'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(runs.get::<_, i64>(0), 0);
    let only_auth = RunOptions {
        sets: SetChoice::Auth,
        ..options(1)
    };
    let summary = v2
        .fleet()
        .run(&only_auth, &ProgressTracker::default())
        .await
        .unwrap();
    assert!(summary.template.is_none() && summary.tenants.done == 0);
    assert_eq!(history(&env, "t00").await, vec![1]);
}

#[tokio::test]
async fn status_uses_the_catalog_and_verify_reports_drift() {
    let env = TestEnv::new();
    let orchestrator = env.orchestrator().await;
    create_tenants(&orchestrator, &env, &codes(4)).await;
    let db = |code: &str| format!("{}_{code}", env.prefix);
    env.admin_to(&db("t00"))
        .await
        .batch_execute("UPDATE refinery_schema_history SET checksum = '42' WHERE version = 1")
        .await
        .unwrap();
    env.admin_to(&db("t01"))
        .await
        .batch_execute(
            "INSERT INTO refinery_schema_history VALUES (99, 'gone', '2026-01-01T00:00:00Z', '1')",
        )
        .await
        .unwrap();
    // A database that refuses connections: status must not need one.
    env.admin()
        .await
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" ALLOW_CONNECTIONS false",
            db("t03")
        ))
        .await
        .unwrap();

    let fleet = orchestrator.fleet();
    let status = fleet.status(false).await.unwrap();
    assert!(!status.verified);
    assert_eq!(status.count(TenantState::Current), 4, "{:?}", status.counts);
    assert!(status.template.present);
    assert_eq!(status.databases.len(), 2);

    let verified = fleet.status(true).await.unwrap();
    let by_code = |code: &str| {
        verified
            .tenants
            .iter()
            .find(|t| t.tenant.as_str() == code)
            .unwrap()
            .clone()
    };
    let t00 = by_code("t00");
    assert_eq!(t00.state, TenantState::Divergent);
    assert!(
        matches!(t00.drift[..], [Drift::ChecksumMismatch { version: 1, .. }]),
        "{:?}",
        t00.drift
    );
    let t01 = by_code("t01");
    assert_eq!(t01.state, TenantState::Divergent);
    assert!(
        t01.drift
            .iter()
            .any(|d| matches!(d, Drift::MissingFile { version: 99, .. }))
    );
    assert!(t01.drift.iter().any(|d| matches!(
        d,
        Drift::CatalogVersion {
            database: Some(99),
            ..
        }
    )));
    assert_eq!(by_code("t02").state, TenantState::Current);
    assert_eq!(by_code("t03").state, TenantState::Unreachable);
}

#[tokio::test]
async fn cli_run_prints_json_lines_and_fails_when_a_tenant_fails() {
    let (env, dir) = env_with_dir();
    let v1 = env.orchestrator().await;
    create_tenants(&v1, &env, &codes(3)).await;
    insert_duplicate_vat(&env, "t01").await;
    drop(v1);
    dir.add_tenant("V2__vat_unique.sql", V3);

    let dry = env
        .command()
        .args(["--json", "migrate", "run", "--dry-run"])
        .output()
        .unwrap();
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert_eq!(history(&env, "t00").await, vec![1]);

    let out = env
        .command()
        .args([
            "--json",
            "migrate",
            "run",
            "--continue-on-error",
            "--concurrency",
            "2",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let tenants: Vec<_> = lines.iter().filter(|l| l.get("tenant").is_some()).collect();
    assert_eq!(tenants.len(), 3, "{lines:?}");
    let failed: Vec<_> = tenants
        .iter()
        .filter(|l| l["outcome"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["tenant"], "t01");
    let summary = lines.iter().find_map(|l| l.get("summary")).unwrap();
    assert_eq!(summary["tenants"]["migrated"], 2);
    assert_eq!(
        history(&env, "t00").await,
        vec![1, 2],
        "TENANTD_MIGRATIONS_DIR was read"
    );

    let status = env
        .command()
        .args(["--json", "migrate", "status"])
        .output()
        .unwrap();
    assert!(status.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(doc["counts"]["quarantined"], 1, "{doc}");
    assert_eq!(doc["counts"]["current"], 2, "{doc}");
}

#[tokio::test]
async fn a_quarantine_reaches_the_router_of_another_process_within_a_second() {
    let (env, dir) = env_with_dir();
    let v1 = env.orchestrator().await;
    create_tenants(&v1, &env, &codes(2)).await;
    insert_duplicate_vat(&env, "t00").await;
    // Another process has routed to t00 already: its lookup is cached.
    let router = Orchestrator::connect(env.settings()).await.unwrap();
    drop(router.tenant_client(&env.code("t00")).await.unwrap());
    drop(v1);
    dir.add_tenant("V2__vat_unique.sql", V3);
    let migrator = Orchestrator::connect(env.settings()).await.unwrap();
    let summary = migrator
        .fleet()
        .run(&options(2), &ProgressTracker::default())
        .await
        .unwrap();
    assert_eq!(summary.failed, vec![env.code("t00")], "{summary:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        match router.tenant_client(&env.code("t00")).await {
            Err(Error::UnderMaintenance { .. }) => break,
            other => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the other process still routes to the quarantined tenant: {:?}",
                    other.map(|_| "a connection")
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
}

/// Indexes built concurrently: the migration runs outside a transaction.
const CONCURRENT: &str = "-- Indexes the busy columns without blocking writes.\n\
                          -- tenantd:no-transaction\n\
                          CREATE INDEX CONCURRENTLY IF NOT EXISTS clients_vat_idx ON clients (vat_number);\n\
                          CREATE INDEX CONCURRENTLY clients_name_idx ON public.clients (name);\n";
/// An ordinary migration after it, run by refinery in its transaction.
const AFTER_CONCURRENT: &str = "CREATE TABLE after_concurrent (n integer);\n";
/// A unique index built concurrently: fails (leaving an INVALID index) where
/// two clients share a VAT number.
const UNIQUE_CONCURRENT: &str = "-- tenantd:no-transaction\n\
                                 CREATE UNIQUE INDEX CONCURRENTLY clients_vat_unique ON clients (vat_number);\n";

/// The `clients_*` indexes of a tenant database and whether each is valid.
async fn indexes(env: &TestEnv, database: &str) -> Vec<(String, bool)> {
    let client = env.admin_to(database).await;
    let rows = client
        .query(
            "SELECT c.relname::text, i.indisvalid FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE c.relname IN ('clients_vat_idx', 'clients_name_idx', 'clients_vat_unique') \
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

fn valid(names: &[&str]) -> Vec<(String, bool)> {
    names.iter().map(|n| ((*n).to_owned(), true)).collect()
}

#[tokio::test]
async fn a_concurrent_index_migration_reaches_the_template_and_every_tenant() {
    let (env, dir) = env_with_dir();
    let v1 = env.orchestrator().await;
    let all = codes(4);
    create_tenants(&v1, &env, &all).await;
    drop(v1);
    dir.add_tenant("V50__concurrent_indexes.sql", CONCURRENT);
    dir.add_tenant("V51__after_concurrent.sql", AFTER_CONCURRENT);
    let v2 = Orchestrator::connect(env.settings()).await.unwrap();
    let summary = v2
        .fleet()
        .run(&options(2), &ProgressTracker::default())
        .await
        .unwrap();
    if let Some(code) = summary.failed.first() {
        let failed = v2.tenant(code).await.unwrap();
        panic!("{code} failed: {:?}", failed.migration_error);
    }
    assert_eq!(summary.tenants.migrated, 4, "{summary:?}");
    let both = valid(&["clients_name_idx", "clients_vat_idx"]);
    for code in &all {
        assert_eq!(history(&env, code).await, vec![1, 50, 51], "{code}");
        let database = format!("{}_{code}", env.prefix);
        assert_eq!(indexes(&env, &database).await, both, "{code}");
        assert_eq!(version(&v2, &env.code(code)).await, Some(51));
    }
    let born = v2
        .create_tenant(NewTenant::new(env.code("zborn"), "Born from the template"))
        .await
        .unwrap();
    assert_eq!(born.schema_version, Some(51), "the template was migrated");
    assert_eq!(history(&env, "zborn").await, vec![1, 50, 51]);
    let database = format!("{}_zborn", env.prefix);
    assert_eq!(indexes(&env, &database).await, both);
    let again = v2
        .fleet()
        .run(&options(2), &ProgressTracker::default())
        .await
        .unwrap();
    assert_eq!((again.tenants.current, again.tenants.migrated), (5, 0));
}

#[tokio::test]
async fn a_failed_concurrent_build_leaves_an_invalid_index_that_the_next_run_rebuilds() {
    let (env, dir) = env_with_dir();
    let v1 = env.orchestrator().await;
    create_tenants(&v1, &env, &codes(2)).await;
    insert_duplicate_vat(&env, "t01").await;
    drop(v1);
    dir.add_tenant("V50__vat_unique.sql", UNIQUE_CONCURRENT);
    let v2 = Orchestrator::connect(env.settings()).await.unwrap();
    let opts = RunOptions {
        continue_on_error: true,
        ..options(2)
    };
    let summary = v2
        .fleet()
        .run(&opts, &ProgressTracker::default())
        .await
        .unwrap();
    assert_eq!(summary.failed, vec![env.code("t01")], "{summary:?}");
    assert_eq!(history(&env, "t00").await, vec![1, 50]);
    let t00 = format!("{}_t00", env.prefix);
    assert_eq!(indexes(&env, &t00).await, valid(&["clients_vat_unique"]));

    let bad = v2.tenant(&env.code("t01")).await.unwrap();
    assert_eq!(bad.schema_version, Some(1));
    let error = bad.migration_error.unwrap();
    for part in [
        "V50__vat_unique",
        "outside a transaction",
        "could not create unique index \"clients_vat_unique\"",
        "Key (vat_number)=(FR1) is duplicated",
        "SQLSTATE 23505",
    ] {
        assert!(error.contains(part), "{part:?} missing from: {error}");
    }
    assert!(!error.contains("db error"), "{error}");
    assert_eq!(history(&env, "t01").await, vec![1], "not recorded");
    let t01 = format!("{}_t01", env.prefix);
    assert_eq!(
        indexes(&env, &t01).await,
        vec![("clients_vat_unique".to_owned(), false)],
        "the failed build left an invalid index"
    );

    env.admin_to(&t01)
        .await
        .batch_execute("DELETE FROM clients WHERE code = 'B'")
        .await
        .unwrap();
    let rerun = v2
        .fleet()
        .run(&options(2), &ProgressTracker::default())
        .await
        .unwrap();
    assert!(
        rerun.failed.is_empty(),
        "{:?}",
        v2.tenant(&env.code("t01")).await
    );
    assert_eq!(rerun.tenants.migrated, 1, "{rerun:?}");
    assert_eq!(history(&env, "t01").await, vec![1, 50]);
    assert_eq!(
        indexes(&env, &t01).await,
        valid(&["clients_vat_unique"]),
        "the invalid index was dropped and rebuilt"
    );
    let tenant = v2.tenant(&env.code("t01")).await.unwrap();
    assert_eq!(tenant.schema_version, Some(50));
    assert!(!tenant.quarantined && tenant.migration_error.is_none());
}

#[tokio::test]
async fn an_unnamed_concurrent_index_is_refused_when_the_set_loads() {
    let (env, dir) = env_with_dir();
    dir.add_tenant(
        "V50__unnamed.sql",
        "-- tenantd:no-transaction\nCREATE INDEX CONCURRENTLY ON clients (name);\n",
    );
    let refused = Orchestrator::connect(env.settings()).await.err().unwrap();
    assert_eq!(refused.kind(), ErrorKind::InvalidInput);
    let text = refused.to_string();
    assert!(text.contains("V50__unnamed"), "{text}");
    assert!(text.contains("without naming it"), "{text}");
}

#[tokio::test]
async fn no_transaction_migrations_run_on_auth_and_shared() {
    let (env, dir) = env_with_dir();
    drop(env.orchestrator().await);
    let root = Path::new(dir.path());
    std::fs::write(
        root.join("auth/V90__concurrent.sql"),
        "-- tenantd:no-transaction\n\
         CREATE INDEX CONCURRENTLY IF NOT EXISTS operations_started_idx ON operations (started_at);\n",
    )
    .unwrap();
    std::fs::write(
        root.join("shared/V90__concurrent.sql"),
        "-- tenantd:no-transaction\n\
         CREATE INDEX CONCURRENTLY units_name_idx ON units (name);\n\
         VACUUM units;\n",
    )
    .unwrap();
    let orchestrator = Orchestrator::connect(env.settings()).await.unwrap();
    let opts = RunOptions {
        sets: SetChoice::All,
        ..options(2)
    };
    let summary = orchestrator
        .fleet()
        .run(&opts, &ProgressTracker::default())
        .await
        .unwrap();
    assert_eq!(summary.databases.len(), 2, "{summary:?}");
    for (database, index) in [
        ("auth", "operations_started_idx"),
        ("shared", "units_name_idx"),
    ] {
        let client = env.admin_to(&format!("{}_{database}", env.prefix)).await;
        let valid: bool = client
            .query_one(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                 WHERE c.relname = $1",
                &[&index],
            )
            .await
            .unwrap()
            .get(0);
        assert!(valid, "{database}: {index}");
        let latest: i32 = client
            .query_one("SELECT max(version) FROM refinery_schema_history", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(latest, 90, "{database}");
    }
}

/// A migration PostgreSQL refuses: `year` is no type.
const FISCAL_YEAR: &str = "ALTER TABLE clients ADD COLUMN fiscal year;\n";

/// Standard output and error of a command, as one text.
fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn the_cli_names_postgresql_s_message_for_a_failing_migration() {
    let (env, dir) = env_with_dir();
    let v1 = env.orchestrator().await;
    create_tenants(&v1, &env, &codes(1)).await;
    drop(v1);

    // The tenant set fails on the template, before any tenant.
    dir.add_tenant("V50__fiscal_year.sql", FISCAL_YEAR);
    let out = env.command().args(["migrate", "run"]).output().unwrap();
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    for part in [
        "building the template database failed",
        "(tenant) failed",
        "V50__fiscal_year",
        "type \"year\" does not exist",
        "SQLSTATE 42704",
    ] {
        assert!(text.contains(part), "{part:?} missing from: {text}");
    }
    assert!(!text.contains("db error"), "{text}");
    assert_eq!(history(&env, "t00").await, vec![1]);
    std::fs::remove_file(Path::new(dir.path()).join("tenant/V50__fiscal_year.sql")).unwrap();

    // SHARED's failure is the command's own error.
    std::fs::write(
        Path::new(dir.path()).join("shared/V90__fiscal_year.sql"),
        "ALTER TABLE units ADD COLUMN fiscal year;\n",
    )
    .unwrap();
    let out = env
        .command()
        .args(["migrate", "run", "--set", "shared"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for part in [
        "(shared) failed",
        "V90__fiscal_year",
        "type \"year\" does not exist",
        "SQLSTATE 42704",
    ] {
        assert!(stderr.contains(part), "{part:?} missing from: {stderr}");
    }
    assert!(!stderr.contains("db error"), "{stderr}");
}
