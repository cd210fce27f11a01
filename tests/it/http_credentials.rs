//! Credentials against the real server: each JWT edge (expired beyond and
//! within the leeway, `nbf` in the future, a lifetime over the maximum,
//! wrong `aud` or `iss`), the limit on failed authentications per client
//! address (429 + Retry-After, before credentials are read), and who may
//! read a tenant's role password at `/connection`.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::http_support::{JWT_SECRET, TestServer, assert_problem, split};

/// An HS256 JWT with these claims over the defaults (`sub`, `tenant_id`,
/// `iat` = now, `exp` = now + 600); a `null` claim is left out.
fn token(tenant_id: &str, claims: Value) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut all = json!({ "sub": "user-1", "tenant_id": tenant_id, "iat": now, "exp": now + 600 });
    for (name, value) in claims.as_object().expect("claims") {
        let value = match value {
            Value::Number(n) if name != "aud" && name != "iss" => {
                json!(now + n.as_i64().expect("offset"))
            }
            other => other.clone(),
        };
        if value.is_null() {
            all.as_object_mut().unwrap().remove(name);
        } else {
            all[name] = value;
        }
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &all,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("jwt")
}

/// `POST /v1/sql` with `jwt`: the status and, for a problem, its detail.
async fn sql_with(server: &TestServer, jwt: &str) -> (StatusCode, String) {
    let response = server
        .send(
            Method::POST,
            "/v1/sql",
            Some(jwt),
            Some(json!({ "sql": "SELECT 1" })),
        )
        .await;
    let (status, body) = split(response).await;
    (
        status,
        body["detail"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn jwt_edges_are_refused_or_accepted_by_the_rules() {
    let server =
        TestServer::start_with(&[("JWT_LEEWAY_SECS", "5"), ("JWT_MAX_LIFETIME_SECS", "3600")])
            .await;
    let tenant = server.create_tenant("acme", "pro").await;
    let id = tenant["id"].as_str().unwrap().to_owned();

    // Expired 3 s ago: within the 5 s leeway. 20 s ago: refused (the
    // previous default accepted 60 s).
    let (status, detail) = sql_with(&server, &token(&id, json!({ "exp": -3 }))).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    let (status, detail) = sql_with(&server, &token(&id, json!({ "exp": -20 }))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(detail.contains("expired"), "{detail}");

    // nbf in the future (beyond the leeway) is refused; within it, accepted.
    let (status, detail) = sql_with(&server, &token(&id, json!({ "nbf": 120 }))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(detail.contains("nbf"), "{detail}");
    let (status, detail) = sql_with(&server, &token(&id, json!({ "nbf": 2 }))).await;
    assert_eq!(status, StatusCode::OK, "{detail}");

    // Lifetime: exp - iat over the maximum; without iat, exp - now.
    let (status, detail) = sql_with(&server, &token(&id, json!({ "exp": 7200 }))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(detail.contains("JWT_MAX_LIFETIME_SECS"), "{detail}");
    let no_iat = token(&id, json!({ "iat": null, "exp": 7200 }));
    assert_eq!(sql_with(&server, &no_iat).await.0, StatusCode::UNAUTHORIZED);
    let (status, detail) = sql_with(&server, &token(&id, json!({ "exp": 3500 }))).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    // Issued in the future: refused.
    let (status, detail) = sql_with(&server, &token(&id, json!({ "iat": 300 }))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(detail.contains("iat"), "{detail}");

    // Without JWT_AUDIENCE / JWT_ISSUER, aud and iss are not checked.
    let any = token(&id, json!({ "aud": "elsewhere", "iss": "someone" }));
    assert_eq!(sql_with(&server, &any).await.0, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn audience_and_issuer_are_checked_when_configured() {
    let server = TestServer::start_with(&[
        ("JWT_AUDIENCE", "tenantd-api"),
        ("JWT_ISSUER", "https://login.example"),
    ])
    .await;
    let tenant = server.create_tenant("acme", "pro").await;
    let id = tenant["id"].as_str().unwrap().to_owned();
    let good = json!({ "aud": "tenantd-api", "iss": "https://login.example" });
    let (status, detail) = sql_with(&server, &token(&id, good)).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    let listed = json!({ "aud": ["other", "tenantd-api"], "iss": "https://login.example" });
    assert_eq!(
        sql_with(&server, &token(&id, listed)).await.0,
        StatusCode::OK
    );

    let wrong_aud = json!({ "aud": "other-api", "iss": "https://login.example" });
    let (status, detail) = sql_with(&server, &token(&id, wrong_aud)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(detail.contains("aud"), "{detail}");
    let wrong_iss = json!({ "aud": "tenantd-api", "iss": "https://evil.example" });
    let (status, detail) = sql_with(&server, &token(&id, wrong_iss)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(detail.contains("iss"), "{detail}");
    let missing = json!({ "iss": "https://login.example" });
    assert_eq!(
        sql_with(&server, &token(&id, missing)).await.0,
        StatusCode::UNAUTHORIZED
    );
    server.stop().await;
}

#[tokio::test]
async fn failed_authentications_are_limited_per_address() {
    let server = TestServer::start_with(&[("TENANTD_AUTH_FAILURES_PER_MIN", "5")]).await;
    let list = |token: &'static str| {
        let server = &server;
        async move {
            server
                .send(Method::GET, "/v1/tenants", Some(token), None)
                .await
        }
    };
    for _ in 0..5 {
        assert_problem(list("tdk_guess").await, StatusCode::UNAUTHORIZED).await;
    }
    let limited = list("tdk_guess").await;
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let body = assert_problem(limited, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("TENANTD_AUTH_FAILURES_PER_MIN"),
        "{body}"
    );
    // While refused, even a valid key from that address is not looked at.
    let admin = server
        .send(Method::GET, "/v1/tenants", Some(&server.admin_key), None)
        .await;
    assert_problem(admin, StatusCode::TOO_MANY_REQUESTS).await;
    // Routes without credentials still answer.
    let health = server.send(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status(), StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn successful_authentications_do_not_count() {
    let server = TestServer::start_with(&[("TENANTD_AUTH_FAILURES_PER_MIN", "2")]).await;
    for _ in 0..10 {
        let (status, _) = server.admin(Method::GET, "/v1/tenants", None).await;
        assert_eq!(status, StatusCode::OK);
    }
    let wrong = server
        .send(Method::GET, "/v1/tenants", Some("tdk_guess"), None)
        .await;
    assert_problem(wrong, StatusCode::UNAUTHORIZED).await;
    server.stop().await;
}

#[tokio::test]
async fn only_admin_and_the_tenants_own_key_read_its_password() {
    let server = TestServer::start().await;
    let tenant = server.create_tenant("acme", "pro").await;
    server.create_tenant("beta", "pro").await;
    let id = tenant["id"].as_str().unwrap().to_owned();
    let key = server.tenant_key("acme").await;
    let path = "/v1/tenants/acme/connection";

    let (status, body) = server.admin(Method::GET, path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["password"].as_str().is_some_and(|p| !p.is_empty()));
    let own = server.send(Method::GET, path, Some(&key), None).await;
    assert_eq!(own.status(), StatusCode::OK);
    let other = server
        .send(Method::GET, "/v1/tenants/beta/connection", Some(&key), None)
        .await;
    assert_problem(other, StatusCode::FORBIDDEN).await;
    let jwt = token(&id, json!({}));
    let by_jwt = server.send(Method::GET, path, Some(&jwt), None).await;
    let body = assert_problem(by_jwt, StatusCode::FORBIDDEN).await;
    assert!(body["detail"].as_str().unwrap().contains("JWT"), "{body}");
    assert!(body.get("password").is_none());

    // The rule is in the OpenAPI document.
    let (_, doc) = split(server.send(Method::GET, "/openapi.json", None, None).await).await;
    let op = &doc["paths"]["/v1/tenants/{code}/connection"]["get"];
    assert!(
        op["responses"]["403"]["description"]
            .as_str()
            .unwrap()
            .contains("JWT"),
        "{op}"
    );
    assert!(op["responses"]["429"].is_object(), "{op}");
    server.stop().await;
}
