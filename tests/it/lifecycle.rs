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
    assert_eq!(first.auth_applied, vec![1, 2, 3]);
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
