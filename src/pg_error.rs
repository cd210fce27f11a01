//! The PostgreSQL error layer (placeholder until the full layer lands):
//! whether a driver error is transient.

/// True when retrying later can succeed: the connection was lost, the
/// server refused it for lack of slots, or is starting or shutting down.
pub fn is_transient(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || code == "53300" || code.starts_with("57P")
        }
        None => std::error::Error::source(error).is_some_and(|s| s.is::<std::io::Error>()),
    }
}
