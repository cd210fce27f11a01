//! Values a client can send and rows tenantd cannot read must not crash
//! anyone: a settings number at the edge of f64 is stored and read back by
//! every reader (HTTP and CLI); a NUL character or an oversized value is a
//! 422 naming the field (and an invalid-input error through the library);
//! a row whose stored value cannot be decoded is an error, not a panic, and
//! a fleet run over it closes its operation as failed; operations left
//! `running` by a dead process are closed by reconcile.

use std::process::Output;
use std::time::{Duration, Instant};

use crate::common::TestEnv;
use crate::http_support::{TestServer, assert_problem};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tenantd::{ErrorKind, NewTenant, TenantFilter};
use uuid::Uuid;

/// Longest wait for a fleet run to end.
const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// Runs `tenantd <args>` with the server's environment.
async fn tenantd(env: &TestEnv, args: &[&str]) -> Output {
    tokio::process::Command::from({
        let mut command = env.command();
        command.args(args);
        command
    })
    .output()
    .await
    .expect("run tenantd")
}

fn assert_success(args: &[&str], output: &Output) {
    assert!(
        output.status.success(),
        "tenantd {args:?}: {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A connection to the test's AUTH database (the catalog).
async fn auth(env: &TestEnv) -> tokio_postgres::Client {
    env.admin_to(&format!("{}_auth", env.prefix)).await
}

async fn operation_status(env: &TestEnv, id: Uuid) -> (String, Option<String>) {
    let row = auth(env)
        .await
        .query_one("SELECT status, error FROM operations WHERE id = $1", &[&id])
        .await
        .expect("operation row");
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn a_settings_number_at_the_edge_of_f64_is_read_back_by_every_reader() {
    let server = TestServer::start().await;
    server.create_tenant("edge", "pro").await;
    // PostgreSQL's jsonb keeps this as a 309-digit `numeric` and prints it
    // without an exponent; it must come back as the same f64.
    let settings = json!({ "a": f64::MAX, "b": -f64::MAX, "c": 5e-324, "d": u64::MAX });
    let (status, body) = server
        .admin(
            Method::PATCH,
            "/v1/tenants/edge",
            Some(json!({ "settings": settings })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["settings"], settings, "{body}");

    let (status, body) = server.admin(Method::GET, "/v1/tenants/edge", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["settings"]["a"].as_f64(), Some(f64::MAX), "{body}");
    assert_eq!(body["settings"], settings, "{body}");
    for path in ["/v1/tenants", "/v1/migrations"] {
        let (status, body) = server.admin(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    }
    for args in [
        &["tenant", "list", "--json"][..],
        &["tenant", "show", "edge", "--json"][..],
        &["migrate", "status", "--json"][..],
    ] {
        assert_success(args, &tenantd(&server.env, args).await);
    }
}

#[tokio::test]
async fn nul_characters_and_oversized_values_are_422_naming_the_field() {
    let server = TestServer::start().await;
    server.create_tenant("valid", "free").await;
    // One byte over the 64 KiB cap on settings; one character over the
    // 1000 of a reason.
    let big = "x".repeat(64 * 1024 + 1);
    let cases = [
        (
            Method::POST,
            "/v1/tenants",
            json!({ "code": "nul", "name": "a\u{0}b" }),
            "name",
        ),
        (
            Method::POST,
            "/v1/tenants",
            json!({ "code": "nul", "name": "N", "admin_email": "a\u{0}@b.c" }),
            "admin_email",
        ),
        (
            Method::PATCH,
            "/v1/tenants/valid",
            json!({ "name": "\u{0}" }),
            "name",
        ),
        (
            Method::PATCH,
            "/v1/tenants/valid",
            json!({ "settings": { "a": "x\u{0}" } }),
            "settings",
        ),
        (
            Method::PATCH,
            "/v1/tenants/valid",
            json!({ "settings": { "\u{0}": 1 } }),
            "settings",
        ),
        (
            Method::PATCH,
            "/v1/tenants/valid",
            json!({ "settings": { "a": big } }),
            "settings",
        ),
        (
            Method::POST,
            "/v1/tenants/valid/suspend",
            json!({ "reason": "late\u{0}payment" }),
            "reason",
        ),
        (
            Method::POST,
            "/v1/tenants/valid/suspend",
            json!({ "reason": "x".repeat(1_001) }),
            "reason",
        ),
    ];
    for (method, path, body, field) in cases {
        let response = server
            .send(method.clone(), path, Some(&server.admin_key), Some(body))
            .await;
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(problem["field"], field, "{method} {path}: {problem}");
    }
    let (status, body) = server.admin(Method::GET, "/v1/tenants/valid", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "active", "nothing changed: {body}");
    assert_eq!(body["name"], "Tenant valid", "{body}");
    let (status, _) = server.admin(Method::GET, "/v1/tenants/nul", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The library (and so the CLI) refuses the same values.
    let orchestrator = &server.orchestrator;
    let code = server.env.code("valid");
    let err = orchestrator
        .create_tenant(NewTenant::new(server.env.code("nul"), "a\u{0}b"))
        .await
        .expect_err("NUL in a name");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let err = orchestrator
        .suspend_tenant(&code, Some("x\u{0}"))
        .await
        .expect_err("NUL in a reason");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let patch = tenantd::TenantPatch {
        settings: Some(json!({ "a": "\u{0}" })),
        ..Default::default()
    };
    let err = orchestrator
        .update_tenant(&code, &patch)
        .await
        .expect_err("NUL in settings");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let tenant = orchestrator.tenant(&code).await.expect("tenant");
    assert_eq!(tenant.status, tenantd::TenantStatus::Active);
}

#[tokio::test]
async fn an_unreadable_stored_value_is_an_error_and_closes_the_run_over_it() {
    let server = TestServer::start().await;
    server.create_tenant("poisoned", "pro").await;
    // Written behind tenantd's back: a number jsonb keeps but no f64 holds.
    auth(&server.env)
        .await
        .execute(
            "UPDATE tenants SET settings = '{\"a\": 1e400}' WHERE code = 'poisoned'",
            &[],
        )
        .await
        .expect("poison the row");

    let code = server.env.code("poisoned");
    let err = server
        .orchestrator
        .tenant(&code)
        .await
        .expect_err("an undecodable row is an error");
    let message = err.to_string();
    assert!(
        message.contains("settings") && message.contains("poisoned"),
        "{message}"
    );
    let err = server
        .orchestrator
        .tenants(&TenantFilter::default())
        .await
        .expect_err("the list reads the row too");
    assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
    let response = server
        .send(Method::GET, "/v1/tenants", Some(&server.admin_key), None)
        .await;
    assert_problem(response, StatusCode::INTERNAL_SERVER_ERROR).await;

    // A fleet run over that row fails, and says so in its operation.
    let (status, body) = server
        .admin(Method::POST, "/v1/migrations/run", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id: Uuid = body["operation"]["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("operation id");
    let start = Instant::now();
    loop {
        let (status, body) = server
            .admin(Method::GET, &format!("/v1/operations/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["status"] != "running" {
            assert_eq!(body["status"], "failed", "{body}");
            break;
        }
        assert!(start.elapsed() < RUN_DEADLINE, "run still going: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, error) = operation_status(&server.env, id).await;
    assert_eq!(status, "failed", "the catalog row is closed: {error:?}");
    assert!(error.is_some_and(|e| e.contains("settings")));
}

/// The advisory lock a fleet run holds (class 0x7E4A_0003, object 2).
const FLEET_RUN_LOCK: &str = "x'7E4A0003'::int, 2";

#[tokio::test]
async fn reconcile_closes_the_operations_of_dead_processes_only() {
    let env = TestEnv::new();
    let orchestrator = env.orchestrator().await;
    let code = env.code("orphan");
    let tenant = orchestrator
        .create_tenant(NewTenant::new(code.clone(), "Orphan"))
        .await
        .expect("create");
    let catalog = auth(&env).await;
    // What a process killed mid-run leaves: a fleet run and a suspend, `running`.
    let (run, suspend) = (Uuid::now_v7(), Uuid::now_v7());
    catalog
        .execute(
            "INSERT INTO operations (id, tenant_id, tenant_code, kind, status, actor) VALUES \
             ($1, NULL, NULL, 'migrate_run', 'running', 'cli'), \
             ($2, $3, $4, 'suspend', 'running', 'cli')",
            &[&run, &suspend, &tenant.id, &code.as_str()],
        )
        .await
        .expect("insert running operations");

    // While their locks are held, their owners may be alive: left alone.
    let holder = auth(&env).await;
    holder
        .execute(
            &format!(
                "SELECT pg_advisory_lock({FLEET_RUN_LOCK}), \
                 pg_advisory_lock(x'7E4A0001'::int, hashtext($1))"
            ),
            &[&code.as_str()],
        )
        .await
        .expect("hold the locks");
    let report = orchestrator.reconcile().await.expect("reconcile");
    assert!(report.abandoned_operations.is_empty(), "{report:?}");
    assert_eq!(operation_status(&env, run).await.0, "running");
    assert_eq!(operation_status(&env, suspend).await.0, "running");

    // The holder's session ends, as a dead process's does.
    drop(holder);
    let deadline = Instant::now() + Duration::from_secs(10);
    let report = loop {
        let report = orchestrator.reconcile().await.expect("reconcile");
        if report.abandoned_operations.len() == 2 || Instant::now() > deadline {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut closed = report.abandoned_operations.clone();
    closed.sort();
    assert_eq!(closed, [run, suspend], "{report:?}");
    assert!(!report.is_clean());
    assert!(report.to_string().contains(&run.to_string()), "{report}");
    for id in [run, suspend] {
        let (status, error) = operation_status(&env, id).await;
        assert_eq!(status, "failed");
        assert!(error.is_some_and(|e| e.contains("reconcile")));
    }
    let again = orchestrator.reconcile().await.expect("reconcile");
    assert!(again.is_clean(), "{again:?}");
}

#[tokio::test]
async fn the_openapi_document_states_the_answers_and_constraints_the_server_enforces() {
    let server = TestServer::start().await;
    let (status, doc) = server.admin(Method::GET, "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            let responses = &op["responses"];
            let has = |status: &str| responses.get(status).is_some();
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            let tags = op["tags"].to_string();
            if secured {
                assert!(has("401"), "{method} {path}: 401");
            }
            if secured
                && ["tenants", "api-keys", "migrations"]
                    .iter()
                    .any(|t| tags.contains(t))
            {
                assert!(has("403"), "{method} {path}: 403");
            }
            if op.get("requestBody").is_some() {
                for status in ["400", "413", "415", "422"] {
                    assert!(has(status), "{method} {path}: {status}");
                }
            }
        }
    }
    let op = |path: &str, method: &str| doc["paths"][path][method].clone();
    for status in ["404", "422"] {
        assert!(
            op("/v1/tenants/{code}/suspend", "post")["responses"][status].is_object(),
            "suspend {status}"
        );
    }
    assert!(op("/v1/tenants/{code}/resume", "post")["responses"]["404"].is_object());
    let params = op("/v1/tenants/{code}", "delete")["parameters"].clone();
    let param = |name: &str| {
        params
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == name))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(param("confirm")["required"], true, "{params}");
    assert_eq!(
        param("code")["schema"]["pattern"],
        "^[a-z][a-z0-9_]{1,39}$",
        "{params}"
    );
    let list = op("/v1/tenants", "get")["parameters"].clone();
    let limit = list
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "limit"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(limit["schema"]["minimum"], 1, "{limit}");
    assert_eq!(limit["schema"]["maximum"], 1000, "{limit}");

    // Region and plan patterns list every value the server accepts.
    for schema in ["CreateTenant", "PatchTenant"] {
        let properties = &doc["components"]["schemas"][schema]["properties"];
        let region = properties["region"]["pattern"].as_str().unwrap_or_default();
        let plan = properties["plan"]["pattern"].as_str().unwrap_or_default();
        for r in tenantd::Region::ALL {
            assert!(region.contains(r.as_str()), "{schema}: {region}");
        }
        for p in tenantd::Plan::ALL {
            assert!(plan.contains(p.as_str()), "{schema}: {plan}");
        }
    }

    // A JSON `null` is an absent optional body (as the document allows).
    server.create_tenant("nullbody", "free").await;
    let response = server
        .http
        .post(format!("{}/v1/tenants/nullbody/suspend", server.base))
        .bearer_auth(&server.admin_key)
        .header("content-type", "application/json")
        .body("null")
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status(), StatusCode::OK);

    // And the server enforces the range it states.
    for bad in ["0", "-1", "1001"] {
        let response = server
            .send(
                Method::GET,
                &format!("/v1/tenants?limit={bad}"),
                Some(&server.admin_key),
                None,
            )
            .await;
        assert_problem(response, StatusCode::BAD_REQUEST).await;
    }
}
