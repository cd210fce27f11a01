//! A hostile tenant: whatever SQL its own role runs — directly with its
//! `/connection` password, or through a plpgsql function running `EXECUTE`
//! (which the `/v1/sql` gate cannot see) — it cannot change what tenantd
//! relies on: PostgreSQL refuses it, or `reconcile` puts it back. Drop,
//! reconcile and serve keep working whatever state a tenant is left in;
//! rotating a tenant's password retires the old one.

use crate::common::{TestEnv, connect_config};
use crate::http_support::TestServer;
use reqwest::{Method, StatusCode};
use tenantd::{NewTenant, Orchestrator, Tenant, TenantCode};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config};

/// Connection settings of the tenant's own role (its `/connection` URL).
async fn own_config(orchestrator: &Orchestrator, code: &TenantCode) -> Config {
    let connection = orchestrator.tenant_connection(code).await.unwrap();
    connection.url.parse().unwrap()
}

/// A session as the tenant's own role, with `public.run(sql)`: a function
/// that runs any statement with `EXECUTE`.
async fn hostile_session(orchestrator: &Orchestrator, code: &TenantCode) -> Client {
    let client = connect_config(&own_config(orchestrator, code).await)
        .await
        .unwrap();
    client
        .batch_execute(
            "CREATE OR REPLACE FUNCTION public.run(statement text) RETURNS void \
             LANGUAGE plpgsql AS $$ BEGIN EXECUTE statement; END $$",
        )
        .await
        .expect("the tenant may create functions in its own schema");
    client
}

/// Runs `sql` as the tenant, directly or through `public.run`.
async fn attack(client: &Client, sql: &str, through_function: bool) -> Result<(), SqlState> {
    let outcome = match through_function {
        false => client.batch_execute(sql).await,
        true => client
            .execute("SELECT public.run($1)", &[&sql])
            .await
            .map(|_| ()),
    };
    outcome.map_err(|e| e.code().cloned().unwrap_or(SqlState::INTERNAL_ERROR))
}

/// Whether the role's stored verifier accepts the password of `config`
/// (the test server may trust local connections, so a login proves nothing).
async fn password_accepted(env: &TestEnv, config: &Config) -> bool {
    let role = config.get_user().unwrap();
    let verifier: Option<String> = env
        .admin()
        .await
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&role],
        )
        .await
        .unwrap()
        .get(0);
    let password = String::from_utf8(config.get_password().unwrap().to_vec()).unwrap();
    tenantd::verifier_matches(verifier.as_deref(), role, &password)
}

/// Whether the server checks passwords at login (a wrong one is refused).
async fn server_checks_passwords(config: &Config) -> bool {
    let mut wrong = config.clone();
    wrong.password("certainly not the password");
    connect_config(&wrong).await.is_err()
}

/// What tenantd relies on, as the server has it now.
async fn facts(env: &TestEnv, tenant: &Tenant) -> String {
    env.admin()
        .await
        .query_one(
            "SELECT format('template=%s allowconn=%s dblimit=%s owner_is_tenant=%s dbsettings=%s \
                            rolelimit=%s rolesettings=%s powers=%s', \
                    d.datistemplate, d.datallowconn, d.datconnlimit, \
                    d.datdba = r.oid, \
                    (SELECT count(*) FROM pg_db_role_setting s WHERE s.setdatabase = d.oid), \
                    r.rolconnlimit, \
                    (SELECT count(*) FROM pg_db_role_setting s WHERE s.setrole = r.oid), \
                    r.rolsuper OR r.rolcreatedb OR r.rolcreaterole OR r.rolreplication OR r.rolbypassrls) \
               FROM pg_database d, pg_roles r WHERE d.datname = $1 AND r.rolname = $1",
            &[&tenant.database_name],
        )
        .await
        .expect("the tenant's database and role exist")
        .get(0)
}

#[tokio::test]
async fn the_tenant_cannot_alter_its_database_or_raise_its_role_limits() {
    let mut env = TestEnv::new();
    env.set("TENANTD_TENANT_ROLE_CONNECTION_LIMIT", "12");
    let orchestrator = env.orchestrator().await;
    let code = env.code("mallory");
    let tenant = orchestrator
        .create_tenant(NewTenant::new(code.clone(), "Mallory"))
        .await
        .unwrap();
    let before = facts(&env, &tenant).await;
    assert_eq!(
        before,
        "template=f allowconn=t dblimit=-1 owner_is_tenant=f dbsettings=0 \
         rolelimit=12 rolesettings=0 powers=f"
    );
    let db = tenantd::quote_ident(&tenant.database_name);
    let attacks = [
        format!("ALTER DATABASE {db} WITH IS_TEMPLATE true"),
        format!("ALTER DATABASE {db} WITH ALLOW_CONNECTIONS false"),
        format!("ALTER DATABASE {db} WITH CONNECTION LIMIT 1"),
        format!("ALTER DATABASE {db} SET work_mem = '1GB'"),
        format!(
            "ALTER DATABASE {db} RENAME TO {}",
            tenantd::quote_ident("stolen_name")
        ),
        format!("ALTER DATABASE {db} OWNER TO CURRENT_USER"),
        "ALTER ROLE CURRENT_USER CONNECTION LIMIT -1".to_owned(),
        "ALTER ROLE CURRENT_USER CREATEDB".to_owned(),
        "ALTER ROLE CURRENT_USER BYPASSRLS".to_owned(),
    ];
    let client = hostile_session(&orchestrator, &code).await;
    for through_function in [false, true] {
        for sql in &attacks {
            let refused = attack(&client, sql, through_function).await;
            assert_eq!(
                refused,
                Err(SqlState::INSUFFICIENT_PRIVILEGE),
                "{sql} (through a function: {through_function})"
            );
        }
    }
    assert_eq!(facts(&env, &tenant).await, before);
    // Its own objects stay its own.
    client
        .batch_execute(
            "CREATE SCHEMA mine; CREATE TABLE mine.t (id int); DROP TABLE clients CASCADE",
        )
        .await
        .expect("the tenant keeps full rights on its schema");
}

#[tokio::test]
async fn a_password_or_role_settings_the_tenant_changes_are_put_back_by_reconcile() {
    let env = TestEnv::new();
    let orchestrator = env.orchestrator().await;
    let code = env.code("eve");
    let tenant = orchestrator
        .create_tenant(NewTenant::new(code.clone(), "Eve"))
        .await
        .unwrap();
    let before = facts(&env, &tenant).await;
    let client = hostile_session(&orchestrator, &code).await;
    // PostgreSQL lets every role change these of its own.
    attack(
        &client,
        "ALTER ROLE CURRENT_USER PASSWORD 'mine now'",
        false,
    )
    .await
    .unwrap();
    attack(
        &client,
        "ALTER ROLE CURRENT_USER SET search_path = 'evil'",
        true,
    )
    .await
    .unwrap();
    let db = tenantd::quote_ident(&tenant.database_name);
    let in_db = format!("ALTER ROLE CURRENT_USER IN DATABASE {db} SET statement_timeout = 0");
    let _ = attack(&client, &in_db, true).await;
    let derived = own_config(&orchestrator, &code).await;
    assert!(
        !password_accepted(&env, &derived).await,
        "the derived password no longer works"
    );

    let report = orchestrator.reconcile().await.unwrap();
    let repaired = report
        .drift_repaired
        .iter()
        .find(|d| d.code == code)
        .unwrap_or_else(|| panic!("{report:?}"));
    assert!(
        repaired.repaired.contains(&"role password".to_owned())
            && repaired
                .repaired
                .contains(&"role-level settings".to_owned()),
        "{report:?}"
    );
    assert!(report.broken.is_empty(), "{report:?}");
    assert_eq!(facts(&env, &tenant).await, before);
    assert!(
        password_accepted(&env, &derived).await,
        "the derived password works again"
    );
    connect_config(&derived).await.unwrap();
    let pooled = orchestrator.tenant_client(&code).await.unwrap();
    pooled.simple_query("SELECT 1").await.unwrap();
    // A second pass finds nothing.
    let again = orchestrator.reconcile().await.unwrap();
    assert!(again.is_clean(), "{again:?}");
}

#[tokio::test]
async fn a_sealed_tenant_database_is_still_dropped_and_reconcile_and_serve_go_on() {
    let mut env = TestEnv::new();
    env.set("TENANTD_LISTEN", "127.0.0.1:0");
    let orchestrator = env.orchestrator().await;
    // The tenant tries to seal its database itself (refused now; on a
    // tenantd where it owned the database, this blocked drop and serve).
    let (own, sealed, fine) = (env.code("own"), env.code("sealed"), env.code("fine"));
    for code in [&own, &sealed, &fine] {
        orchestrator
            .create_tenant(NewTenant::new(code.clone(), "Sealer"))
            .await
            .unwrap();
    }
    let client = hostile_session(&orchestrator, &own).await;
    let own_db = orchestrator.tenant(&own).await.unwrap().database_name;
    let seal = format!(
        "ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
        tenantd::quote_ident(&own_db)
    );
    let _ = attack(&client, &seal, true).await;
    drop(client);
    // A database sealed all the same (by hand, or by a tenant of an older
    // tenantd that owned its database).
    let sealed_db = orchestrator.tenant(&sealed).await.unwrap().database_name;
    env.admin()
        .await
        .batch_execute(&format!(
            "ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false CONNECTION LIMIT 1",
            tenantd::quote_ident(&sealed_db)
        ))
        .await
        .unwrap();
    orchestrator.drop_tenant(&own).await.expect("drop of own");
    let report = orchestrator.reconcile().await.expect("reconcile goes on");
    assert!(
        report.drift_repaired.iter().any(|d| d.code == sealed),
        "{report:?}"
    );
    assert!(report.broken.is_empty(), "{report:?}");
    env.admin()
        .await
        .batch_execute(&format!(
            "ALTER DATABASE {} WITH IS_TEMPLATE true",
            tenantd::quote_ident(&sealed_db)
        ))
        .await
        .unwrap();
    orchestrator
        .drop_tenant(&sealed)
        .await
        .expect("a sealed database is unsealed, then dropped");
    assert!(!env.databases().await.contains(&sealed_db));
    let app = tenantd::http::Application::build(env.settings())
        .await
        .expect("serve starts");
    drop(app);
    let pooled = orchestrator.tenant_client(&fine).await.unwrap();
    pooled.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn reconcile_reports_a_tenant_it_cannot_repair_and_repairs_the_others() {
    let mut env = TestEnv::new();
    env.set("TENANTD_LISTEN", "127.0.0.1:0");
    let orchestrator = env.orchestrator().await;
    let (stuck, drifted) = (env.code("stuck"), env.code("drifted"));
    for code in [&stuck, &drifted] {
        orchestrator
            .create_tenant(NewTenant::new(code.clone(), "Broken"))
            .await
            .unwrap();
    }
    // The stuck tenant's role owns an object elsewhere: its role cannot
    // be dropped, so its drop stops half-way (`deleting`).
    let stuck_role = orchestrator.tenant(&stuck).await.unwrap().database_name;
    let foreign = format!("{}_foreign", env.prefix);
    let admin = env.admin().await;
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {}",
            tenantd::quote_ident(&foreign)
        ))
        .await
        .unwrap();
    env.admin_to(&foreign)
        .await
        .batch_execute(&format!(
            "CREATE TABLE hostage (id int); ALTER TABLE hostage OWNER TO {}",
            tenantd::quote_ident(&stuck_role)
        ))
        .await
        .unwrap();
    orchestrator
        .drop_tenant(&stuck)
        .await
        .expect_err("the role cannot be dropped");
    let client = hostile_session(&orchestrator, &drifted).await;
    attack(&client, "ALTER ROLE CURRENT_USER PASSWORD 'mine'", true)
        .await
        .unwrap();

    let report = orchestrator.reconcile().await.expect("reconcile goes on");
    assert_eq!(
        report.broken.iter().map(|b| &b.code).collect::<Vec<_>>(),
        vec![&stuck],
        "{report:?}"
    );
    assert!(
        report.broken[0].error.contains("depend"),
        "PostgreSQL's message: {report:?}"
    );
    assert!(
        report.drift_repaired.iter().any(|d| d.code == drifted),
        "{report:?}"
    );
    // The CLI lists it and exits 1.
    let output = env.command().arg("reconcile").output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(text.contains(stuck.as_str()), "{text}");
    // serve starts anyway.
    let app = tenantd::http::Application::build(env.settings())
        .await
        .expect("serve starts with a broken tenant");
    drop(app);
}

#[tokio::test]
async fn a_database_made_by_an_older_tenantd_is_adopted() {
    let env = TestEnv::new();
    let orchestrator = env.orchestrator().await;
    let code = env.code("legacy");
    let tenant = orchestrator
        .create_tenant(NewTenant::new(code.clone(), "Legacy"))
        .await
        .unwrap();
    let before = facts(&env, &tenant).await;
    // The former scheme: the database was the tenant's, its objects
    // pg_database_owner's.
    let (db, role) = (
        tenantd::quote_ident(&tenant.database_name),
        tenantd::quote_ident(tenant.role_name()),
    );
    env.admin()
        .await
        .batch_execute(&format!("ALTER DATABASE {db} OWNER TO {role}"))
        .await
        .unwrap();
    env.admin_to(&tenant.database_name)
        .await
        .batch_execute(
            "ALTER SCHEMA public OWNER TO pg_database_owner; \
             ALTER TABLE clients OWNER TO pg_database_owner; \
             ALTER TABLE refinery_schema_history OWNER TO pg_database_owner",
        )
        .await
        .unwrap();
    let report = orchestrator.reconcile().await.unwrap();
    assert!(
        report.drift_repaired.iter().any(|d| d.code == code),
        "{report:?}"
    );
    assert_eq!(facts(&env, &tenant).await, before);
    let owners: Vec<String> = env
        .admin_to(&tenant.database_name)
        .await
        .query(
            "SELECT DISTINCT pg_get_userbyid(relowner)::text FROM pg_class \
              WHERE relnamespace = 'public'::regnamespace \
             UNION SELECT pg_get_userbyid(nspowner)::text FROM pg_namespace WHERE nspname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(owners, vec![tenant.database_name.clone()]);
    let own = orchestrator.tenant_client(&code).await.unwrap();
    own.batch_execute(
        "ALTER TABLE clients ADD COLUMN still_mine int; SELECT count(*) FROM clients",
    )
    .await
    .expect("the tenant owns its tables again");
}

#[tokio::test]
async fn rotating_the_password_retires_the_old_one_and_the_pool_reconnects() {
    let server = TestServer::start().await;
    let orchestrator = &server.orchestrator;
    let code = server.env.code("rotor");
    server.create_tenant(code.as_str(), "pro").await;
    let old = own_config(orchestrator, &code).await;
    let old_session = connect_config(&old).await.unwrap();
    let pooled = orchestrator.tenant_client(&code).await.unwrap();
    pooled.simple_query("SELECT 1").await.unwrap();
    drop(pooled);

    let rotated = orchestrator.rotate_tenant_password(&code).await.unwrap();
    assert_eq!(rotated.password_generation, 1);
    assert!(
        old_session.simple_query("SELECT 1").await.is_err(),
        "the old password's session was ended"
    );
    assert!(
        !password_accepted(&server.env, &old).await,
        "old password refused"
    );
    if server_checks_passwords(&old).await {
        let refused = connect_config(&old)
            .await
            .expect_err("old password refused");
        assert_eq!(refused.code(), Some(&SqlState::INVALID_PASSWORD));
    }
    let new = own_config(orchestrator, &code).await;
    assert_ne!(new.get_password(), old.get_password());
    assert!(
        password_accepted(&server.env, &new).await,
        "the new password works"
    );
    connect_config(&new).await.expect("the new password works");
    let pooled = orchestrator.tenant_client(&code).await.unwrap();
    pooled
        .simple_query("SELECT 1")
        .await
        .expect("the pool serves");
    drop(pooled);

    // Over HTTP (admin only) and the CLI, audited.
    let path = format!("/v1/tenants/{code}/rotate-password");
    let (status, body) = server.admin(Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["password_generation"], 2, "{body}");
    let output = server
        .env
        .command()
        .args(["tenant", "rotate-password", code.as_str(), "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let cli: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(cli["password_generation"], 3, "{cli}");
    let unknown = server
        .admin(
            Method::POST,
            "/v1/tenants/nobody_here/rotate-password",
            None,
        )
        .await;
    assert_eq!(unknown.0, StatusCode::NOT_FOUND);
    let audited: i64 = server
        .env
        .admin_to(&format!("{}_auth", server.env.prefix))
        .await
        .query_one(
            "SELECT count(*) FROM operations WHERE kind = 'rotate_password' AND status = 'succeeded'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 3);
    // The CLI's rotation reaches the server's process by notification.
    let mut served = false;
    for _ in 0..50 {
        if let Ok(pooled) = orchestrator.tenant_client(&code).await {
            served = pooled.simple_query("SELECT 1").await.is_ok();
        }
        if served {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        served,
        "the pool serves after a rotation by another process"
    );
    let report = orchestrator.reconcile().await.unwrap();
    assert!(report.drift_repaired.is_empty(), "{report:?}");
}

#[tokio::test]
async fn init_names_the_databases_open_to_every_role() {
    let env = TestEnv::new();
    let orchestrator = env.orchestrator().await;
    let report = orchestrator.init().await.unwrap();
    let expected: Vec<String> = env
        .admin()
        .await
        .query(
            "SELECT datname::text FROM pg_database WHERE datallowconn \
               AND has_database_privilege('public', oid, 'CONNECT') \
               AND NOT starts_with(datname, $1) ORDER BY 1",
            &[&format!("{}_", env.prefix)],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Other tests create and drop databases meanwhile: compare the stable ones.
    let stable = |list: &[String]| -> Vec<String> {
        list.iter()
            .filter(|d| !d.starts_with("tdt_"))
            .cloned()
            .collect()
    };
    assert_eq!(stable(&report.open_to_public), stable(&expected));
    if let Some(revoke) = report.revoke_statement() {
        for db in &report.open_to_public {
            assert!(
                revoke.contains(&format!("ON DATABASE \"{db}\" FROM PUBLIC")),
                "{revoke}"
            );
        }
    }
    // tenantd's own databases are never open.
    assert!(
        report
            .open_to_public
            .iter()
            .all(|d| !d.starts_with(&env.prefix))
    );
}
