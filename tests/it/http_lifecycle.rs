//! The tenant life cycle over HTTP against the real server: create (201,
//! Location, 409 with a link, Idempotency-Key replay), list with filters and
//! cursor, show, patch, suspend (tenant routes → 403), resume, connection,
//! delete with confirm; API keys; probes, metrics, OpenAPI; graceful stop.

use crate::common;

use crate::http_support::{TestServer, assert_problem, split};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn tenant_life_cycle_over_http() {
    let server = TestServer::start().await;
    let created = server
        .send(
            Method::POST,
            "/v1/tenants",
            Some(&server.admin_key),
            Some(json!({ "code": "acme", "name": "Acme Steel", "region": "CH", "plan": "pro", "admin_email": "it@acme.test" })),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(created.headers()["location"], "/v1/tenants/acme");
    let (_, tenant) = split(created).await;
    assert_eq!(tenant["status"], "active");
    assert_eq!(tenant["region"], "CH");

    let duplicate = server
        .send(
            Method::POST,
            "/v1/tenants",
            Some(&server.admin_key),
            Some(json!({ "code": "acme", "name": "Again" })),
        )
        .await;
    assert_eq!(duplicate.headers()["location"], "/v1/tenants/acme");
    let body = assert_problem(duplicate, StatusCode::CONFLICT).await;
    assert_eq!(body["existing"], "/v1/tenants/acme");

    server.create_tenant("beta", "free").await;
    server.create_tenant("gamma", "pro").await;
    let (status, page) = server.admin(Method::GET, "/v1/tenants?limit=2", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(codes(&page), ["acme", "beta"]);
    assert_eq!(page["next_cursor"], "beta");
    let (_, page) = server
        .admin(Method::GET, "/v1/tenants?limit=2&cursor=beta", None)
        .await;
    assert_eq!(codes(&page), ["gamma"]);
    assert!(page["next_cursor"].is_null());
    let (_, page) = server
        .admin(Method::GET, "/v1/tenants?plan=pro&region=CH", None)
        .await;
    assert_eq!(codes(&page), ["acme"]);

    let (status, patched) = server
        .admin(
            Method::PATCH,
            "/v1/tenants/beta",
            Some(json!({ "name": "Beta SA", "plan": "enterprise", "admin_email": null })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(
        (patched["name"].as_str(), patched["plan"].as_str()),
        (Some("Beta SA"), Some("enterprise"))
    );
    let (_, shown) = server.admin(Method::GET, "/v1/tenants/beta", None).await;
    assert_eq!(shown["name"], "Beta SA");

    let key = server.tenant_key("acme").await;
    let (status, _) = server.sql(&key, "SELECT 1", json!([])).await;
    assert_eq!(status, StatusCode::OK);
    let (status, suspended) = server
        .admin(
            Method::POST,
            "/v1/tenants/acme/suspend",
            Some(json!({ "reason": "unpaid" })),
        )
        .await;
    assert_eq!(
        (status, suspended["status"].as_str()),
        (StatusCode::OK, Some("suspended"))
    );
    let refused = server
        .send(
            Method::POST,
            "/v1/sql",
            Some(&key),
            Some(json!({ "sql": "SELECT 1" })),
        )
        .await;
    assert_problem(refused, StatusCode::FORBIDDEN).await;
    let (status, _) = server
        .admin(Method::POST, "/v1/tenants/acme/suspend", None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "suspending twice");
    let (status, resumed) = server
        .admin(Method::POST, "/v1/tenants/acme/resume", None)
        .await;
    assert_eq!(
        (status, resumed["status"].as_str()),
        (StatusCode::OK, Some("active"))
    );
    let (status, _) = server.sql(&key, "SELECT 1", json!([])).await;
    assert_eq!(status, StatusCode::OK);

    connection_is_usable(&server, &key).await;

    let no_confirm = server
        .send(
            Method::DELETE,
            "/v1/tenants/gamma",
            Some(&server.admin_key),
            None,
        )
        .await;
    assert_problem(no_confirm, StatusCode::BAD_REQUEST).await;
    let wrong = server
        .send(
            Method::DELETE,
            "/v1/tenants/gamma?confirm=acme",
            Some(&server.admin_key),
            None,
        )
        .await;
    // 409, not 400: the request is well-formed, it names another tenant.
    assert_problem(wrong, StatusCode::CONFLICT).await;
    let (status, dropped) = server
        .admin(Method::DELETE, "/v1/tenants/gamma?confirm=gamma", None)
        .await;
    assert_eq!(
        (status, dropped["status"].as_str()),
        (StatusCode::OK, Some("deleted"))
    );
    let (_, page) = server.admin(Method::GET, "/v1/tenants", None).await;
    assert_eq!(codes(&page), ["acme", "beta"]);
    let unknown = server
        .send(
            Method::GET,
            "/v1/tenants/nobody",
            Some(&server.admin_key),
            None,
        )
        .await;
    assert_problem(unknown, StatusCode::NOT_FOUND).await;
    server.stop().await;
}

async fn connection_is_usable(server: &TestServer, key: &str) {
    let (status, conn) = server
        .admin(Method::GET, "/v1/tenants/acme/connection", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{conn}");
    let (status, own) = split(
        server
            .send(Method::GET, "/v1/tenants/acme/connection", Some(key), None)
            .await,
    )
    .await;
    assert_eq!((status, &own["url"]), (StatusCode::OK, &conn["url"]));
    let other = server
        .send(Method::GET, "/v1/tenants/beta/connection", Some(key), None)
        .await;
    assert_problem(other, StatusCode::FORBIDDEN).await;
    let url = conn["url"].as_str().expect("url");
    let client = common::connect(url).await;
    let row = client
        .query_one("SELECT current_user::text, current_database()::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), conn["user"].as_str().unwrap());
    assert_eq!(row.get::<_, String>(1), conn["database"].as_str().unwrap());
}

fn codes(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|t| t["code"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn idempotency_keys_api_keys_and_ops_routes() {
    let server = TestServer::start().await;
    let body = json!({ "code": "idem", "name": "Idem" });
    let mut responses = Vec::new();
    for _ in 0..2 {
        let response = server
            .http
            .post(format!("{}/v1/tenants", server.base))
            .bearer_auth(&server.admin_key)
            .header("Idempotency-Key", "create-idem-1")
            .json(&body)
            .send()
            .await
            .unwrap();
        let replayed = response.headers().contains_key("idempotent-replayed");
        let (status, json) = split(response).await;
        responses.push((status, json, replayed));
    }
    assert_eq!(responses[0].0, StatusCode::CREATED);
    assert_eq!(
        responses[1].0,
        StatusCode::CREATED,
        "a replay returns the first response"
    );
    assert_eq!(responses[0].1, responses[1].1);
    assert_eq!((responses[0].2, responses[1].2), (false, true));
    let reused = server
        .http
        .post(format!("{}/v1/tenants", server.base))
        .bearer_auth(&server.admin_key)
        .header("Idempotency-Key", "create-idem-1")
        .json(&json!({ "code": "other", "name": "Other" }))
        .send()
        .await
        .unwrap();
    // 409: the key is taken by another request.
    assert_problem(reused, StatusCode::CONFLICT).await;

    let (status, issued) = server
        .admin(
            Method::POST,
            "/v1/api-keys",
            Some(json!({ "name": "ops", "scope": "admin" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let secret = issued["key_secret"].as_str().unwrap().to_owned();
    let (_, keys) = server.admin(Method::GET, "/v1/api-keys", None).await;
    let listed = keys.as_array().unwrap();
    assert_eq!(listed.len(), 2, "bootstrap + ops: {keys}");
    assert!(
        listed
            .iter()
            .all(|k| k.get("key_secret").is_none() && k.get("key_hash").is_none())
    );
    let stored: Vec<Vec<u8>> = server
        .env
        .admin_to(&format!("{}_auth", server.env.prefix))
        .await
        .query("SELECT key_hash FROM api_keys", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        stored.contains(&tenantd::hash_key(&secret).to_vec()),
        "only the SHA-256 is stored"
    );

    let ops = |path: &'static str| server.send(Method::GET, path, None, None);
    let health = ops("/healthz").await;
    assert!(health.headers().contains_key("x-request-id"));
    assert_eq!(
        split(health).await,
        (StatusCode::OK, json!({ "status": "ok" }))
    );
    assert_eq!(
        split(ops("/readyz").await).await,
        (StatusCode::OK, json!({ "status": "ready" }))
    );
    let metrics = ops("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(
            "tenantd_http_requests_total{route=\"/v1/tenants\",method=\"POST\",status=\"201\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("tenantd_http_request_duration_seconds_bucket"),
        "{metrics}"
    );
    openapi_lists_every_route(&server).await;
    server.stop().await;
}

async fn openapi_lists_every_route(server: &TestServer) {
    let (status, doc) = split(server.send(Method::GET, "/openapi.json", None, None).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string());
    let paths = doc["paths"].as_object().expect("paths");
    for (path, methods) in [
        ("/v1/tenants", &["post", "get"][..]),
        ("/v1/tenants/{code}", &["get", "patch", "delete"]),
        ("/v1/tenants/{code}/suspend", &["post"]),
        ("/v1/tenants/{code}/resume", &["post"]),
        ("/v1/tenants/{code}/connection", &["get"]),
        ("/v1/api-keys", &["post", "get"]),
        ("/v1/api-keys/{id}", &["delete"]),
        ("/v1/sql", &["post"]),
        ("/v1/migrations", &["get"]),
        ("/v1/migrations/run", &["post"]),
        ("/v1/operations/{id}", &["get"]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
        ("/metrics", &["get"]),
        ("/openapi.json", &["get"]),
    ] {
        for method in methods {
            let op = &paths[path][method];
            assert!(op.is_object(), "{method} {path} missing");
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path}"
            );
        }
    }
    for (path, method, status) in [
        ("/v1/migrations/run", "post", "202"),
        ("/v1/migrations/run", "post", "422"),
        ("/v1/migrations/run", "post", "403"),
        ("/v1/operations/{id}", "get", "404"),
        ("/v1/migrations", "get", "401"),
    ] {
        assert!(
            paths[path][method]["responses"][status].is_object(),
            "{method} {path}: no {status} response"
        );
    }
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for name in [
        "Problem",
        "CreateTenant",
        "TenantBody",
        "SqlRequest",
        "SqlResult",
        "CreateKey",
        "IssuedKey",
        "RunRequest",
        "RunAccepted",
        "OperationBody",
        "RunProgress",
        "TenantResultBody",
    ] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            for (_, response) in op["responses"].as_object().unwrap() {
                assert!(
                    response["description"].is_string(),
                    "{method} {path}: response without description"
                );
            }
        }
    }
}

#[tokio::test]
async fn serve_binary_prints_a_bootstrap_key_and_stops_on_sigterm() {
    let mut env = common::TestEnv::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    env.set("TENANTD_LISTEN", &format!("127.0.0.1:{port}"));
    let mut child = tokio::process::Command::from(env.command())
        .args(["serve", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn tenantd serve");
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let first = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
        .await
        .expect("serve starts")
        .unwrap()
        .expect("a line");
    let started: Value = serde_json::from_str(&first).unwrap();
    let key = started["bootstrap_admin_key"]
        .as_str()
        .expect("bootstrap key")
        .to_owned();
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/v1/tenants"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let pid = child.id().expect("pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait())
        .await
        .expect("stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let again = env
        .command()
        .args(["serve", "--json"])
        .env("TENANTD_LISTEN", busy.local_addr().unwrap().to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(!text.contains("tdk_"), "no second bootstrap key: {text}");
    assert_eq!(
        again.status.code(),
        Some(2),
        "a busy address is a configuration error"
    );
}
