//! Starts the real HTTP server on an ephemeral port over a [`TestEnv`] and
//! gives tests a small HTTP client for it. The server stops (gracefully)
//! and the test prefix is dropped when the [`TestServer`] is dropped.

#![allow(dead_code)]

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use tenantd::http::Application;
use tokio::sync::oneshot;

use crate::common::TestEnv;

/// A JWT secret used by the tests.
pub const JWT_SECRET: &str = "jwt-test-secret-0123456789abcdef0123456789";

/// A running server.
pub struct TestServer {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The bootstrap admin key.
    pub admin_key: String,
    /// HTTP client.
    pub http: reqwest::Client,
    /// The orchestrator the server uses.
    pub orchestrator: tenantd::Orchestrator,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// The environment (dropped last).
    pub env: TestEnv,
}

impl TestServer {
    /// Starts a server with the default test settings.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts a server with extra settings.
    pub async fn start_with(vars: &[(&str, &str)]) -> Self {
        let mut env = TestEnv::new();
        env.set("TENANTD_LISTEN", "127.0.0.1:0");
        env.set("JWT_SECRET", JWT_SECRET);
        for (name, value) in vars {
            env.set(name, value);
        }
        let app = Application::build(env.settings())
            .await
            .expect("server builds");
        let admin_key = app.bootstrap_key().expect("bootstrap key").to_owned();
        let (base, orchestrator, shutdown, task) = launch(app);
        Self {
            base,
            admin_key,
            http: reqwest::Client::new(),
            orchestrator,
            shutdown: Some(shutdown),
            task: Some(task),
            env,
        }
    }

    /// Stops the server gracefully and starts a new one over the same
    /// environment (e.g. after its migrations dir changed); the admin key stays.
    pub async fn restart(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
        let app = Application::build(self.env.settings())
            .await
            .expect("server rebuilds");
        let (base, orchestrator, shutdown, task) = launch(app);
        self.base = base;
        self.orchestrator = orchestrator;
        self.shutdown = Some(shutdown);
        self.task = Some(task);
    }

    /// Sends a request with an optional bearer token and JSON body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request sent")
    }

    /// An admin request; returns status and JSON body (Null when empty).
    pub async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let response = self.send(method, path, Some(&self.admin_key), body).await;
        split(response).await
    }

    /// Creates a tenant (201 expected) with this plan.
    pub async fn create_tenant(&self, code: &str, plan: &str) -> Value {
        let (status, body) = self
            .admin(
                Method::POST,
                "/v1/tenants",
                Some(json!({ "code": code, "name": format!("Tenant {code}"), "plan": plan })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    /// Creates a tenant key and returns its secret.
    pub async fn tenant_key(&self, code: &str) -> String {
        let (status, body) = self
            .admin(
                Method::POST,
                "/v1/api-keys",
                Some(
                    json!({ "name": format!("{code} backend"), "scope": "tenant", "tenant": code }),
                ),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["key_secret"].as_str().expect("secret").to_owned()
    }

    /// Runs `POST /v1/sql` with `token`.
    pub async fn sql(&self, token: &str, sql: &str, params: Value) -> (StatusCode, Value) {
        let response = self
            .send(
                Method::POST,
                "/v1/sql",
                Some(token),
                Some(json!({ "sql": sql, "params": params })),
            )
            .await;
        split(response).await
    }

    /// Stops the server gracefully and waits for it, keeping the
    /// environment (its prefix is dropped with `self`).
    pub async fn stop_serving(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.orchestrator.close();
    }
}

/// Serves `app` on a task; returns its base URL, orchestrator, shutdown
/// trigger and task.
fn launch(
    app: Application,
) -> (
    String,
    tenantd::Orchestrator,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let base = format!("http://{}", app.local_addr().expect("bound"));
    let orchestrator = app.orchestrator().clone();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        app.run_until(async {
            let _ = rx.await;
        })
        .await
        .expect("server runs");
    });
    (base, orchestrator, tx, task)
}

/// Status and JSON body of a response.
pub async fn split(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

/// Asserts that `response` is a problem+json with `status`; returns the body.
pub async fn assert_problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "content type of a {} response",
        response.status()
    );
    assert!(response.headers().contains_key("x-request-id"));
    let (got, body) = split(response).await;
    assert_eq!(got, status, "{body}");
    check_problem(&body, status);
    body
}

/// Asserts the members of a problem body.
pub fn check_problem(body: &Value, status: StatusCode) {
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("https://")),
        "{body}"
    );
    assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert!(
        body["detail"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
}

/// An HS256 JWT for `tenant_id` expiring `exp_in` seconds from now (negative: expired).
pub fn jwt(tenant_id: &str, exp_in: i64, secret: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims =
        json!({ "sub": "user-1", "tenant_id": tenant_id, "iat": now, "exp": now + exp_in });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("jwt")
}
