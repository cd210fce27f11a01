//! [`ErrorKind`], the broad class of a failure, and [`Classify`], the one
//! method every module's error type implements to say its own class.
//!
//! CLI exit codes and HTTP statuses are chosen from the class alone, so a
//! module adding an error variant decides its class in its own `impl
//! Classify` (the match there is exhaustive: a new variant does not compile
//! until it is classified). This module depends on nothing else in the crate
//! but the PostgreSQL error layer, so every module can use it without an
//! import cycle.

/// Broad classes of errors, for exit codes and HTTP statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad settings or input: fix the call (exit 2, HTTP 400/422).
    InvalidInput,
    /// The tenant does not exist (exit 3, HTTP 404).
    NotFound,
    /// The request conflicts with the current state (exit 4, HTTP 409).
    Conflict,
    /// The server or a dependency is unreachable; retry later (exit 5, HTTP 503).
    Unavailable,
    /// Anything else (exit 1, HTTP 500).
    Internal,
}

/// An error that knows its [`ErrorKind`].
pub trait Classify {
    /// The class of this error.
    fn kind(&self) -> ErrorKind;
}

/// A driver error is [`ErrorKind::Unavailable`] when it is transient (the
/// connection was lost, the server is starting or shutting down, or it has
/// no free connection slot), else [`ErrorKind::Internal`].
impl Classify for tokio_postgres::Error {
    fn kind(&self) -> ErrorKind {
        if crate::pg_error::is_transient(self) {
            ErrorKind::Unavailable
        } else {
            ErrorKind::Internal
        }
    }
}

/// A pool fails only when it cannot open (or recycle) a connection.
impl Classify for deadpool_postgres::PoolError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Unavailable
    }
}
