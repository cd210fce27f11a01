//! Malformed requests (each answered with its status and a problem+json
//! body, leaving no partial state) and concurrent creates against the real
//! server.

use crate::http_support::{TestServer, assert_problem};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// One malformed request: method, path, content type, raw body, expected status.
type Case = (
    Method,
    &'static str,
    Option<&'static str>,
    String,
    StatusCode,
);

fn cases() -> Vec<Case> {
    let json = Some("application/json");
    let s = |t: &str| t.to_owned();
    vec![
        (
            Method::POST,
            "/v1/tenants",
            json,
            s("{\"code\":"),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/tenants",
            json,
            s("[1,2"),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/tenants",
            json,
            s("{\"code\":5,\"name\":\"x\"}"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/tenants",
            json,
            s("{\"code\":\"abc\",\"name\":\"x\",\"colour\":\"red\"}"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/tenants",
            json,
            s("{\"code\":\"abc\"}"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/tenants",
            json,
            s("[]"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/tenants",
            None,
            s("{\"code\":\"abc\",\"name\":\"x\"}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            Method::POST,
            "/v1/tenants",
            Some("text/plain"),
            s("{\"code\":\"abc\",\"name\":\"x\"}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            Method::POST,
            "/v1/tenants",
            json,
            format!("{{\"code\":\"abc\",\"name\":\"{}\"}}", "x".repeat(3000)),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            Method::POST,
            "/v1/tenants",
            json,
            s("{\"code\":\"A B\",\"name\":\"x\"}"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/tenants",
            json,
            s("{\"code\":\"auth\",\"name\":\"x\"}"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/tenants",
            json,
            s("{\"code\":\"abc\",\"name\":\"x\",\"region\":\"XX\"}"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/tenants",
            json,
            s("{\"code\":\"abc\",\"name\":\"x\",\"plan\":\"gold\"}"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/tenants",
            json,
            s("{\"code\":\"abc\",\"name\":\"  \"}"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/tenants",
            json,
            s("{\"code\":\"abc\",\"name\":\"x\",\"admin_email\":\"nope\"}"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::GET,
            "/v2/nothing",
            None,
            s(""),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::PUT,
            "/v1/tenants",
            json,
            s("{}"),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Method::DELETE,
            "/v1/sql",
            None,
            s(""),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Method::GET,
            "/v1/tenants?status=zombie",
            None,
            s(""),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/tenants?limit=ten",
            None,
            s(""),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/tenants?bogus=1",
            None,
            s(""),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/tenants/Not-A-Code",
            None,
            s(""),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::DELETE,
            "/v1/api-keys/not-a-uuid",
            None,
            s(""),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::PATCH,
            "/v1/tenants/ghost",
            json,
            s("{\"name\":\"x\"}"),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "/v1/tenants/ghost/suspend",
            json,
            s("{bad"),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/tenants/ghost/suspend",
            json,
            s("{\"why\":\"x\"}"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/tenants/ghost/resume",
            None,
            s(""),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "/v1/api-keys",
            json,
            s("{\"name\":\"x\",\"scope\":\"root\"}"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/api-keys",
            json,
            s("{\"name\":\"x\",\"scope\":\"tenant\"}"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/api-keys",
            json,
            s("{\"name\":\"x\",\"scope\":\"admin\",\"tenant\":\"acme\"}"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/api-keys",
            json,
            s("{\"name\":\"x\",\"scope\":\"tenant\",\"tenant\":\"ghost\"}"),
            StatusCode::NOT_FOUND,
        ),
    ]
}

#[tokio::test]
async fn malformed_requests_get_problems_and_leave_nothing_behind() {
    let server = TestServer::start_with(&[("TENANTD_HTTP_BODY_LIMIT", "2048")]).await;
    server.create_tenant("acme", "pro").await;
    let databases_before = server.env.databases().await;
    for (method, path, content_type, body, status) in cases() {
        let mut request = server
            .http
            .request(method.clone(), format!("{}{path}", server.base))
            .bearer_auth(&server.admin_key);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        if !body.is_empty() {
            request = request.body(body.clone());
        }
        let response = request.send().await.unwrap();
        let got = response.status();
        assert_eq!(got, status, "{method} {path} {body:.80}");
        assert_problem(response, status).await;
    }
    let (status, patched) = server
        .admin(Method::PATCH, "/v1/tenants/acme", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{patched}");
    let key = server.tenant_key("acme").await;
    for body in [
        json!({ "sql": 1 }),
        json!({ "query": "SELECT 1" }),
        json!([]),
        json!({ "sql": "SELECT 1", "params": {} }),
    ] {
        let response = server
            .send(Method::POST, "/v1/sql", Some(&key), Some(body.clone()))
            .await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let empty = server
        .send(
            Method::POST,
            "/v1/sql",
            Some(&key),
            Some(json!({ "sql": "  " })),
        )
        .await;
    assert_problem(empty, StatusCode::BAD_REQUEST).await;
    let long_key = server
        .http
        .post(format!("{}/v1/tenants", server.base))
        .bearer_auth(&server.admin_key)
        .header("Idempotency-Key", "k".repeat(300))
        .json(&json!({ "code": "longkey", "name": "x" }))
        .send()
        .await
        .unwrap();
    assert_problem(long_key, StatusCode::BAD_REQUEST).await;

    let (_, page) = server.admin(Method::GET, "/v1/tenants", None).await;
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        1,
        "no partial tenant: {page}"
    );
    assert_eq!(
        server.env.databases().await,
        databases_before,
        "no partial database"
    );
    server.stop().await;
}

#[tokio::test]
async fn parallel_creates() {
    let server = TestServer::start().await;
    let distinct = futures::future::join_all((0..20).map(|i| {
        server.admin(
            Method::POST,
            "/v1/tenants",
            Some(json!({ "code": format!("par_{i:02}"), "name": format!("Parallel {i}") })),
        )
    }))
    .await;
    for (status, body) in &distinct {
        assert_eq!(*status, StatusCode::CREATED, "{body}");
    }
    let same = futures::future::join_all((0..10).map(|i| {
        server.admin(
            Method::POST,
            "/v1/tenants",
            Some(json!({ "code": "contested", "name": format!("Contender {i}") })),
        )
    }))
    .await;
    let created = same
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{same:?}");
    for (status, body) in same.iter().filter(|(s, _)| *s != StatusCode::CREATED) {
        assert_eq!(*status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["existing"], "/v1/tenants/contested");
    }
    let (_, page) = server
        .admin(Method::GET, "/v1/tenants?limit=100", None)
        .await;
    let items: &Vec<Value> = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 21);
    assert!(items.iter().all(|t| t["status"] == "active"), "{page}");
    server.stop().await;
}
