//! The accept loop of `tenantd serve`: HTTP/1.1 connections served by hyper
//! under a cap on open connections (`TENANTD_HTTP_MAX_CONNECTIONS`), each
//! with its timeouts ([`super::connection`]), and a shutdown that closes
//! every connection without a request at once and lets the requests in
//! flight finish.
//!
//! axum's `serve` takes no limits (no connection cap, no header, body or
//! idle timeout) and its graceful shutdown waits for a connection that never
//! sent a request until the client goes; hence this loop. When the cap is
//! reached, the connection that has waited longest without a request is
//! closed to make room, so idle or slow clients cannot keep a working
//! client out; only when every connection has a request in flight does a
//! new one wait for a slot.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::connection::{self, Activity};
use crate::config::ConnectionLimits;

/// How long the loop pauses after a failed accept (e.g. out of file descriptors).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Serves `router` on `listener` until `shutdown` completes; then closes
/// the idle connections, finishes the requests in flight and returns when
/// every connection is closed.
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Slots::new(limits.max_connections);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "cannot accept an HTTP connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            slot = slots.clone().take() => slot,
        };
        spawn_connection(stream, peer, router.clone(), slot, limits, stop_rx.clone());
    }
    drop(listener);
    let _ = stop_tx.send(true);
    slots.all_returned().await;
}

fn spawn_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    slot: Slot,
    limits: ConnectionLimits,
    stop: watch::Receiver<bool>,
) {
    // Responses leave at once, not held back by Nagle's algorithm until
    // the client acknowledges the previous segment.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY on an accepted connection");
    }
    tokio::spawn(async move {
        connection::run(stream, peer, router, slot.activity.clone(), limits, stop).await;
        drop(slot);
    });
}

/// The open connections: one semaphore permit each, and their activity so
/// that a full house can close the one that waited longest for a request.
struct Slots {
    permits: Arc<Semaphore>,
    capacity: usize,
    open: Mutex<HashMap<u64, Arc<Activity>>>,
    next_id: AtomicU64,
}

/// One open connection's place; given back when dropped.
struct Slot {
    id: u64,
    activity: Arc<Activity>,
    slots: Arc<Slots>,
    _permit: OwnedSemaphorePermit,
}

impl Slots {
    fn new(capacity: usize) -> Arc<Self> {
        let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(capacity)),
            capacity,
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        })
    }

    /// A place for a new connection: a free one, else one freed by closing
    /// the connection that waited longest for a request (or, when all are
    /// busy, the first one given back).
    async fn take(self: Arc<Self>) -> Slot {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                self.evict_longest_waiting();
                match self.permits.clone().acquire_owned().await {
                    Ok(permit) => permit,
                    // The semaphore is never closed.
                    Err(_) => return std::future::pending().await,
                }
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new());
        self.lock().insert(id, activity.clone());
        Slot {
            id,
            activity,
            slots: self,
            _permit: permit,
        }
    }

    fn evict_longest_waiting(&self) {
        let open = self.lock();
        let longest = open
            .values()
            .filter_map(|activity| activity.waiting_since().map(|since| (since, activity)))
            .min_by_key(|(since, _)| *since);
        if let Some((_, activity)) = longest {
            tracing::debug!("HTTP connections at their cap: closing the longest-waiting one");
            activity.evict();
        }
    }

    /// Completes when every slot has been given back.
    async fn all_returned(&self) {
        let all = u32::try_from(self.capacity).unwrap_or(u32::MAX);
        let _ = self.permits.acquire_many(all).await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.lock().remove(&self.id);
    }
}
