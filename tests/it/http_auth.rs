//! Every way a request can fail authentication or authorisation, against
//! the real server: no key, malformed header, wrong key, revoked key,
//! expired or badly signed JWT, tenant credentials on admin routes, admin
//! keys on tenant routes — and the per-plan rate limit (429 + Retry-After).

use crate::http_support::{JWT_SECRET, TestServer, assert_problem, jwt};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn every_auth_failure_is_a_problem() {
    let server = TestServer::start_with(&[("TENANTD_RATE_FREE", "3")]).await;
    let tenant = server.create_tenant("acme", "free").await;
    let tenant_id = tenant["id"].as_str().unwrap().to_owned();
    let key = server.tenant_key("acme").await;
    let admin = server.admin_key.clone();
    let list = |token: Option<String>| {
        let server = &server;
        async move {
            server
                .send(Method::GET, "/v1/tenants", token.as_deref(), None)
                .await
        }
    };

    let body = assert_problem(list(None).await, StatusCode::UNAUTHORIZED).await;
    assert!(body["detail"].as_str().unwrap().contains("Authorization"));
    let basic = server
        .http
        .get(format!("{}/v1/tenants", server.base))
        .header("Authorization", "Basic YWRtaW46YWRtaW4=")
        .send()
        .await
        .unwrap();
    assert_problem(basic, StatusCode::UNAUTHORIZED).await;
    assert_problem(
        list(Some("tdk_not-a-real-key".into())).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_problem(list(Some("garbage".into())).await, StatusCode::UNAUTHORIZED).await;
    assert_problem(list(Some(key.clone())).await, StatusCode::FORBIDDEN).await;
    let create_as_tenant = server
        .send(
            Method::POST,
            "/v1/tenants",
            Some(&key),
            Some(json!({ "code": "evil", "name": "Evil" })),
        )
        .await;
    assert_problem(create_as_tenant, StatusCode::FORBIDDEN).await;
    let keys_as_tenant = server
        .send(
            Method::POST,
            "/v1/api-keys",
            Some(&key),
            Some(json!({ "name": "x", "scope": "admin" })),
        )
        .await;
    assert_problem(keys_as_tenant, StatusCode::FORBIDDEN).await;
    let sql_as_admin = server
        .send(
            Method::POST,
            "/v1/sql",
            Some(&admin),
            Some(json!({ "sql": "SELECT 1" })),
        )
        .await;
    assert_problem(sql_as_admin, StatusCode::FORBIDDEN).await;

    let expired = jwt(&tenant_id, -3600, JWT_SECRET);
    let body = assert_problem(
        server
            .send(
                Method::POST,
                "/v1/sql",
                Some(&expired),
                Some(json!({ "sql": "SELECT 1" })),
            )
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    let forged = jwt(
        &tenant_id,
        3600,
        "another-secret-0123456789abcdef0123456789",
    );
    assert_problem(
        server
            .send(
                Method::POST,
                "/v1/sql",
                Some(&forged),
                Some(json!({ "sql": "SELECT 1" })),
            )
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let stranger = jwt("00000000-0000-0000-0000-000000000001", 3600, JWT_SECRET);
    assert_problem(
        server
            .send(
                Method::POST,
                "/v1/sql",
                Some(&stranger),
                Some(json!({ "sql": "SELECT 1" })),
            )
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let valid = jwt(&tenant_id, 3600, JWT_SECRET);
    let (status, body) = server
        .sql(&valid, "SELECT current_database()::text AS db", json!([]))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"][0][0], format!("{}_acme", server.env.prefix));
    assert_problem(list(Some(valid)).await, StatusCode::FORBIDDEN).await;

    let (_, keys) = server
        .admin(Method::GET, "/v1/api-keys?tenant=acme", None)
        .await;
    let id = keys[0]["id"].as_str().unwrap().to_owned();
    let (status, _) = server
        .admin(Method::DELETE, &format!("/v1/api-keys/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let revoked = server
        .send(
            Method::POST,
            "/v1/sql",
            Some(&key),
            Some(json!({ "sql": "SELECT 1" })),
        )
        .await;
    assert_problem(revoked, StatusCode::UNAUTHORIZED).await;
    let again = server
        .send(
            Method::DELETE,
            &format!("/v1/api-keys/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_problem(again, StatusCode::NOT_FOUND).await;
    server.stop().await;
}

#[tokio::test]
async fn rate_limits_follow_the_plan() {
    let server =
        TestServer::start_with(&[("TENANTD_RATE_FREE", "2"), ("TENANTD_RATE_PRO", "50")]).await;
    server.create_tenant("small", "free").await;
    server.create_tenant("large", "pro").await;
    let small = server.tenant_key("small").await;
    let large = server.tenant_key("large").await;
    let mut limited = None;
    for _ in 0..4 {
        let response = server
            .send(
                Method::POST,
                "/v1/sql",
                Some(&small),
                Some(json!({ "sql": "SELECT 1" })),
            )
            .await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(response);
            break;
        }
        assert_eq!(response.status(), StatusCode::OK);
    }
    let limited = limited.expect("a free tenant is limited to 2 requests per second");
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert_problem(limited, StatusCode::TOO_MANY_REQUESTS).await;
    for _ in 0..6 {
        let (status, body) = server.sql(&large, "SELECT 1", json!([])).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "the pro tenant has its own allowance: {body}"
        );
    }
    server.stop().await;
}
