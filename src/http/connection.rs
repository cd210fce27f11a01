//! One HTTP/1.1 connection of the [`super::listener`]: which phase it is in
//! (waiting for a request's head, serving requests, idle between them), the
//! deadline of that phase, and the service that tells it when a request
//! starts and ends. It must not know about routes or the accept loop.
//!
//! The timeouts are kept here rather than in hyper: hyper's
//! `header_read_timeout` starts when it begins waiting for a head, so one
//! setting would bound both the keep-alive wait and a slow head. tenantd
//! keeps them apart: a new connection must send a request head within
//! `header_timeout`, a kept-alive one may wait `idle_timeout` for its next
//! request, and a head must arrive whole within `header_timeout` of its
//! first byte. While a request is in flight no connection timer runs (the
//! body has its own deadline, [`super::request_body`]).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::request_body::DeadlineBody;
use crate::config::ConnectionLimits;

/// What a connection is doing, shared by its task, its socket reads and
/// its requests (all polled by the one connection task), and the accept
/// loop, which may ask it to close.
pub(super) struct Activity {
    /// When the connection was accepted; the times below count from it.
    opened: Instant,
    /// Requests whose response has not been sent whole.
    in_flight: AtomicUsize,
    /// Whether a request was ever dispatched.
    served: AtomicBool,
    /// Milliseconds from `opened` to the start of the current wait for a request.
    waiting_since: AtomicU64,
    /// Milliseconds from `opened` to the first byte of the head being read, plus one (0: none yet).
    head_started: AtomicU64,
    /// Set while no request is in flight: the next byte read starts a head.
    armed: AtomicBool,
    /// The accept loop wants this connection's slot.
    evict: AtomicBool,
    /// Wakes the connection task (a head began, or an eviction).
    wake: Notify,
}

impl Activity {
    pub(super) fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            waiting_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            armed: AtomicBool::new(true),
            evict: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    fn at(&self, millis: u64) -> Instant {
        self.opened + Duration::from_millis(millis)
    }

    /// When the connection began waiting for a request, or `None` while one is in flight.
    pub(super) fn waiting_since(&self) -> Option<Instant> {
        (self.in_flight.load(Ordering::Acquire) == 0)
            .then(|| self.at(self.waiting_since.load(Ordering::Acquire)))
    }

    /// Asks the connection to close if it is still without a request.
    pub(super) fn evict(&self) {
        self.evict.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    fn on_bytes_read(&self) {
        if self.armed.swap(false, Ordering::AcqRel) {
            self.head_started
                .store(self.millis() + 1, Ordering::Release);
            self.wake.notify_one();
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.served.store(true, Ordering::Release);
        self.armed.store(false, Ordering::Release);
        self.head_started.store(0, Ordering::Release);
        InFlight(self.clone())
    }

    fn end(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.waiting_since.store(self.millis(), Ordering::Release);
            self.armed.store(true, Ordering::Release);
        }
    }

    /// When the current phase ends: `None` while a request is in flight.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let head = self.head_started.load(Ordering::Acquire);
        if head > 0 {
            return Some(self.at(head - 1) + limits.header_timeout);
        }
        let wait = if self.served.load(Ordering::Acquire) {
            limits.idle_timeout
        } else {
            limits.header_timeout
        };
        Some(self.at(self.waiting_since.load(Ordering::Acquire)) + wait)
    }

    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }
}

/// A request in flight; dropped with its response body (sent or abandoned).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// Serves one accepted connection until it closes, times out, is evicted
/// or, once `stop` turns true, has no request in flight.
pub(super) async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    activity: Arc<Activity>,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) {
    let io = TokioIo::new(Watched {
        stream,
        activity: activity.clone(),
    });
    let service = Tracked {
        router: TowerToHyperService::new(router),
        activity: activity.clone(),
        peer,
        body_timeout: limits.body_timeout,
    };
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = false;
    // While a request is in flight no deadline applies; look again this often.
    let recheck = limits.header_timeout.min(limits.idle_timeout);
    loop {
        if (stopping || activity.evict.load(Ordering::Acquire)) && activity.is_idle() {
            return;
        }
        let deadline = activity.deadline(&limits);
        if deadline.is_some_and(|d| d <= Instant::now()) {
            tracing::debug!(%peer, "closing an HTTP connection that timed out");
            return;
        }
        let wake_at = deadline.unwrap_or_else(|| Instant::now() + recheck);
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!(%peer, %error, "HTTP connection ended with an error");
                }
                return;
            }
            _ = stop.wait_for(|stop| *stop), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            () = activity.wake.notified() => {}
            () = tokio::time::sleep_until(wake_at) => {}
        }
    }
}

/// The socket, telling [`Activity`] when bytes arrive.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_bytes_read();
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The router as hyper's service: marks each request in flight until its
/// response body is done, gives its body a deadline and the handlers the
/// client's address (`ConnectInfo<SocketAddr>`).
#[derive(Clone)]
struct Tracked {
    router: TowerToHyperService<Router>,
    activity: Arc<Activity>,
    peer: SocketAddr,
    body_timeout: Duration,
}

type Served = Pin<Box<dyn Future<Output = Result<Response<TrackedBody>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Served;

    fn call(&self, request: Request<Incoming>) -> Served {
        let in_flight = self.activity.begin();
        let deadline = Instant::now() + self.body_timeout;
        let mut request = request.map(|body| DeadlineBody::new(body, deadline));
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let response = self.router.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| TrackedBody {
                body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// A response body that keeps its request in flight until it is dropped.
struct TrackedBody {
    body: Body,
    _in_flight: InFlight,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
