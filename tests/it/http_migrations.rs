//! Fleet migrations over HTTP against the real server: three tenants created
//! at V1, a V2 added to a temporary TENANTD_MIGRATIONS_DIR and the server
//! restarted; `GET /v1/migrations` shows them pending, a dry run changes
//! nothing, a run answers 202 with its operation (visible while it waits for
//! the fleet lock, before its catalog row exists) and brings them to V2;
//! admin-only access and problem+json refusals.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::http_support::{TestServer, assert_problem, split};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

/// A V2 adding a column to every tenant.
const V2: &str = "ALTER TABLE clients ADD COLUMN http_note text;\n";
/// The fleet run's catalog-wide advisory lock (class 0x7E4A_0003, object 2),
/// as another tenantd process running a fleet migration holds it.
const FLEET_RUN_LOCK: &str = "x'7E4A0003'::int, 2";
/// Longest wait for a run to end.
const RUN_DEADLINE: Duration = Duration::from_secs(60);

const CODES: [&str; 3] = ["alpha", "bravo", "charlie"];

/// A copy of the built-in `migrations/` tree in a temporary directory.
fn migrations_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for set in ["auth", "shared", "tenant"] {
        std::fs::create_dir_all(dir.path().join(set)).unwrap();
        for entry in std::fs::read_dir(source.join(set)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.path().join(set).join(path.file_name().unwrap())).unwrap();
        }
    }
    dir
}

/// Polls an operation until it is no longer `running`.
async fn wait_for(server: &TestServer, location: &str) -> Value {
    let start = Instant::now();
    loop {
        let (status, body) = server.admin(Method::GET, location, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["status"] != "running" {
            return body;
        }
        assert!(start.elapsed() < RUN_DEADLINE, "run still going: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts a run; checks the 202, its operation and Location; returns the Location.
async fn start_run(server: &TestServer, body: Value) -> (String, Value) {
    let response = server
        .send(
            Method::POST,
            "/v1/migrations/run",
            Some(&server.admin_key),
            Some(body),
        )
        .await;
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (status, body) = split(response).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let operation = body["operation"].clone();
    assert_eq!(operation["status"], "running", "{body}");
    assert_eq!(operation["kind"], "migrate_run", "{body}");
    let id = operation["id"].as_str().expect("operation id");
    let location = location.expect("Location header");
    assert_eq!(location, format!("/v1/operations/{id}"));
    (location, operation)
}

async fn tenant_versions(server: &TestServer) -> Vec<Value> {
    let mut versions = Vec::new();
    for code in CODES {
        let (status, body) = server
            .admin(Method::GET, &format!("/v1/tenants/{code}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        versions.push(body["schema_version"].clone());
    }
    versions
}

async fn assert_all_pending(server: &TestServer, verify: bool) {
    let path = format!("/v1/migrations?verify={verify}");
    let (status, body) = server.admin(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["verified"], verify, "{body}");
    assert_eq!(body["latest"], 2, "{body}");
    let tenants = body["tenants"].as_array().expect("tenants");
    assert_eq!(tenants.len(), 3, "{body}");
    for t in tenants {
        assert_eq!(t["state"], "pending", "{t}");
        assert_eq!(t["pending"], json!([2]), "{t}");
        assert_eq!(t["version"], 1, "{t}");
    }
    assert_eq!(body["counts"]["pending"], 3, "{body}");
}

#[tokio::test]
async fn a_run_over_http_brings_every_tenant_to_v2() {
    let dir = migrations_copy();
    let path = dir.path().to_str().unwrap();
    let mut server = TestServer::start_with(&[("TENANTD_MIGRATIONS_DIR", path)]).await;
    for code in CODES {
        server.create_tenant(code, "pro").await;
    }
    let tenant_key = server.tenant_key("alpha").await;
    std::fs::write(dir.path().join("tenant/V2__http_note.sql"), V2).unwrap();
    server.restart().await;

    assert_all_pending(&server, false).await;
    assert_all_pending(&server, true).await;

    // A dry run lists what would run and changes nothing.
    let (location, _) = start_run(&server, json!({ "dry_run": true })).await;
    let dry = wait_for(&server, &location).await;
    assert_eq!(dry["status"], "succeeded", "{dry}");
    assert_eq!(dry["progress"]["would_migrate"], 3, "{dry}");
    let results = dry["results"].as_array().expect("results");
    assert_eq!(results.len(), 3, "{dry}");
    assert!(
        results.iter().all(|r| r["outcome"] == "would_migrate"),
        "{dry}"
    );
    assert_eq!(tenant_versions(&server).await, vec![json!(1); 3]);
    assert_all_pending(&server, false).await;

    // While another run holds the fleet lock, the operation is already visible.
    let orchestrator = &server.orchestrator;
    let held = server
        .env
        .admin_to(&format!("{}_auth", server.env.prefix))
        .await;
    held.batch_execute(&format!("SELECT pg_advisory_lock({FLEET_RUN_LOCK})"))
        .await
        .unwrap();
    let (location, accepted) = start_run(
        &server,
        json!({ "sets": "tenant", "tenants": CODES, "concurrency": 2, "canary": 1,
                "continue_on_error": false, "quarantine": true }),
    )
    .await;
    let id = Uuid::parse_str(accepted["id"].as_str().unwrap()).unwrap();
    let (status, waiting) = server.admin(Method::GET, &location, None).await;
    assert_eq!(status, StatusCode::OK, "{waiting}");
    assert_eq!(waiting["status"], "running", "{waiting}");
    assert!(waiting["progress"].is_object(), "{waiting}");
    assert!(orchestrator.operation(id).await.unwrap().is_none());
    held.batch_execute(&format!("SELECT pg_advisory_unlock({FLEET_RUN_LOCK})"))
        .await
        .unwrap();

    let done = wait_for(&server, &location).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(
        done["actor"].as_str().unwrap().starts_with("api-key:"),
        "{done}"
    );
    assert!(done["finished_at"].is_string(), "{done}");
    assert_eq!(done["detail"]["planned"], 3, "from the catalog row: {done}");
    assert_eq!(done["progress"]["migrated"], 3, "{done}");
    assert_eq!(done["progress"]["total"], 3, "{done}");
    let results = done["results"].as_array().expect("results");
    assert_eq!(results.len(), 3, "{done}");
    for r in results {
        assert_eq!(r["outcome"], "migrated", "{r}");
        assert_eq!(r["to_version"], 2, "{r}");
        assert_eq!(r["applied"], json!([2]), "{r}");
    }
    let row = orchestrator
        .operation(id)
        .await
        .unwrap()
        .expect("catalog row");
    assert_eq!(
        (row.kind.as_str(), row.status.as_str()),
        ("migrate_run", "succeeded")
    );
    assert_eq!(tenant_versions(&server).await, vec![json!(2); 3]);
    let (_, status) = server.admin(Method::GET, "/v1/migrations", None).await;
    assert_eq!(status["counts"]["current"], 3, "{status}");

    refusals(&server, &tenant_key, &location).await;
    server.stop().await;
}

/// Admin only; unknown operations, malformed ids and bodies are problem+json.
async fn refusals(server: &TestServer, tenant_key: &str, location: &str) {
    for (method, path) in [
        (Method::GET, "/v1/migrations"),
        (Method::POST, "/v1/migrations/run"),
        (Method::GET, location),
    ] {
        let body = (method == Method::POST).then(|| json!({ "dry_run": true }));
        let response = server
            .send(method.clone(), path, Some(tenant_key), body.clone())
            .await;
        assert_problem(response, StatusCode::FORBIDDEN).await;
        let response = server.send(method, path, None, body).await;
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
    let unknown = format!("/v1/operations/{}", Uuid::now_v7());
    let response = server
        .send(Method::GET, &unknown, Some(&server.admin_key), None)
        .await;
    assert_problem(response, StatusCode::NOT_FOUND).await;
    let response = server
        .send(
            Method::GET,
            "/v1/operations/nope",
            Some(&server.admin_key),
            None,
        )
        .await;
    assert_problem(response, StatusCode::BAD_REQUEST).await;
    for body in [
        json!({ "dry_run": true, "force": true }),
        json!({ "sets": "everything" }),
        json!({ "concurrency": 0 }),
        json!({ "tenants": ["Not A Code"] }),
    ] {
        let response = server
            .send(
                Method::POST,
                "/v1/migrations/run",
                Some(&server.admin_key),
                Some(body),
            )
            .await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let response = server
        .send(
            Method::POST,
            "/v1/migrations/run",
            Some(&server.admin_key),
            Some(json!({ "tenants": ["nobody"] })),
        )
        .await;
    assert_problem(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn a_failed_migration_over_http_names_postgresql_s_message() {
    let dir = migrations_copy();
    let path = dir.path().to_str().unwrap();
    let mut server = TestServer::start_with(&[("TENANTD_MIGRATIONS_DIR", path)]).await;
    server.create_tenant("alpha", "pro").await;
    server
        .env
        .admin_to(&format!("{}_alpha", server.env.prefix))
        .await
        .batch_execute("INSERT INTO clients (code, name, currency) VALUES ('A', 'A', 'EUR')")
        .await
        .unwrap();
    // Fails where clients exist: in alpha, not in the (empty) template.
    std::fs::write(
        dir.path().join("tenant/V50__fiscal_year.sql"),
        "DO $$ BEGIN IF EXISTS (SELECT FROM clients) THEN \
         EXECUTE 'ALTER TABLE clients ADD COLUMN fiscal year'; END IF; END $$;\n",
    )
    .unwrap();
    server.restart().await;

    let (location, _) = start_run(&server, json!({ "sets": "tenant" })).await;
    let done = wait_for(&server, &location).await;
    let results = done["results"].as_array().expect("results");
    assert_eq!(results.len(), 1, "{done}");
    assert_eq!(results[0]["outcome"], "failed", "{done}");
    let error = results[0]["error"].as_str().expect("the tenant's error");
    for part in [
        "V50__fiscal_year",
        "type \"year\" does not exist",
        "SQLSTATE 42704",
    ] {
        assert!(error.contains(part), "{part:?} missing from: {error}");
    }
    assert!(!error.contains("db error"), "{error}");
    let (status, fleet) = server.admin(Method::GET, "/v1/migrations", None).await;
    assert_eq!(status, StatusCode::OK, "{fleet}");
    let recorded = fleet["tenants"][0]["migration_error"]
        .as_str()
        .unwrap_or_default();
    assert!(recorded.contains("type \"year\" does not exist"), "{fleet}");
    server.stop().await;
}
