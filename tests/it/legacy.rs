//! The legacy split on a generated monolith (3 sociétés, test rows, orphan
//! rows): the whole pipeline verifies; a run killed mid-copy and restarted
//! ends with the same rows and none twice; rollback leaves the server's
//! databases and roles as they were; clean's archive restores what it deleted.

use crate::common;

use std::path::PathBuf;

use crate::common::TestEnv;
use tenantd::Orchestrator;
use tenantd::legacy::fixture::Fixture;
use tenantd::legacy::{LegacyConfig, backup, clean, rollback, run, verify};

const FIXTURE: Fixture = Fixture {
    societes: 3,
    clients_per_societe: 20,
};

/// A fixture monolith and a config file for one test; removes its files when dropped.
struct Legacy {
    dir: PathBuf,
    config_path: PathBuf,
    config: LegacyConfig,
}

impl Drop for Legacy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn source_url(env: &TestEnv) -> String {
    let url = common::server_url();
    let (base, _) = url.rsplit_once('/').expect("server URL has a database");
    format!("{base}/{}_monolith", env.prefix)
}

async fn legacy(env: &TestEnv) -> Legacy {
    let admin = env.admin().await;
    let server: tokio_postgres::Config = common::server_url().parse().unwrap();
    FIXTURE
        .create(&admin, &server, &format!("{}_monolith", env.prefix))
        .await
        .expect("fixture monolith");
    let dir = std::env::temp_dir().join(format!("{}_legacy", env.prefix));
    std::fs::create_dir_all(&dir).unwrap();
    let text = format!(
        r#"
[source]
url = "{}"
[default_societe]
code = "orphans"
name = "Sans société"
[classification]
processes = "shared"
[[test_data]]
table = "user_societes"
where = "user_id IN (SELECT id FROM users WHERE email LIKE '%@test.%')"
[[test_data]]
table = "users"
where = "email LIKE '%@test.%'"
[[test_data]]
table = "clients"
where = "email LIKE '%@test.%'"
[output]
backups = "backups"
reports = "reports"
[run]
parallel = 2
"#,
        source_url(env)
    );
    let config_path = dir.join("legacy.toml");
    std::fs::write(&config_path, text).unwrap();
    let config = LegacyConfig::load(&config_path).unwrap();
    Legacy {
        dir,
        config_path,
        config,
    }
}

/// An orchestrator on the test's names, not initialised (the run does it).
async fn orchestrator(env: &TestEnv) -> Orchestrator {
    Orchestrator::connect(env.settings()).await.unwrap()
}

async fn count(env: &TestEnv, db: &str, sql: &str) -> i64 {
    env.admin_to(db)
        .await
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn pipeline_splits_the_fixture_and_verify_passes() {
    let env = TestEnv::new();
    let legacy = legacy(&env).await;
    let orchestrator = orchestrator(&env).await;
    let report = run::run(&orchestrator, &legacy.config, &run::RunOptions::default())
        .await
        .unwrap();
    assert_eq!(report.tenants, vec!["ts_01", "ts_02", "ts_03", "orphans"]);
    assert_eq!(report.users, 12);
    // + the test client; the orphans: 2 clients, 1 article, 1 order, 2 lines.
    let rows = FIXTURE.tenant_rows_per_societe() + 1;
    let db = |code: &str| format!("{}_{code}", env.prefix);
    assert_eq!(report.tenant_rows, 3 * rows + 6);
    assert_eq!(
        count(&env, &db("ts_02"), "SELECT count(*) FROM order_lines").await,
        120
    );
    assert_eq!(
        count(&env, &db("orphans"), "SELECT count(*) FROM clients").await,
        2
    );
    assert_eq!(
        count(&env, &db("orphans"), "SELECT count(*) FROM order_lines").await,
        2
    );
    // Primary keys are kept: ts_02's first client is the monolith's id 21.
    assert_eq!(
        count(
            &env,
            &db("ts_02"),
            "SELECT min(id) FROM clients WHERE code = 'C2-1'"
        )
        .await,
        21
    );
    let shared = format!("{}_shared", env.prefix);
    assert_eq!(
        count(&env, &shared, "SELECT count(*) FROM materials").await,
        9
    );
    let auth = format!("{}_auth", env.prefix);
    assert_eq!(
        count(&env, &auth, "SELECT count(*) FROM memberships").await,
        14
    );

    // Sequences were moved past the copied ids: a new row gets a fresh id.
    let client = orchestrator
        .tenant_client(&env.code("ts_01"))
        .await
        .unwrap();
    let id: i64 = client
        .query_one(
            "INSERT INTO clients (code, name, currency) VALUES ('NEW', 'New', 'EUR') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(id > 900_000_001, "{id}");
    client
        .execute("DELETE FROM clients WHERE code = 'NEW'", &[])
        .await
        .unwrap();
    drop(client);

    let verified = verify::verify(&orchestrator, &legacy.config).await.unwrap();
    assert!(verified.ok(), "{}", verified.text());
    assert_eq!(
        verified.tenant_rows,
        i64::try_from(report.tenant_rows).unwrap()
    );

    // A lost row and a dangling shared reference are reported.
    let tenant = env.admin_to(&db("ts_03")).await;
    tenant
        .batch_execute(
            "DELETE FROM order_lines WHERE id = (SELECT max(id) FROM order_lines); \
             UPDATE articles SET material_code = 'NOPE' WHERE id = (SELECT min(id) FROM articles)",
        )
        .await
        .unwrap();
    let broken = verify::verify(&orchestrator, &legacy.config).await.unwrap();
    let text = broken.text();
    assert_eq!(broken.mismatches.len(), 2, "{text}");
    assert!(
        text.contains("ts_03 order_lines: rows: expected 120, found 119"),
        "{text}"
    );
    assert!(text.contains("materials"), "{text}");
    // The CLI exits non-zero with the diff.
    let output = env
        .command()
        .args(["legacy", "verify", "--config"])
        .arg(&legacy.config_path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("expected 120, found 119"));
}

#[tokio::test]
async fn killed_run_resumes_with_the_same_rows() {
    let env = TestEnv::new();
    let legacy = legacy(&env).await;
    let status = env
        .command()
        .args(["legacy", "run", "--config"])
        .arg(&legacy.config_path)
        .env("TENANTD_LEGACY_CRASH_AFTER", "7")
        .status()
        .unwrap();
    assert!(!status.success(), "the run should have been killed");
    let orchestrator = orchestrator(&env).await;
    {
        let auth = env.admin_to(&format!("{}_auth", env.prefix)).await;
        let done: i64 = auth
            .query_one(
                "SELECT count(*) FROM legacy_progress WHERE target LIKE 'ts_%' AND rows_copied > 0",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        // The 7th copy was committed but not recorded when the process died.
        assert!(
            (1..=6).contains(&done),
            "{done} tables recorded before the crash"
        );
    }
    let report = run::run(&orchestrator, &legacy.config, &run::RunOptions::default())
        .await
        .unwrap();
    assert!(report.units_resumed > 0);
    let verified = verify::verify(&orchestrator, &legacy.config).await.unwrap();
    assert!(verified.ok(), "{}", verified.text());
    let rows = FIXTURE.tenant_rows_per_societe() + 1;
    assert_eq!(verified.tenant_rows, i64::try_from(3 * rows + 6).unwrap());
    // A third run copies nothing and changes nothing.
    let again = run::run(&orchestrator, &legacy.config, &run::RunOptions::default())
        .await
        .unwrap();
    assert_eq!(again.units_copied, 0);
    assert_eq!(again.tenant_rows, 0);
}

#[tokio::test]
async fn rollback_leaves_the_server_as_it_was() {
    let env = TestEnv::new();
    let legacy = legacy(&env).await;
    let databases = env.databases().await;
    let roles = env.roles().await;
    let monolith = format!("{}_monolith", env.prefix);
    let users = "SELECT count(*) FROM users";
    assert_eq!(count(&env, &monolith, users).await, 12);
    backup::backup(&legacy.config).await.unwrap();
    clean::clean(&legacy.config, true).await.unwrap();
    assert_eq!(count(&env, &monolith, users).await, 9);

    let orchestrator = orchestrator(&env).await;
    run::run(&orchestrator, &legacy.config, &run::RunOptions::default())
        .await
        .unwrap();
    assert!(
        verify::verify(&orchestrator, &legacy.config)
            .await
            .unwrap()
            .ok()
    );
    let plan = rollback::validate(&orchestrator, &legacy.config)
        .await
        .unwrap();
    assert_eq!(plan.tenants.len(), 4);
    assert!(plan.written_since_split.is_empty(), "{plan:?}");
    assert!(plan.restore_from.is_some());

    // A write into a tenant after the split blocks the rollback…
    let tenant = env.admin_to(&format!("{}_ts_01", env.prefix)).await;
    tenant
        .execute("UPDATE clients SET name = 'Renamed' WHERE id = 1", &[])
        .await
        .unwrap();
    drop(tenant);
    let refused = rollback::rollback(&orchestrator, &legacy.config, false)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("ts_01.clients"), "{refused}");
    // …unless forced.
    let done = rollback::rollback(&orchestrator, &legacy.config, true)
        .await
        .unwrap();
    assert!(done.done);
    assert_eq!(env.databases().await, databases);
    assert_eq!(env.roles().await, roles);
    assert_eq!(
        count(&env, &monolith, users).await,
        12,
        "source restored from the backup"
    );
}

/// Count and content checksum of the tables clean touches.
async fn fingerprint(env: &TestEnv, db: &str) -> Vec<(i64, i64)> {
    let client = env.admin_to(db).await;
    let mut out = Vec::new();
    for table in ["users", "user_societes", "clients"] {
        let sql = format!(
            "SELECT count(*), coalesce(sum(hashtext(t::text)::bigint), 0)::bigint FROM {table} t"
        );
        let row = client.query_one(&sql, &[]).await.unwrap();
        out.push((row.get::<_, i64>(0), row.get::<_, i64>(1)));
    }
    out
}

#[tokio::test]
async fn clean_archive_restores_the_deleted_rows() {
    let env = TestEnv::new();
    let legacy = legacy(&env).await;
    let monolith = format!("{}_monolith", env.prefix);
    let before = fingerprint(&env, &monolith).await;
    let dry = clean::clean(&legacy.config, false).await.unwrap();
    assert!(!dry.executed);
    assert_eq!(dry.rows.get("users"), Some(&3));
    assert_eq!(dry.rows.get("clients"), Some(&3));
    assert_eq!(
        fingerprint(&env, &monolith).await,
        before,
        "a dry run changes nothing"
    );
    let refused = clean::clean(&legacy.config, true).await.unwrap_err();
    assert!(refused.to_string().contains("backup"), "{refused}");

    let manifest = backup::backup(&legacy.config).await.unwrap();
    assert!(
        manifest
            .file
            .starts_with(legacy.dir.join("backups/pre-migration"))
    );
    assert_eq!(manifest.tables.get("users"), Some(&12));
    assert_eq!(manifest.tables.get("order_lines"), Some(&(3 * 120 + 2)));
    assert_eq!(
        backup::digest(&manifest.file).unwrap(),
        (manifest.size, manifest.sha256.clone())
    );
    assert!(manifest.toc_entries > 20, "{manifest:?}");
    assert!(manifest.file.with_extension("manifest.json").exists());
    let done = clean::clean(&legacy.config, true).await.unwrap();
    assert_eq!(done.rows.get("user_societes"), Some(&3));
    let after = fingerprint(&env, &monolith).await;
    assert_eq!(after[0].0, 9);
    assert_eq!(after[2].0, before[2].0 - 3);
    let archive = done.archive.unwrap();
    let restored = clean::restore(&legacy.config, &archive).await.unwrap();
    assert_eq!(restored.get("users"), Some(&3));
    assert_eq!(fingerprint(&env, &monolith).await, before);
}

#[tokio::test]
async fn audit_classifies_from_the_foreign_key_graph() {
    use tenantd::legacy::{Class, audit};
    let env = TestEnv::new();
    let legacy = legacy(&env).await;
    let monolith = env.admin_to(&format!("{}_monolith", env.prefix)).await;
    // An order line of société 1 selling an article of société 2.
    monolith
        .batch_execute("INSERT INTO order_lines (id, order_id, line_no, article_id, quantity, unit_price) OVERRIDING SYSTEM VALUE VALUES (999999, 1, 99, 21, 1, 1)")
        .await
        .unwrap();
    let report = audit::audit(&legacy.config).await.unwrap();
    let table = |name: &str| report.tables.iter().find(|t| t.name == name).unwrap();
    assert_eq!(table("order_lines").class, Class::Tenant);
    assert_eq!(
        table("order_lines").path.as_deref(),
        Some("order_lines.article_id → articles.societe_id → societes")
    );
    assert_eq!(table("order_lines").conflicting_rows, 1);
    assert_eq!(table("order_lines").unowned_rows, 2);
    assert_eq!(table("clients").unowned_rows, 2);
    assert_eq!(table("clients").test_rows, 3);
    assert_eq!(table("users").class, Class::Auth);
    assert_eq!(table("user_societes").class, Class::Auth);
    for shared in [
        "materials",
        "units",
        "currencies",
        "countries",
        "material_standards",
        "quality_standards",
    ] {
        assert_eq!(table(shared).class, Class::Shared, "{shared}");
    }
    assert_eq!(table("processes").class, Class::Shared, "config override");
    assert_eq!(table("app_log").class, Class::Skip);
    assert!(
        report
            .cross_database_references
            .iter()
            .any(|r| r == "articles.material_code → materials.code")
    );
    let text = report.recommendations.join("\n");
    assert!(
        text.contains("1 row(s) of order_lines refer to rows of another société"),
        "{text}"
    );
    assert!(text.contains("app_log (2 rows) is left behind"), "{text}");
    assert!(legacy.dir.join("reports/audit.json").exists());

    let output = env
        .command()
        .args(["legacy", "audit", "--json", "--config"])
        .arg(&legacy.config_path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(doc["societes"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn check_validates_before_a_run() {
    use tenantd::legacy::check;
    let env = TestEnv::new();
    let legacy = legacy(&env).await;
    let orchestrator = orchestrator(&env).await;
    let report = check::check(&orchestrator, &legacy.config).await.unwrap();
    assert!(report.ok(), "{}", report.text());
    let text = report.text();
    assert!(
        text.contains("ok   users: 12 users and 14 memberships"),
        "{text}"
    );
    assert!(text.contains("ok   tenant migrations"), "{text}");
    assert!(
        text.contains("ok   targets: 4 tenant databases to create"),
        "{text}"
    );

    // A database in the way that belongs to no run blocks it.
    let squatter = format!("{}_ts_02", env.prefix);
    env.admin()
        .await
        .batch_execute(&format!("CREATE DATABASE {squatter}"))
        .await
        .unwrap();
    let report = check::check(&orchestrator, &legacy.config).await.unwrap();
    assert!(!report.ok());
    assert!(
        report
            .text()
            .contains(&format!("FAIL targets: databases [\"{squatter}\"]")),
        "{}",
        report.text()
    );
    let status = env
        .command()
        .args(["legacy", "check", "--config"])
        .arg(&legacy.config_path)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(4));
}

#[tokio::test]
async fn baseline_migrations_carry_a_split() {
    use tenantd::legacy::baseline;
    let mut env = TestEnv::new();
    let legacy = legacy(&env).await;
    let report = baseline::baseline(&legacy.config).await.unwrap();
    assert!(report.tenant_tables.contains(&"order_lines".to_owned()));
    assert!(
        report
            .dropped_columns
            .contains(&"clients.societe_id".to_owned())
    );
    assert!(
        report
            .dropped_foreign_keys
            .iter()
            .any(|f| f.contains("articles") && f.contains("materials(code)")),
        "{:?}",
        report.dropped_foreign_keys
    );
    let tenant_sql = std::fs::read_to_string(report.dir.join("tenant/V1__baseline.sql")).unwrap();
    assert!(!tenant_sql.contains("societe_id"), "{tenant_sql}");
    assert!(tenant_sql.contains("REFERENCES orders(id)"), "{tenant_sql}");
    // The generated sets are a working deployment: split the monolith with them.
    env.set("TENANTD_MIGRATIONS_DIR", report.dir.to_str().unwrap());
    let orchestrator = orchestrator(&env).await;
    run::run(&orchestrator, &legacy.config, &run::RunOptions::default())
        .await
        .unwrap();
    let verified = verify::verify(&orchestrator, &legacy.config).await.unwrap();
    assert!(verified.ok(), "{}", verified.text());
}

#[tokio::test]
async fn check_names_postgresql_s_message_when_the_source_is_missing() {
    use tenantd::legacy::check;
    let env = TestEnv::new();
    let legacy = legacy(&env).await;
    let orchestrator = orchestrator(&env).await;
    let mut config = legacy.config.clone();
    let missing = format!("{}_no_monolith", env.prefix);
    config.source.url = source_url(&env).replace("_monolith", "_no_monolith");
    let report = check::check(&orchestrator, &config).await.unwrap();
    assert!(!report.ok());
    let text = report.text();
    assert!(text.contains("FAIL source"), "{text}");
    assert!(
        text.contains(&format!("database \"{missing}\" does not exist")),
        "{text}"
    );
    assert!(text.contains("SQLSTATE 3D000"), "{text}");
    assert!(!text.contains("db error"), "{text}");
}
