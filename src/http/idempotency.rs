//! `Idempotency-Key` for `POST /v1/tenants`: the first response to a key is
//! kept (in this process, for a day) and replayed to every retry with the
//! same key and body; concurrent retries wait for the first one to finish.
//! 5xx responses are not kept, so a retry after a fault runs again.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use moka::future::Cache;
use tokio::sync::OnceCell;

use super::error::ApiError;

/// How long a response is replayed.
const KEEP_FOR: Duration = Duration::from_secs(24 * 3600);
/// Keys remembered at most.
const CAPACITY: u64 = 100_000;
/// Longest accepted key.
const MAX_KEY_LEN: usize = 255;
/// Largest response body kept.
const MAX_BODY: usize = 1 << 20;
/// Marks a replayed response.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// A response kept for replay, with the fingerprint of its request.
#[derive(Debug)]
struct Stored {
    request: [u8; 32],
    status: StatusCode,
    location: Option<HeaderValue>,
    content_type: Option<HeaderValue>,
    body: Bytes,
}

/// Responses by idempotency key.
pub struct IdempotencyStore {
    cells: Cache<String, Arc<OnceCell<Stored>>>,
}

impl Default for IdempotencyStore {
    fn default() -> Self {
        Self {
            cells: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(KEEP_FOR)
                .build(),
        }
    }
}

impl IdempotencyStore {
    /// Runs `work` once per (`scope`, `key`) and replays its response; a
    /// retry whose request fingerprint differs is refused with 422.
    pub async fn run<F, Fut>(
        &self,
        scope: &str,
        key: &str,
        request: [u8; 32],
        work: F,
    ) -> Result<Response, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Response>,
    {
        if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::bad_request(format!(
                "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters without spaces"
            )));
        }
        let cell = self
            .cells
            .get_with(format!("{scope}\u{0}{key}"), async { Arc::default() })
            .await;
        let mut fresh = None;
        let mut ran = false;
        let stored = cell
            .get_or_try_init(|| async {
                ran = true;
                let response = work().await;
                if response.status().is_server_error() {
                    fresh = Some(response);
                    return Err(());
                }
                Ok(keep(request, response).await)
            })
            .await;
        match (stored, fresh) {
            (Err(()), Some(response)) => Ok(response),
            (Err(()), None) => Err(ApiError::unavailable(
                "the first request with this key failed",
            )),
            // 409: the key is taken by another request (no schema can say so).
            (Ok(stored), _) if stored.request != request => Err(ApiError::conflict(
                "this Idempotency-Key was used with a different request body; use a new key",
            )),
            (Ok(stored), _) => Ok(replay(stored, !ran)),
        }
    }
}

async fn keep(request: [u8; 32], response: Response) -> Stored {
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .unwrap_or_default();
    Stored {
        request,
        status: parts.status,
        location: parts.headers.get(header::LOCATION).cloned(),
        content_type: parts.headers.get(header::CONTENT_TYPE).cloned(),
        body,
    }
}

fn replay(stored: &Stored, replayed: bool) -> Response {
    let mut response = (stored.status, stored.body.clone()).into_response();
    let headers = response.headers_mut();
    if let Some(location) = &stored.location {
        headers.insert(header::LOCATION, location.clone());
    }
    if let Some(content_type) = &stored.content_type {
        headers.insert(header::CONTENT_TYPE, content_type.clone());
    }
    if replayed {
        headers.insert(REPLAYED, HeaderValue::from_static("true"));
    }
    response
}
