//! [`DeadlineBody`]: a request body that must arrive whole before a
//! deadline, so that a client trickling its body cannot hold a handler (and
//! a connection) for ever.
//!
//! tower-http's `RequestBodyTimeoutLayer` bounds the wait *between* two
//! frames, which a body sent one byte every few seconds never exceeds; this
//! bounds the whole body. A body cut off here fails its extractor with
//! [`BodyTimedOut`] in the error's chain, answered 408 by `extract`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::BoxError;
use axum::body::{Bytes, HttpBody};
use hyper::body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The request body did not arrive whole before its deadline
/// (`TENANTD_HTTP_BODY_TIMEOUT_MS`).
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within TENANTD_HTTP_BODY_TIMEOUT_MS")]
pub struct BodyTimedOut;

/// A body that fails with [`BodyTimedOut`] once `deadline` passes.
pub struct DeadlineBody<B> {
    body: B,
    deadline: Instant,
    /// Made when the body first has nothing to give, so a body that arrives
    /// with its head costs no timer.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<B> DeadlineBody<B> {
    /// `body`, due whole by `deadline`.
    pub fn new(body: B, deadline: Instant) -> Self {
        Self {
            body,
            deadline,
            sleep: None,
        }
    }
}

impl<B> HttpBody for DeadlineBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = self.deadline;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
