//! `GET /metrics` in Prometheus text: requests by route, method and status,
//! latency histograms by route, and whatever else the process records
//! through the `metrics` facade (pool gauges), plus the server connections
//! opened as tenant roles, read from `pg_stat_activity` at each scrape. The recorder is installed
//! once per process and shared by every server it runs.

use std::collections::HashMap;
use std::sync::{OnceLock, PoisonError, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{Counter, Gauge, Histogram};
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
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let in_flight = in_flight();
    in_flight.increment(1.0);
    let response = next.run(request).await;
    in_flight.decrement(1.0);
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let (requests, duration) = request_metrics(route, &method, response.status());
    requests.increment(1);
    duration.record(started.elapsed().as_secs_f64());
    response
}

/// The in-flight gauge, registered once.
fn in_flight() -> &'static Gauge {
    static GAUGE: OnceLock<Gauge> = OnceLock::new();
    GAUGE.get_or_init(|| metrics::gauge!(IN_FLIGHT))
}

/// The counter and histogram of one route, method and status.
type RequestMetrics = (Counter, Histogram);

/// Registered request metrics by route template, then method and status:
/// registered once each (route templates are few), so a request neither
/// allocates its labels nor looks them up in the recorder.
static REGISTERED: OnceLock<RwLock<ByRoute>> = OnceLock::new();

/// Request metrics by route template, then method and status.
type ByRoute = HashMap<String, Vec<(Method, StatusCode, RequestMetrics)>>;

/// The request metrics labelled `route`, `method` and `status`.
fn request_metrics(route: &str, method: &Method, status: StatusCode) -> RequestMetrics {
    let registered = REGISTERED.get_or_init(RwLock::default);
    let find = |by_route: &ByRoute| {
        by_route.get(route).and_then(|entries| {
            entries
                .iter()
                .find(|(m, s, _)| m == method && *s == status)
                .map(|(_, _, found)| found.clone())
        })
    };
    if let Some(found) = find(&registered.read().unwrap_or_else(PoisonError::into_inner)) {
        return found;
    }
    let mut by_route = registered.write().unwrap_or_else(PoisonError::into_inner);
    if let Some(found) = find(&by_route) {
        return found;
    }
    let (route_label, method_label) = (route.to_owned(), method.to_string());
    let created = (
        metrics::counter!(REQUESTS, "route" => route_label.clone(), "method" => method_label.clone(),
            "status" => status.as_u16().to_string()),
        metrics::histogram!(DURATION, "route" => route_label, "method" => method_label),
    );
    by_route
        .entry(route.to_owned())
        .or_default()
        .push((method.clone(), status, created.clone()));
    created
}
