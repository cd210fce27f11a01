//! Crash safety with real process death: the `tenantd` binary is made to
//! `abort()` at each step of create and drop (`TENANTD_CRASH_AT`), and the
//! reconciler must then finish or undo the interrupted work. Also: repairs of
//! drift made behind tenantd's back, and tenants whose lock is held.

use crate::common;

use std::os::unix::process::ExitStatusExt;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::common::TestEnv;
use tenantd::{NewTenant, Orchestrator, ReconcileReport, TenantCode, TenantStatus};

/// SIGABRT, what `std::process::abort()` dies of.
const SIGABRT: i32 = 6;

/// Runs `tenantd <args>` with this test's environment (plus `extra` variables).
async fn tenantd(env: &TestEnv, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let mut command = env.command();
    command.args(args).envs(extra.iter().copied());
    tokio::process::Command::from(command)
        .output()
        .await
        .expect("run tenantd")
}

/// Describes a finished run for assertion messages.
fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `tenantd <args>` with `TENANTD_CRASH_AT=<point>` and asserts that
/// the process died of `abort()` rather than exiting.
async fn run_until_crash(env: &TestEnv, args: &[&str], point: &str) {
    let output = tenantd(env, args, &[("TENANTD_CRASH_AT", point)]).await;
    assert_eq!(
        output.status.code(),
        None,
        "tenantd {args:?} with crash point {point} should have been killed by a signal: {}",
        describe(&output)
    );
    assert_eq!(
        output.status.signal(),
        Some(SIGABRT),
        "{}",
        describe(&output)
    );
}

/// Runs `tenantd reconcile --json` until no tenant is reported busy (the
/// dead process's session, which held the tenant's advisory lock, may take a
/// moment to end on the server) and returns the last report.
async fn reconcile_cli(env: &TestEnv) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let output = tenantd(env, &["reconcile", "--json"], &[]).await;
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("reconcile --json prints JSON");
        let busy = report["busy"].as_array().map_or(0, Vec::len);
        if busy == 0 || Instant::now() > deadline {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The library reconciler, retried while a dead process's lock lingers.
async fn reconcile_lib(orchestrator: &Orchestrator) -> ReconcileReport {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let report = orchestrator.reconcile().await.expect("reconcile");
        if report.busy.is_empty() || Instant::now() > deadline {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn codes(list: &[TenantCode]) -> Vec<&str> {
    list.iter().map(TenantCode::as_str).collect()
}

/// A create killed at `point` leaves a `provisioning` row and partial objects;
/// reconcile rolls everything back and the code can be used again.
async fn create_crash_is_rolled_back(point: &str, database_made: bool) {
    let env = TestEnv::new();
    let orchestrator = env.orchestrator().await;
    let code = env.code("crashy");
    let name = format!("{}_crashy", env.prefix);

    run_until_crash(
        &env,
        &["tenant", "create", "crashy", "--name", "Crashy"],
        point,
    )
    .await;
    let tenant = orchestrator.tenant(&code).await.expect("row written first");
    assert_eq!(tenant.status, TenantStatus::Provisioning);
    assert_eq!(tenant.database_name, name);
    assert!(
        env.roles().await.contains(&name),
        "role made before {point}"
    );
    assert_eq!(
        env.databases().await.contains(&name),
        database_made,
        "database existence at {point}"
    );

    let report = reconcile_cli(&env).await;
    assert_eq!(
        report["rolled_back"],
        serde_json::json!(["crashy"]),
        "{report}"
    );
    assert_eq!(report["busy"], serde_json::json!([]), "{report}");
    assert!(!env.databases().await.contains(&name));
    assert!(!env.roles().await.contains(&name));
    let failed = orchestrator.tenant(&code).await.expect("row kept");
    assert_eq!(failed.status, TenantStatus::Failed);
    let reason = failed.status_reason.unwrap_or_default();
    assert!(reason.contains("reconcile"), "status_reason: {reason:?}");
    // The dead process's `create` entry is closed too.
    let create: String = env
        .admin_to(&format!("{}_auth", env.prefix))
        .await
        .query_one(
            "SELECT status FROM operations WHERE tenant_id = $1 AND kind = 'create'",
            &[&tenant.id],
        )
        .await
        .expect("create operation")
        .get(0);
    assert_eq!(create, "failed", "{report}");

    let again = tenantd(
        &env,
        &["tenant", "create", "crashy", "--name", "Crashy", "--json"],
        &[],
    )
    .await;
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    let created: serde_json::Value = serde_json::from_slice(&again.stdout).expect("JSON");
    assert_eq!(created["status"], "active", "{created}");
    let active = orchestrator.tenant(&code).await.expect("row");
    assert_eq!(active.status, TenantStatus::Active);
    assert_ne!(active.id, tenant.id, "a new row replaces the failed one");
    assert!(env.databases().await.contains(&name));
}

#[tokio::test]
async fn create_killed_after_role_is_rolled_back_by_reconcile() {
    create_crash_is_rolled_back("after_role", false).await;
}

#[tokio::test]
async fn create_killed_after_database_is_rolled_back_by_reconcile() {
    create_crash_is_rolled_back("after_database", true).await;
}

/// A drop killed at `point` leaves a `deleting` row; reconcile completes it.
async fn drop_crash_is_completed(point: &str, database_left: bool) {
    let env = TestEnv::new();
    let orchestrator = env.orchestrator().await;
    let code = env.code("goner");
    let name = format!("{}_goner", env.prefix);
    orchestrator
        .create_tenant(NewTenant::new(code.clone(), "Goner"))
        .await
        .expect("create");

    run_until_crash(
        &env,
        &["tenant", "drop", "goner", "--confirm", "goner"],
        point,
    )
    .await;
    let tenant = orchestrator.tenant(&code).await.expect("row");
    assert_eq!(tenant.status, TenantStatus::Deleting);
    assert_eq!(env.databases().await.contains(&name), database_left);
    assert!(
        env.roles().await.contains(&name),
        "role still there at {point}"
    );

    let report = reconcile_lib(&orchestrator).await;
    assert_eq!(codes(&report.completed_drops), ["goner"], "{report:?}");
    assert!(report.busy.is_empty(), "{report:?}");
    let dropped = orchestrator.tenant(&code).await.expect("row kept");
    assert_eq!(dropped.status, TenantStatus::Deleted);
    assert!(!env.databases().await.contains(&name));
    assert!(!env.roles().await.contains(&name));
}

#[tokio::test]
async fn drop_killed_after_mark_deleting_is_completed_by_reconcile() {
    drop_crash_is_completed("after_mark_deleting", true).await;
}

#[tokio::test]
async fn drop_killed_after_drop_database_is_completed_by_reconcile() {
    drop_crash_is_completed("after_drop_database", false).await;
}

/// Whether the tenant's own role can log in with the URL tenantd hands out.
async fn can_connect(orchestrator: &Orchestrator, code: &TenantCode) -> bool {
    let connection = orchestrator
        .tenant_connection(code)
        .await
        .expect("connection settings");
    let config: tokio_postgres::Config = connection.url.parse().expect("URL");
    match common::connect_config(&config).await {
        Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    }
}

#[tokio::test]
async fn reconcile_matches_login_flag_to_status() {
    let env = TestEnv::new();
    let orchestrator = env.orchestrator().await;
    let (active, suspended) = (env.code("halfsusp"), env.code("halfres"));
    for code in [&active, &suspended] {
        orchestrator
            .create_tenant(NewTenant::new(code.clone(), "Half"))
            .await
            .expect("create");
    }
    orchestrator
        .suspend_tenant(&suspended, None)
        .await
        .expect("suspend");
    // A suspend that died after its role change, and a resume that died
    // after its role change: role and catalog disagree.
    let admin = env.admin().await;
    admin
        .batch_execute(&format!(
            "ALTER ROLE \"{p}_halfsusp\" NOLOGIN; ALTER ROLE \"{p}_halfres\" LOGIN",
            p = env.prefix
        ))
        .await
        .expect("alter roles");
    assert!(!can_connect(&orchestrator, &active).await);

    let report = orchestrator.reconcile().await.expect("reconcile");
    let mut fixed = codes(&report.login_fixed);
    fixed.sort_unstable();
    assert_eq!(fixed, ["halfres", "halfsusp"], "{report:?}");
    assert!(report.missing_database.is_empty(), "{report:?}");
    assert!(can_connect(&orchestrator, &active).await);
    assert!(!can_connect(&orchestrator, &suspended).await);
    let row = orchestrator.tenant(&active).await.expect("row");
    assert_eq!(row.status, TenantStatus::Active);
    let clean = orchestrator.reconcile().await.expect("reconcile");
    assert!(clean.is_clean(), "second pass finds nothing: {clean:?}");
}

#[tokio::test]
async fn reconcile_marks_a_tenant_without_database_failed() {
    let env = TestEnv::new();
    let orchestrator = env.orchestrator().await;
    let code = env.code("vanished");
    orchestrator
        .create_tenant(NewTenant::new(code.clone(), "Vanished"))
        .await
        .expect("create");
    let admin = env.admin().await;
    admin
        .batch_execute(&format!(
            "DROP DATABASE \"{}_vanished\" WITH (FORCE)",
            env.prefix
        ))
        .await
        .expect("drop behind tenantd's back");

    let report = orchestrator.reconcile().await.expect("reconcile");
    assert_eq!(codes(&report.missing_database), ["vanished"], "{report:?}");
    let row = orchestrator.tenant(&code).await.expect("row");
    assert_eq!(row.status, TenantStatus::Failed);
    let reason = row.status_reason.unwrap_or_default();
    assert!(reason.contains("reconcile"), "status_reason: {reason:?}");
    let err = orchestrator
        .tenant_client(&code)
        .await
        .expect_err("a failed tenant takes no connections");
    assert_eq!(err.kind(), tenantd::ErrorKind::Conflict, "{err}");
}

#[tokio::test]
async fn reconcile_leaves_a_locked_tenant_alone() {
    let env = TestEnv::new();
    let orchestrator = env.orchestrator().await;
    let code = env.code("locked");
    orchestrator
        .create_tenant(NewTenant::new(code.clone(), "Locked"))
        .await
        .expect("create");
    env.admin()
        .await
        .batch_execute(&format!("ALTER ROLE \"{}_locked\" NOLOGIN", env.prefix))
        .await
        .expect("alter role");
    // Another tenantd process at work on this tenant: it holds the tenant's
    // life-cycle lock (class 0x7E4A_0001, key hashtext(code), in AUTH).
    let lock = env.admin_to(&format!("{}_auth", env.prefix)).await;
    lock.execute(
        "SELECT pg_advisory_lock(x'7E4A0001'::int, hashtext($1))",
        &[&code.as_str()],
    )
    .await
    .expect("take the tenant's lock");

    let report = orchestrator.reconcile().await.expect("reconcile");
    assert_eq!(codes(&report.busy), ["locked"], "{report:?}");
    assert!(report.login_fixed.is_empty(), "{report:?}");
    assert!(!can_connect(&orchestrator, &code).await, "left alone");

    lock.execute(
        "SELECT pg_advisory_unlock(x'7E4A0001'::int, hashtext($1))",
        &[&code.as_str()],
    )
    .await
    .expect("release the tenant's lock");
    let report = orchestrator.reconcile().await.expect("reconcile");
    assert_eq!(codes(&report.login_fixed), ["locked"], "{report:?}");
    assert!(report.busy.is_empty(), "{report:?}");
    assert!(can_connect(&orchestrator, &code).await);
}

#[tokio::test]
async fn reconcile_of_a_missing_database_frees_the_code() {
    let env = TestEnv::new();
    let orchestrator = env.orchestrator().await;
    let code = env.code("vanished");
    let name = format!("{}_vanished", env.prefix);
    orchestrator
        .create_tenant(NewTenant::new(code.clone(), "Vanished"))
        .await
        .expect("create");
    env.admin()
        .await
        .batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .await
        .expect("drop behind tenantd's back");
    let report = orchestrator.reconcile().await.expect("reconcile");
    assert_eq!(codes(&report.missing_database), ["vanished"], "{report:?}");
    assert!(
        !env.roles().await.contains(&name),
        "the failed tenant's role is left behind"
    );
    let again = orchestrator
        .create_tenant(NewTenant::new(code.clone(), "Vanished"))
        .await
        .expect("the code of a failed tenant can be reused");
    assert_eq!(again.status, TenantStatus::Active);
}
