//! The HTTP API (`tenantd serve`): an axum service where admins provision
//! tenant databases and backends run statements routed by the tenant of
//! their credentials.
//!
//! [`Application::build`] connects, runs `init` and `reconcile`, makes a
//! bootstrap admin key when the catalog has none and binds the listener;
//! [`Application::run_until`] serves until a shutdown signal, finishes the
//! requests in flight and closes the pools. Tests bind port 0 and talk HTTP
//! to the real server.
//!
//! One file per resource: `tenants` (with its request forms,
//! `tenant_forms`, and the `Idempotency-Key` store, `idempotency`),
//! `api_keys`, `sql` (with its statement gate, `sql_guard`, and the
//! JSON ↔ PostgreSQL value mapping, `sql_values`), `health`, `metrics`,
//! `openapi`, `migrations` and `operations` (fleet runs in flight:
//! `runs`). Around them: `auth` (who is calling), `auth_failures` (failed
//! authentications per client address), `ratelimit` (requests
//! per tenant by plan), `state` (the handles every handler shares),
//! `error` (every failure as problem+json), `extract` (rejections as
//! problem+json) and `serve` (`tenantd serve`: signals, printing the
//! listen address). Beneath them, `listener` (the accept loop: connection
//! cap, shutdown), `connection` (one connection's phases and timeouts) and
//! `request_body` (the body's deadline).

mod api_keys;
mod auth;
mod auth_failures;
mod connection;
mod error;
mod extract;
mod health;
mod idempotency;
mod listener;
mod metrics;
mod migrations;
mod openapi;
mod operations;
mod ratelimit;
mod request_body;
mod runs;
mod serve;
mod sql;
mod sql_guard;
mod sql_values;
mod state;
mod tenant_forms;
mod tenants;

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) use api_keys::IssuedKey;
pub use error::{ApiError, Problem};
pub(crate) use serve::serve;
pub use state::AppState;

use crate::Orchestrator;
use crate::config::Settings;
use crate::error::{Classify, Error, ErrorKind};

/// The server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address cannot be bound.
    #[error("cannot listen on {address} (TENANTD_LISTEN): {source}; choose a free address:port")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server failed while serving.
    #[error("the HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
    /// Connecting, `init`, `reconcile` or the bootstrap key failed.
    #[error(transparent)]
    Library(#[from] Error),
}

impl Classify for ServeError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Bind { .. } => ErrorKind::InvalidInput,
            Self::Serve(_) => ErrorKind::Internal,
            Self::Library(e) => e.kind(),
        }
    }
}

/// A built server, bound and ready to serve.
pub struct Application {
    listener: tokio::net::TcpListener,
    router: Router,
    orchestrator: Orchestrator,
    bootstrap_key: Option<String>,
    runs: runs::RunRegistry,
}

impl Application {
    /// Connects with `settings`, runs `init` and `reconcile`, creates the
    /// bootstrap admin key if the catalog has no admin key, and binds
    /// `settings.listen` (port 0 picks a free port).
    pub async fn build(settings: Settings) -> Result<Self, ServeError> {
        let orchestrator = Orchestrator::connect(settings).await?;
        orchestrator.init().await?;
        let report = orchestrator.reconcile().await?;
        if !report.is_clean() {
            tracing::warn!(?report, "reconciled interrupted life-cycle work");
        }
        let bootstrap_key = orchestrator
            .issue_bootstrap_key()
            .await?
            .map(|issued| issued.secret);
        let address = orchestrator.settings().listen;
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| ServeError::Bind { address, source })?;
        let state = AppState::new(orchestrator.clone(), orchestrator.settings().http.clone());
        Ok(Self {
            listener,
            runs: state.runs().clone(),
            router: router(state),
            orchestrator,
            bootstrap_key,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, ServeError> {
        self.listener.local_addr().map_err(ServeError::Serve)
    }

    /// The admin key created by this start (the catalog had none), shown once.
    pub fn bootstrap_key(&self) -> Option<&str> {
        self.bootstrap_key.as_deref()
    }

    /// The orchestrator the server uses.
    pub fn orchestrator(&self) -> &Orchestrator {
        &self.orchestrator
    }

    /// Serves until `shutdown` completes, then stops accepting, closes the
    /// connections without a request, finishes the requests in flight, waits for the fleet runs started over HTTP to end
    /// (so their operations are closed) and closes the pools.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let limits = self.orchestrator.settings().http.connections;
        listener::serve(self.listener, self.router, limits, shutdown).await;
        self.runs.wait().await;
        self.orchestrator.close();
        Ok(())
    }
}

/// The whole API over `state`.
pub fn router(state: AppState) -> Router {
    let body_limit = state.settings().body_limit;
    let (api, doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(tenants::router())
        .merge(api_keys::router())
        .merge(migrations::router())
        .merge(operations::router())
        .merge(sql::router())
        .merge(health::router())
        .merge(metrics::router())
        .routes(routes!(openapi::openapi_json))
        .split_for_parts();
    openapi::publish(&doc);
    metrics::handle();
    api.fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(CatchPanicLayer::custom(|_| panicked()))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(RandomRequestId))
        .with_state(state)
}

/// Makes the `x-request-id` of a request that has none: a random (v4)
/// UUID from the thread's generator, so a request costs no system call
/// for it (tower-http's `MakeRequestUuid` reads the OS's random source
/// every time).
#[derive(Debug, Clone, Copy, Default)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        let mut text = uuid::Uuid::encode_buffer();
        axum::http::HeaderValue::from_str(id.hyphenated().encode_lower(&mut text))
            .ok()
            .map(RequestId::new)
    }
}

fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "http",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id,
        tenant = tracing::field::Empty,
    )
}

async fn unknown_route() -> ApiError {
    ApiError::not_found("no such route; GET /openapi.json lists every route")
}

async fn wrong_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this route does not take this method; GET /openapi.json lists the methods of every route",
    )
}

fn panicked() -> Response {
    ApiError::internal(&"a request handler panicked").into_response()
}
