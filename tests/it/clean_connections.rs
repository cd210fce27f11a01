//! Nothing a request does outlives it on a pooled connection: every test
//! runs with one connection per tenant, leaves state in the session through
//! a function the tenant wrote (which no statement filter sees), and checks
//! that the next request on that same connection finds a new session.

use crate::common::TestEnv;
use crate::http_support::TestServer;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tenantd::NewTenant;

/// A function that leaves every kind of session state behind. Keywords are
/// built at run time so that the `/v1/sql` guard sees only a CREATE.
const LITTER: &str = "CREATE FUNCTION litter() RETURNS int LANGUAGE plpgsql AS $$ \
    DECLARE reader text; \
    BEGIN \
      SELECT r.rolname INTO reader FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid \
        WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = current_user) LIMIT 1; \
      EXECUTE format('SELECT pg_catalog.%I(%L, %L, false)', 'set_' || 'config', 'search_path', 'pg_temp, public'); \
      EXECUTE format('SELECT pg_catalog.%I(%L, %L, false)', 'set_' || 'config', 'application_name', 'littered'); \
      EXECUTE format('SELECT pg_catalog.%I(%L, %L, false)', 'set_' || 'config', 'work_mem', '77MB'); \
      EXECUTE 'CREATE TEMP TABLE leftover (x int)'; \
      EXECUTE format('SELECT pg_catalog.%I(4242)', 'pg_advisory_' || 'lock'); \
      EXECUTE 'LIS' || 'TEN littered_channel'; \
      EXECUTE 'DECLARE held CURSOR WITH HOLD FOR SELECT 1'; \
      EXECUTE format('SET ROLE %I', reader); \
      RETURN pg_backend_pid(); \
    END $$";

/// What the session looks like: (pid, current_user = session_user,
/// search_path, application_name, work_mem, temp tables, advisory locks,
/// channels, cursors).
const INSPECT: &str = "SELECT pg_backend_pid(), current_user = session_user, \
    current_setting('search_path'), current_setting('application_name'), current_setting('work_mem'), \
    (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema())::int, \
    (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())::int, \
    (SELECT count(*) FROM pg_listening_channels())::int, \
    (SELECT count(*) FROM pg_cursors)::int";

async fn inspect(server: &TestServer, key: &str) -> Value {
    let (status, body) = server.sql(key, INSPECT, json!([])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["rows"][0].clone()
}

#[tokio::test]
async fn what_a_request_leaves_in_the_session_is_gone_for_the_next_one() {
    let server = TestServer::start_with(&[("TENANTD_TENANT_MAX_CONNECTIONS", "1")]).await;
    server.create_tenant("litterer", "pro").await;
    let key = server.tenant_key("litterer").await;
    let before = inspect(&server, &key).await;

    let (status, body) = server.sql(&key, LITTER, json!([])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server.sql(&key, "SELECT litter()", json!([])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["rows"][0][0], before[0],
        "one connection: the same session throughout"
    );

    // LISTEN, held cursors and temporary objects close the connection; the
    // rest is reset on it. Either way the next request finds a new session.
    let after = inspect(&server, &key).await;
    assert_eq!(
        after.as_array().map(|values| &values[1..]),
        before.as_array().map(|values| &values[1..]),
        "role, search_path, application_name, work_mem, temp tables, advisory locks, \
         LISTEN channels and cursors must be as before the request"
    );
    server.stop().await;
}

#[tokio::test]
async fn settings_role_and_advisory_locks_are_reset_on_the_same_connection() {
    let server = TestServer::start_with(&[("TENANTD_TENANT_MAX_CONNECTIONS", "1")]).await;
    server.create_tenant("resetter", "pro").await;
    let key = server.tenant_key("resetter").await;
    let before = inspect(&server, &key).await;
    let (status, body) = server.sql(&key, CHANGE_SETTINGS, json!([])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server
        .sql(&key, "SELECT change_settings()", json!([]))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let after = inspect(&server, &key).await;
    assert_eq!(
        after, before,
        "pid (the connection is kept), role, search_path, application_name, work_mem and \
         advisory locks must be as before the request"
    );
    server.stop().await;
}

/// A function that changes only what the reset behind every request undoes
/// on the connection itself: settings, the role, advisory locks.
const CHANGE_SETTINGS: &str = "CREATE FUNCTION change_settings() RETURNS int LANGUAGE plpgsql AS $$ \
    DECLARE reader text; \
    BEGIN \
      SELECT r.rolname INTO reader FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid \
        WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = current_user) LIMIT 1; \
      EXECUTE format('SELECT pg_catalog.%I(%L, %L, false)', 'set_' || 'config', 'search_path', 'pg_temp, public'); \
      EXECUTE format('SELECT pg_catalog.%I(%L, %L, false)', 'set_' || 'config', 'application_name', 'changed'); \
      EXECUTE format('SELECT pg_catalog.%I(%L, %L, false)', 'set_' || 'config', 'work_mem', '77MB'); \
      EXECUTE format('SELECT pg_catalog.%I(4242)', 'pg_advisory_' || 'lock'); \
      EXECUTE format('SET ROLE %I', reader); \
      RETURN pg_backend_pid(); \
    END $$";

#[tokio::test]
async fn statements_prepared_in_sql_do_not_reach_the_next_request() {
    let server = TestServer::start_with(&[("TENANTD_TENANT_MAX_CONNECTIONS", "1")]).await;
    server.create_tenant("preparer", "pro").await;
    let key = server.tenant_key("preparer").await;
    let (status, body) = server
        .sql(
            &key,
            "CREATE FUNCTION prep() RETURNS int LANGUAGE plpgsql AS $$ \
             BEGIN EXECUTE 'PRE' || 'PARE leftover_plan AS SELECT 1'; RETURN 1; END $$",
            json!([]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for _ in 0..2 {
        // Twice: the second PREPARE would fail if the first one survived.
        let (status, body) = server.sql(&key, "SELECT prep()", json!([])).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = server
            .sql(
                &key,
                "SELECT count(*)::int FROM pg_prepared_statements WHERE from_sql",
                json!([]),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["rows"][0][0], 0, "a SQL-prepared statement survived");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_role_default_set_by_the_tenant_does_not_lift_the_statement_timeout() {
    let server = TestServer::start_with(&[
        ("TENANTD_TENANT_MAX_CONNECTIONS", "1"),
        ("TENANTD_SQL_TIMEOUT_MS", "300"),
    ])
    .await;
    server.create_tenant("defaults", "pro").await;
    let key = server.tenant_key("defaults").await;
    let (status, body) = server
        .sql(
            &key,
            "CREATE FUNCTION unlimit() RETURNS int LANGUAGE plpgsql AS $$ BEGIN \
             BEGIN EXECUTE format('ALTER ROLE %I SET statement_timeout = 0', current_user); \
             EXCEPTION WHEN insufficient_privilege THEN NULL; END; \
             BEGIN EXECUTE format('ALTER DATABASE %I SET statement_timeout = 0', current_database()); \
             EXCEPTION WHEN insufficient_privilege THEN NULL; END; \
             RETURN 1; END $$",
            json!([]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server.sql(&key, "SELECT unlimit()", json!([])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A new session picks role and database defaults up: end this one.
    let _ = server
        .sql(
            &key,
            "SELECT pg_terminate_backend(pg_backend_pid())",
            json!([]),
        )
        .await;
    let mut timeout = Value::Null;
    for _ in 0..20 {
        let (status, body) = server
            .sql(
                &key,
                "SELECT current_setting('statement_timeout')",
                json!([]),
            )
            .await;
        if status == StatusCode::OK {
            timeout = body["rows"][0][0].clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(timeout, json!("300ms"), "a new session's timeout");
    let (status, body) = server
        .sql(&key, "SELECT pg_sleep(2)::text", json!([]))
        .await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn a_library_client_s_session_is_reset_before_the_next_checkout() {
    let mut env = TestEnv::new();
    env.set("TENANTD_TENANT_MAX_CONNECTIONS", "1")
        .set("TENANTD_SQL_TIMEOUT_MS", "400");
    let orchestrator = env.orchestrator().await;
    let code = env.code("library");
    orchestrator
        .create_tenant(NewTenant::new(code.clone(), "Library user"))
        .await
        .unwrap();
    let client = orchestrator.tenant_client(&code).await.unwrap();
    let first: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    client
        .batch_execute(
            "SET search_path = pg_temp; SET statement_timeout = 0; \
             CREATE TEMP TABLE scratch (x int); SELECT pg_advisory_lock(7)",
        )
        .await
        .unwrap();
    drop(client);

    let client = orchestrator.tenant_client(&code).await.unwrap();
    let row = client
        .query_one(
            "SELECT pg_backend_pid(), current_setting('search_path'), \
             current_setting('statement_timeout'), \
             (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema())::int, \
             (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())::int",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), first, "the same pooled connection");
    assert_eq!(row.get::<_, String>(1), "\"$user\", public");
    assert_eq!(row.get::<_, String>(2), "400ms");
    assert_eq!((row.get::<_, i32>(3), row.get::<_, i32>(4)), (0, 0));
    let slow = client.query_one("SELECT pg_sleep(2)", &[]).await;
    assert!(
        slow.is_err_and(|e| e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)),
        "the timeout applies to library clients too"
    );
    drop(client);
    orchestrator.close();
}

#[tokio::test]
async fn a_library_client_s_listen_cursor_and_temp_table_are_reset_too() {
    let mut env = TestEnv::new();
    env.set("TENANTD_TENANT_MAX_CONNECTIONS", "1");
    let orchestrator = env.orchestrator().await;
    let code = env.code("listener");
    orchestrator
        .create_tenant(NewTenant::new(code.clone(), "Listener"))
        .await
        .unwrap();
    let client = orchestrator.tenant_client(&code).await.unwrap();
    client
        .batch_execute(
            "LISTEN leftover_channel; DECLARE held CURSOR WITH HOLD FOR SELECT 1; \
             CREATE TEMP TABLE scratch (x int)",
        )
        .await
        .unwrap();
    drop(client);
    let client = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        orchestrator.tenant_client(&code),
    )
    .await
    .expect("the reset at checkout finishes")
    .unwrap();
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM pg_listening_channels())::int, \
             (SELECT count(*) FROM pg_cursors WHERE name <> '')::int, \
             (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema())::int",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i32>(0),
            row.get::<_, i32>(1),
            row.get::<_, i32>(2)
        ),
        (0, 0, 0)
    );
    drop(client);
    orchestrator.close();
}
