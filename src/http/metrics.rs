//! `GET /metrics` in Prometheus text: requests by route, method and status,
//! latency histograms by route, and whatever else the process records
//! through the `metrics` facade (pool gauges), plus the server connections
//! opened as tenant roles, read from `pg_stat_activity` at each scrape. The recorder is installed
//! once per process and shared by every server it runs.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::state::AppState;

/// Request counter.
const REQUESTS: &str = "tenantd_http_requests_total";
/// Request latency histogram.
const DURATION: &str = "tenantd_http_request_duration_seconds";
/// Requests being served.
const IN_FLIGHT: &str = "tenantd_http_requests_in_flight";
/// Server connections opened as tenant roles, by state.
const TENANT_CONNECTIONS: &str = "tenantd_tenant_connections";
/// Latency buckets, seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's Prometheus recorder (installed on first use; `None` when
/// another recorder was installed first).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(DURATION.to_owned()), BUCKETS)
                .ok()?
                .install_recorder()
                .ok()
        })
        .as_ref()
}

/// The route of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> Response {
    record_server_connections(&state).await;
    let text = handle().map(PrometheusHandle::render).unwrap_or_default();
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

/// Sets the gauges of the server connections opened as tenant roles (the
/// tenant pools' connections, seen from PostgreSQL), by state.
async fn record_server_connections(state: &AppState) {
    match state.orchestrator().tenant_connection_counts().await {
        Ok(counts) => {
            for (label, count) in [("active", counts.active), ("idle", counts.idle)] {
                metrics::gauge!(TENANT_CONNECTIONS, "state" => label).set(count as f64);
            }
        }
        Err(error) => tracing::debug!(%error, "tenant connection gauges not refreshed"),
    }
}

/// Middleware: counts and times every request by its route template.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    metrics::gauge!(IN_FLIGHT).increment(1.0);
    let response = next.run(request).await;
    metrics::gauge!(IN_FLIGHT).decrement(1.0);
    let status = response.status().as_u16().to_string();
    metrics::counter!(REQUESTS, "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(DURATION, "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}
