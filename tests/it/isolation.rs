//! The isolation model: each tenant's role reaches its own database and
//! SHARED (read-only), never another tenant's database or AUTH; a suspended
//! tenant cannot connect at all.

use crate::common::{TestEnv, connect_config};
use tenantd::{NewTenant, Orchestrator, TenantCode};
use tokio_postgres::error::SqlState;

/// Connection settings of `code`'s own role, aimed at `database`.
async fn role_config(
    orchestrator: &Orchestrator,
    code: &TenantCode,
    database: &str,
) -> tokio_postgres::Config {
    let connection = orchestrator.tenant_connection(code).await.unwrap();
    let mut config: tokio_postgres::Config = connection.url.parse().unwrap();
    config.dbname(database);
    config
}

async fn connect_error(config: &tokio_postgres::Config) -> SqlState {
    let error = connect_config(config)
        .await
        .expect_err("connection must be refused");
    error
        .code()
        .cloned()
        .unwrap_or_else(|| panic!("no SQLSTATE in {error}"))
}

#[tokio::test]
async fn tenant_roles_are_confined_to_their_database_and_shared() {
    let env = TestEnv::new();
    let orchestrator = env.orchestrator().await;
    let (a, b) = (env.code("alpha"), env.code("beta"));
    let tenant_a = orchestrator
        .create_tenant(NewTenant::new(a.clone(), "Alpha"))
        .await
        .unwrap();
    let tenant_b = orchestrator
        .create_tenant(NewTenant::new(b.clone(), "Beta"))
        .await
        .unwrap();

    // Own database: yes.
    let own = connect_config(&role_config(&orchestrator, &a, &tenant_a.database_name).await)
        .await
        .unwrap();
    let user: String = own
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, tenant_a.database_name);

    // Another tenant's database and AUTH: no (CONNECT privilege).
    for database in [
        tenant_b.database_name.as_str(),
        &format!("{}_auth", env.prefix),
    ] {
        let state = connect_error(&role_config(&orchestrator, &a, database).await).await;
        assert_eq!(state, SqlState::INSUFFICIENT_PRIVILEGE, "{database}");
    }

    // SHARED: read, not write.
    let shared =
        connect_config(&role_config(&orchestrator, &a, &format!("{}_shared", env.prefix)).await)
            .await
            .unwrap();
    let materials: i64 = shared
        .query_one("SELECT count(*) FROM materials", &[])
        .await
        .unwrap()
        .get(0);
    assert!(materials > 0, "SHARED carries seed rows");
    let write = shared
        .execute(
            "INSERT INTO units (code, name) VALUES ('zz', 'forbidden')",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(write.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    let create = shared
        .batch_execute("CREATE TABLE intruder (id int)")
        .await
        .unwrap_err();
    assert_eq!(create.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));

    // The tenant's role has owner rights on its schema (its objects belong
    // to it, though the database is tenantd's) whichever path made it.
    let owners: Vec<String> = own
        .query(
            "SELECT DISTINCT tableowner::text FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(owners, vec![tenant_a.database_name.clone()]);
    own.batch_execute(
        "ALTER TABLE clients ADD COLUMN loyalty_tier int; CREATE INDEX ON clients (loyalty_tier)",
    )
    .await
    .expect("the tenant's role can alter its own tables");
    // ... but B's role is nobody in A's database, and neither role owns
    // its database (pg_database_owner is tenantd's admin role).
    for role in [&tenant_a.database_name, &tenant_b.database_name] {
        let owner: bool = own
            .query_one(
                "SELECT pg_has_role($1, 'pg_database_owner', 'MEMBER')",
                &[role],
            )
            .await
            .unwrap()
            .get(0);
        assert!(!owner, "{role} is not an owner of A's database");
    }
}

#[tokio::test]
async fn a_suspended_tenant_cannot_connect_and_its_sessions_end() {
    let env = TestEnv::new();
    let orchestrator = env.orchestrator().await;
    let code = env.code("gamma");
    let tenant = orchestrator
        .create_tenant(NewTenant::new(code.clone(), "Gamma"))
        .await
        .unwrap();
    let config = role_config(&orchestrator, &code, &tenant.database_name).await;
    let open = connect_config(&config).await.unwrap();

    orchestrator.suspend_tenant(&code, None).await.unwrap();
    assert_eq!(
        connect_error(&config).await,
        SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    );
    assert!(
        open.simple_query("SELECT 1").await.is_err(),
        "the open session was terminated"
    );

    orchestrator.resume_tenant(&code).await.unwrap();
    let again = connect_config(&config).await.unwrap();
    again.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn database_acl_revokes_public_and_shared_reader_is_granted() {
    let env = TestEnv::new();
    let orchestrator = env.orchestrator().await;
    let tenant = orchestrator
        .create_tenant(NewTenant::new(env.code("delta"), "Delta"))
        .await
        .unwrap();
    let admin = env.admin().await;
    let acl: String = admin
        .query_one(
            "SELECT datacl::text FROM pg_database WHERE datname = $1",
            &[&tenant.database_name],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        !acl.contains("{=") && !acl.contains(",="),
        "PUBLIC keeps no privilege: {acl}"
    );
    let member: bool = admin
        .query_one(
            "SELECT pg_has_role($1, $2, 'MEMBER')",
            &[
                &tenant.database_name,
                &format!("{}__shared_reader", env.prefix),
            ],
        )
        .await
        .unwrap()
        .get(0);
    assert!(member);
}
