//! The tenant life cycle through the library API: init, create, suspend,
//! resume, drop, and the catalog's record of each step.

use crate::common::TestEnv;
use tenantd::{ErrorKind, NewTenant, TenantFilter, TenantStatus};

#[tokio::test]
async fn init_is_idempotent() {
    let env = TestEnv::new();
    let orchestrator = tenantd::Orchestrator::connect(env.settings())
        .await
        .unwrap();
    let first = orchestrator.init().await.unwrap();
    assert_eq!(
        first.created_databases,
        vec![
            format!("{}_auth", env.prefix),
            format!("{}_shared", env.prefix)
        ]
    );
    assert_eq!(first.auth_applied, vec![1, 2, 3, 4]);
    assert_eq!(first.shared_applied, vec![1]);
    assert!(first.template_built);
    assert!(!first.changed_nothing());
    let second = orchestrator.init().await.unwrap();
    assert!(second.changed_nothing(), "{second:?}");
    assert_eq!(second.template, first.template);
}

#[tokio::test]
async fn create_suspend_resume_drop() {
    let env = TestEnv::new();
    let orchestrator = env.orchestrator().await;
    let code = env.code("acme");
    let tenant = orchestrator
        .create_tenant(NewTenant::new(code.clone(), "Acme"))
        .await
        .unwrap();
    assert_eq!(tenant.status, TenantStatus::Active);
    assert_eq!(tenant.schema_version, Some(1));
    assert_eq!(tenant.database_name, format!("{}_acme", env.prefix));
    assert!(env.databases().await.contains(&tenant.database_name));

    let client = orchestrator.tenant_client(&code).await.unwrap();
    client
        .execute(
            "INSERT INTO clients (code, name, currency) VALUES ('C1', 'First', 'EUR')",
            &[],
        )
        .await
        .unwrap();
    drop(client);

    let suspended = orchestrator
        .suspend_tenant(&code, Some("unpaid"))
        .await
        .unwrap();
    assert_eq!(suspended.status, TenantStatus::Suspended);
    assert_eq!(suspended.status_reason.as_deref(), Some("unpaid"));
    let refused = orchestrator.tenant_client(&code).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Conflict, "{refused}");

    let resumed = orchestrator.resume_tenant(&code).await.unwrap();
    assert_eq!(resumed.status, TenantStatus::Active);
    let client = orchestrator.tenant_client(&code).await.unwrap();
    let row = client
        .query_one("SELECT count(*) FROM clients", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    drop(client);

    let dropped = orchestrator.drop_tenant(&code).await.unwrap();
    assert_eq!(dropped.status, TenantStatus::Deleted);
    assert!(!env.databases().await.contains(&tenant.database_name));
    assert!(!env.roles().await.contains(&tenant.database_name));
    let shown = orchestrator.tenant(&code).await.unwrap();
    assert_eq!(
        shown.status,
        TenantStatus::Deleted,
        "the row stays for the audit trail"
    );
    let live = orchestrator
        .tenants(&TenantFilter::default())
        .await
        .unwrap();
    assert!(live.is_empty());
    let all = orchestrator
        .tenants(&TenantFilter {
            include_gone: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
}

/// A connection lost in the middle of a life-cycle statement is a
/// retryable `Unavailable` (exit 5, HTTP 503), not an internal error.
#[tokio::test]
async fn a_connection_lost_mid_statement_is_unavailable() {
    let env = TestEnv::new();
    let orchestrator = env.orchestrator().await;
    let code = env.code("lost");
    orchestrator
        .create_tenant(NewTenant::new(code.clone(), "Lost"))
        .await
        .unwrap();
    let role = format!("{}_lost", env.prefix);
    // Hold the role's catalog row, so tenantd's ALTER ROLE waits on it.
    let mut blocker = env.admin().await;
    let holding = blocker.transaction().await.unwrap();
    holding
        .batch_execute(&format!("ALTER ROLE \"{role}\" CONNECTION LIMIT 5"))
        .await
        .unwrap();
    let suspend = tokio::spawn({
        let orchestrator = orchestrator.clone();
        let code = code.clone();
        async move { orchestrator.suspend_tenant(&code, None).await }
    });
    let admin = env.admin().await;
    let waiting = wait_for_lock_waiter(&admin, &role).await;
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&waiting])
        .await
        .unwrap();
    let result = suspend.await.unwrap();
    holding.rollback().await.unwrap();
    let err = result.expect_err("its connection was lost");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

/// The pid of the backend waiting on a lock while running a statement that
/// names `role`.
async fn wait_for_lock_waiter(admin: &tokio_postgres::Client, role: &str) -> i32 {
    for _ in 0..200 {
        let row = admin
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                 AND strpos(query, $1) > 0 AND pid <> pg_backend_pid() LIMIT 1",
                &[&role],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            return row.get(0);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no statement on {role} ever waited for its lock");
}
