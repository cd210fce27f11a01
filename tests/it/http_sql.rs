//! `POST /v1/sql` against the real server: results by column type, bound
//! parameters, the row cap, the statement timeout, and every way a tenant
//! might try to reach another tenant's data or AUTH.

use crate::http_support;

use crate::http_support::{TestServer, check_problem};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn statements_return_typed_json() {
    let server = TestServer::start_with(&[
        ("TENANTD_SQL_MAX_ROWS", "5"),
        ("TENANTD_SQL_TIMEOUT_MS", "300"),
    ])
    .await;
    server.create_tenant("acme", "pro").await;
    let key = server.tenant_key("acme").await;
    let (status, body) = server
        .sql(
            &key,
            "INSERT INTO clients (code, name, currency, credit_limit) VALUES ($1, $2, 'EUR', $3::text::numeric) RETURNING id, code",
            json!(["C1", "First", "1234.50"]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["row_count"], 1);
    assert_eq!(body["rows"][0][1], "C1");
    let (status, body) = server
        .sql(
            &key,
            "UPDATE clients SET is_active = $1 WHERE code = $2",
            json!([false, "C1"]),
        )
        .await;
    assert_eq!(
        (status, body["row_count"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{body}"
    );
    let (status, body) = server
        .sql(
            &key,
            "SELECT 42::int2 a, 7::int8 b, 1.5::float8 c, credit_limit d, name e, is_active f, \
             '{\"k\":[1]}'::jsonb g, '6f1c0a4e-3f0a-4c47-9d0a-2a7e0c5b8f11'::uuid h, \
             '2026-01-02T03:04:05Z'::timestamptz i, '2026-01-02'::date j, '\\x00ff'::bytea k, NULL::text l, \
             ARRAY[1,2]::int4[] m FROM clients WHERE code = $1",
            json!(["C1"]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["rows"][0],
        json!([42, 7, 1.5, "1234.50", "First", false, {"k": [1]}, "6f1c0a4e-3f0a-4c47-9d0a-2a7e0c5b8f11",
               "2026-01-02T03:04:05+00:00", "2026-01-02", "AP8=", null, [1, 2]])
    );
    assert_eq!(
        body["columns"][3],
        json!({ "name": "d", "type": "numeric" })
    );

    let (status, body) = server
        .sql(&key, "SELECT g FROM generate_series(1, 20) g", json!([]))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["row_count"].as_u64(), body["truncated"].as_bool()),
        (Some(5), Some(true))
    );

    let (status, body) = server.sql(&key, "SELECT pg_sleep(2)", json!([])).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
    check_problem(&body, status);
    let (status, body) = server
        .sql(&key, "SELECT '1 day'::interval", json!([]))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("::text"),
        "{body}"
    );
    let (status, body) = server.sql(&key, "SELECT $1::int4 + 1", json!(["x"])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = server.sql(&key, "SELECT $1::int4", json!([])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = server
        .sql(
            &key,
            "INSERT INTO clients (code, name, currency) VALUES ('C1', 'Dup', 'EUR')",
            json!([]),
        )
        .await;
    assert_eq!(
        (status, body["sqlstate"].as_str()),
        (StatusCode::CONFLICT, Some("23505")),
        "{body}"
    );
    // After every failure above the tenant's connections are clean: no
    // aborted transaction and no leaked timeout.
    for _ in 0..6 {
        let (status, body) = server
            .sql(&key, "SELECT current_setting('statement_timeout') AS t, count(*)::int8 AS n FROM clients", json!([]))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["rows"][0], json!(["300ms", 1]));
    }
    let admin_view = server
        .env
        .admin_to(&format!("{}_acme", server.env.prefix))
        .await;
    let leaked: i64 = admin_view
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND state LIKE 'idle in transaction%'",
            &[&format!("{}_acme", server.env.prefix)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        leaked, 0,
        "no pooled connection is left inside a transaction"
    );
    server.stop().await;
}

#[tokio::test]
async fn tenants_cannot_reach_each_other_or_auth() {
    let server = TestServer::start().await;
    server.create_tenant("alpha", "pro").await;
    server.create_tenant("bravo", "pro").await;
    let alpha = server.tenant_key("alpha").await;
    let bravo = server.tenant_key("bravo").await;
    let (status, _) = server
        .sql(
            &bravo,
            "INSERT INTO clients (code, name, currency) VALUES ('SECRET', 'Bravo only', 'CHF')",
            json!([]),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let prefix = server.env.prefix.clone();
    let bravo_db = format!("{prefix}_bravo");
    let auth_db = format!("{prefix}_auth");
    let attempts = [
        format!("SELECT * FROM {bravo_db}.public.clients"),
        format!("SELECT * FROM {auth_db}.public.api_keys"),
        "SELECT * FROM api_keys".to_owned(),
        "SELECT * FROM tenants".to_owned(),
        format!("SET ROLE {bravo_db}"),
        "SET ROLE postgres".to_owned(),
        "SET SESSION AUTHORIZATION postgres".to_owned(),
        "RESET ROLE".to_owned(),
        format!(
            "SELECT * FROM dblink('dbname={bravo_db}', 'SELECT name FROM clients') AS t(name text)"
        ),
        "CREATE EXTENSION dblink".to_owned(),
        "COPY clients TO PROGRAM 'cat > /tmp/x'".to_owned(),
        "COPY clients FROM '/etc/passwd'".to_owned(),
        format!("\\connect {bravo_db}"),
        "SELECT 1; SET ROLE postgres".to_owned(),
        "SELECT 1; SELECT name FROM clients".to_owned(),
        "SELECT set_config('role', 'postgres', false)".to_owned(),
        "BEGIN".to_owned(),
        "COMMIT; SELECT 1".to_owned(),
        "DO $$ BEGIN EXECUTE 'SET ROLE postgres'; END $$".to_owned(),
        format!("ALTER ROLE {prefix}_alpha PASSWORD 'stolen'"),
        "LISTEN tenantd".to_owned(),
        "SELECT pg_read_file('/etc/passwd')".to_owned(),
        "CREATE TEMP TABLE spy (x int)".to_owned(),
        format!("GRANT CONNECT ON DATABASE {bravo_db} TO {prefix}_alpha"),
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity".to_owned(),
    ];
    for sql in &attempts {
        let (status, body) = server.sql(&alpha, sql, json!([])).await;
        assert!(
            status.is_client_error() && status != StatusCode::NOT_FOUND,
            "{sql}: {status} {body}"
        );
        check_problem(&body, status);
        assert!(
            !body.to_string().contains("Bravo only"),
            "{sql} leaked: {body}"
        );
    }
    let (status, body) = server
        .sql(
            &alpha,
            "SELECT count(*)::int8 AS n, current_user::text AS u FROM clients",
            json!([]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["rows"][0],
        json!([0, format!("{prefix}_alpha")]),
        "alpha sees only its own rows"
    );
    let (_, body) = server
        .sql(&bravo, "SELECT name FROM clients", json!([]))
        .await;
    assert_eq!(body["rows"], json!([["Bravo only"]]));
    server.stop().await;
}

#[tokio::test]
async fn an_unreachable_tenant_database_is_a_retryable_503() {
    let server = TestServer::start().await;
    server.create_tenant("closed", "pro").await;
    let key = server.tenant_key("closed").await;
    let database = format!("{}_closed", server.env.prefix);
    server
        .env
        .admin()
        .await
        .batch_execute(&format!("ALTER DATABASE \"{database}\" CONNECTION LIMIT 0"))
        .await
        .unwrap();
    let response = server
        .send(
            reqwest::Method::POST,
            "/v1/sql",
            Some(&key),
            Some(json!({ "sql": "SELECT 1" })),
        )
        .await;
    assert_eq!(response.headers()["retry-after"], "1");
    let body = http_support::assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    let detail = body["detail"].as_str().unwrap();
    assert!(
        !detail.contains(&database),
        "5xx details stay in the log: {body}"
    );
    server.stop().await;
}

/// Locales whose PostgreSQL translations may be installed; the first one the
/// server accepts as `lc_messages` is used.
const TRANSLATED_LOCALES: &[&str] = &[
    "de_DE.UTF-8",
    "fr_FR.UTF-8",
    "es_ES.UTF-8",
    "it_IT.UTF-8",
    "sv_SE.UTF-8",
];

#[tokio::test]
async fn a_second_statement_is_recognised_by_sqlstate_and_position_not_message_text() {
    let server = TestServer::start().await;
    server.create_tenant("babel", "pro").await;
    let key = server.tenant_key("babel").await;
    let database = format!("{}_babel", server.env.prefix);
    // Before the tenant's first connection: its sessions speak another
    // language if the machine has one (the message text changes, the
    // SQLSTATE and the missing position do not).
    let admin = server.env.admin().await;
    let mut language = None;
    for locale in TRANSLATED_LOCALES {
        let sql = format!("ALTER DATABASE \"{database}\" SET lc_messages = '{locale}'");
        if admin.batch_execute(&sql).await.is_ok() {
            language = Some(*locale);
            break;
        }
    }
    let (status, body) = server
        .sql(&key, "SELECT current_setting('lc_messages')", json!([]))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eprintln!(
        "lc_messages of the tenant's sessions: {} ({})",
        body["rows"][0][0],
        match language {
            Some(_) => "a translated language",
            None => "no other locale is installed: the rule is proved by SQLSTATE and position",
        }
    );
    if let Some(locale) = language {
        assert_eq!(body["rows"][0][0], locale);
        // The server really answers in that language now.
        let (_, body) = server.sql(&key, "SELECT 1 FROM nowhere", json!([])).await;
        assert!(
            !body["detail"].as_str().unwrap().contains("does not exist"),
            "{body}"
        );
    }
    for sql in [
        "SELECT 1; SELECT 2",
        "SELECT ';' AS a; SELECT name FROM clients",
        "SELECT 1 /* ; */ ; -- x\n UPDATE clients SET name = 'x'",
    ] {
        let (status, body) = server.sql(&key, sql, json!([])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{sql}: {body}");
        check_problem(&body, status);
        assert_eq!(body["sqlstate"], "42601", "{sql}: {body}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("one statement per request"),
            "{sql}: {body}"
        );
    }
    // Other syntax errors (42601 with a position) keep the server's message.
    for sql in ["SELECT 1 SELECT 2", "SELEC 1;", "SELECT (1;"] {
        let (status, body) = server.sql(&key, sql, json!([])).await;
        assert_eq!(
            (status, body["sqlstate"].as_str()),
            (StatusCode::BAD_REQUEST, Some("42601")),
            "{sql}: {body}"
        );
        assert!(
            !body["detail"]
                .as_str()
                .unwrap()
                .contains("one statement per request"),
            "{sql}: {body}"
        );
    }
    let (status, body) = server.sql(&key, "SELECT 1;", json!([])).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a trailing ';' is one statement: {body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_cancelled_request_discards_its_connection() {
    let server = TestServer::start_with(&[
        ("TENANTD_TENANT_MAX_CONNECTIONS", "1"),
        ("TENANTD_SQL_TIMEOUT_MS", "20000"),
    ])
    .await;
    server.create_tenant("quitter", "pro").await;
    let key = server.tenant_key("quitter").await;
    let pid = |body: serde_json::Value| body["rows"][0][0].as_i64().unwrap();
    let (status, body) = server
        .sql(&key, "SELECT pg_backend_pid()::int8", json!([]))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let first = pid(body);
    // The client gives up while the statement runs: the handler is dropped.
    let gave_up = server
        .http
        .post(format!("{}/v1/sql", server.base))
        .bearer_auth(&key)
        .json(&json!({ "sql": "SELECT pg_sleep(10)" }))
        .timeout(std::time::Duration::from_millis(500))
        .send()
        .await;
    assert!(gave_up.is_err(), "the request was expected to time out");
    let started = std::time::Instant::now();
    let (status, body) = server
        .sql(&key, "SELECT pg_backend_pid()::int8", json!([]))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_ne!(
        pid(body),
        first,
        "the cancelled request's connection went back to the pool"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "the next request waited for the abandoned statement"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_function_changing_the_timeout_does_not_lift_it_for_later_requests() {
    // One connection: every request below runs on the same pooled session.
    let server = TestServer::start_with(&[
        ("TENANTD_TENANT_MAX_CONNECTIONS", "1"),
        ("TENANTD_SQL_TIMEOUT_MS", "300"),
    ])
    .await;
    server.create_tenant("lifter", "pro").await;
    let key = server.tenant_key("lifter").await;
    let created = [
        // A plain SET inside a function passes the guard (its first keyword
        // is CREATE) and changes the session, not just the function call.
        "CREATE FUNCTION lift() RETURNS text LANGUAGE plpgsql AS $$ \
         BEGIN SET statement_timeout = 0; RETURN current_setting('statement_timeout'); END $$",
        // set_config under a name the guard does not see, and a search path
        // that puts the tenant's own schema before pg_catalog.
        "CREATE FUNCTION lift_by_config() RETURNS text LANGUAGE plpgsql AS $$ \
         BEGIN EXECUTE format('SELECT %s(%L, %L, false)', 'pg_catalog.set_' || 'config', 'statement_timeout', '0'); \
         RETURN current_setting('statement_timeout'); END $$",
        "CREATE FUNCTION shadow() RETURNS text LANGUAGE plpgsql AS $$ \
         BEGIN EXECUTE format('CREATE FUNCTION public.%I(text, text, boolean) RETURNS text LANGUAGE sql AS %L', \
         'set_' || 'config', 'SELECT $2'); \
         EXECUTE format('SELECT pg_catalog.%I(%L, %L, false)', 'set_' || 'config', 'search_path', 'public, pg_catalog'); \
         SET statement_timeout = 0; RETURN current_setting('search_path'); END $$",
    ];
    for sql in created {
        let (status, body) = server.sql(&key, sql, json!([])).await;
        assert_eq!(status, StatusCode::OK, "{sql}: {body}");
    }
    for lift in ["lift", "lift_by_config", "shadow"] {
        let (status, body) = server
            .sql(&key, &format!("SELECT {lift}()"), json!([]))
            .await;
        assert_eq!(status, StatusCode::OK, "{lift}: {body}");
        let (status, body) = server
            .sql(&key, "SELECT pg_sleep(2)::text", json!([]))
            .await;
        assert_eq!(
            status,
            StatusCode::REQUEST_TIMEOUT,
            "after {lift}() a long statement must still be cut off: {body}"
        );
        check_problem(&body, status);
        let (status, body) = server
            .sql(
                &key,
                "SELECT current_setting('statement_timeout')",
                json!([]),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["rows"][0], json!(["300ms"]), "after {lift}()");
    }
    server.stop().await;
}

#[tokio::test]
async fn results_are_capped_in_bytes_and_say_which_cap_cut_them() {
    let server = TestServer::start_with(&[
        ("TENANTD_SQL_MAX_BYTES", "100000"),
        ("TENANTD_SQL_MAX_ROWS", "1000"),
    ])
    .await;
    server.create_tenant("bulky", "pro").await;
    let key = server.tenant_key("bulky").await;
    let (status, body) = server
        .sql(
            &key,
            "SELECT repeat('x', 30000) FROM generate_series(1, 10)",
            json!([]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["truncated"], true);
    assert_eq!(body["truncated_reason"], "bytes");
    assert_eq!(
        body["row_count"], 3,
        "three rows of 30,000 bytes fit in 100,000"
    );
    // One value larger than the whole cap: no row, still an answer.
    let (status, body) = server
        .sql(&key, "SELECT repeat('x', 5000000)", json!([]))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["row_count"].as_u64(),
            body["truncated_reason"].as_str()
        ),
        (Some(0), Some("bytes"))
    );
    let (status, body) = server
        .sql(&key, "SELECT g FROM generate_series(1, 1001) g", json!([]))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["truncated_reason"], "rows");
    let (status, body) = server
        .sql(&key, "SELECT g FROM generate_series(1, 10) g", json!([]))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["truncated"], false);
    assert!(body.get("truncated_reason").is_none(), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn a_statement_failing_after_the_row_cap_or_at_commit_is_an_error() {
    let server = TestServer::start_with(&[("TENANTD_SQL_MAX_ROWS", "10")]).await;
    server.create_tenant("latefail", "pro").await;
    let key = server.tenant_key("latefail").await;
    // Rows 1..49 come back before the division by zero at row 50.
    let (status, body) = server
        .sql(
            &key,
            "SELECT 1 / (50 - g) FROM generate_series(1, 100) g",
            json!([]),
        )
        .await;
    assert_ne!(status, StatusCode::OK, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("division by zero"),
        "{body}"
    );
    check_problem(&body, status);

    // A deferred foreign key fails at COMMIT, after the INSERT succeeded.
    for sql in [
        "CREATE TABLE parents (id int PRIMARY KEY)",
        "CREATE TABLE children (id int PRIMARY KEY, parent int REFERENCES parents \
         DEFERRABLE INITIALLY DEFERRED)",
    ] {
        let (status, body) = server.sql(&key, sql, json!([])).await;
        assert_eq!(status, StatusCode::OK, "{sql}: {body}");
    }
    let (status, body) = server
        .sql(
            &key,
            "INSERT INTO children VALUES (1, 99) RETURNING id",
            json!([]),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    check_problem(&body, status);
    let (status, body) = server
        .sql(&key, "SELECT count(*)::int FROM children", json!([]))
        .await;
    assert_eq!(
        (status, body["rows"][0][0].as_i64()),
        (StatusCode::OK, Some(0)),
        "the failed COMMIT kept nothing"
    );
    server.stop().await;
}
