//! PostgreSQL errors, in one place: how an error is described (with its
//! whole chain and PostgreSQL's own message, detail, hint, position, the
//! objects it names and the SQLSTATE — the driver's `Display` alone says only
//! "db error", and refinery's adds only the step it was at), the SQLSTATE
//! decisions tenantd takes, the one rule saying whether a failure is
//! [`is_transient`], and the [`Backoff`] every retry loop waits with.
//!
//! SQLSTATEs are `tokio_postgres`'s [`SqlState`] constants; this module adds
//! the predicates tenantd decides on, so no other module compares codes.
//! It does not retry anything itself and does not map errors to exit codes
//! or HTTP statuses: callers decide what a transient failure means for them.
//!
//! ## What is transient
//! A failure is transient when the same request, unchanged, may succeed a
//! moment later because the *connection or the server* was in the way:
//! - the connection was lost or closed, or could not be made (I/O errors,
//!   refused or timed-out connects) — any error without a SQLSTATE whose
//!   cause is an I/O error, or the driver's "connection closed";
//! - class `08` (connection exception);
//! - `53300` too many connections (the server's slots, or a database's or
//!   role's connection limit, are taken for now);
//! - `57P01` admin shutdown, `57P02` crash shutdown, `57P03` cannot connect
//!   now (the server is starting up or shutting down).
//!
//! Serialization failures (`40001`) and deadlocks (`40P01`) are *not*
//! transient here: they abort a transaction, not a connection, and only the
//! author of that transaction can retry it (the HTTP API reports them as a
//! 409 asking the caller to retry its statement). None of tenantd's retry
//! loops re-runs a caller's transaction. `57014` (statement timeout or
//! cancel), authentication failures (`28P01`, `28000`), a missing database
//! (`3D000`) and every other SQLSTATE are not transient either.

use std::error::Error as StdError;
use std::time::Duration;

use tokio_postgres::error::{DbError, ErrorPosition, SqlState};

/// The driver's error type, named for the predicates below.
pub type PgError = tokio_postgres::Error;

/// An error and its causes on one line (`a: b: c`), without repeats.
/// PostgreSQL's errors anywhere in the chain appear with their message,
/// detail, hint, position and SQLSTATE (see [`describe_db`]).
pub fn describe(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(current) = next {
        next = current.source();
        let part = if let Some(db) = current.downcast_ref::<DbError>() {
            describe_db(db)
        } else if let Some(step) = refinery_step(current) {
            // "`error applying migration V2__x`, `db error`": the step, then its cause.
            step.to_owned()
        } else if current
            .downcast_ref::<PgError>()
            .is_some_and(|e| e.as_db_error().is_some())
        {
            // "db error": its source, the DbError, says it all.
            continue;
        } else {
            without_bare_db_error(&current.to_string()).replace('\n', " ")
        };
        if !parts.iter().any(|p| p.contains(&part)) {
            parts.push(part);
        }
    }
    parts.join(": ")
}

/// A wrapper's text without the driver's "db error" it embeds (deadpool's
/// "Error occurred while creating a new object: db error"): PostgreSQL's
/// message follows in the chain.
fn without_bare_db_error(text: &str) -> &str {
    text.strip_suffix(": db error").unwrap_or(text)
}

/// What refinery was doing when the database failed (its error's `Display`
/// is "`step`, `db error`"; the cause follows in the chain).
fn refinery_step<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a str> {
    match error.downcast_ref::<refinery::Error>()?.kind() {
        refinery::error::Kind::Connection(step, _) => Some(step),
        _ => None,
    }
}

/// PostgreSQL's message on one line, with what the server added and the
/// object concerned: `message (detail: …; hint: …; position: N; table:
/// public.t; constraint: c; SQLSTATE 23505)`.
pub fn describe_db(db: &DbError) -> String {
    let mut extras = Vec::new();
    if let Some(detail) = db.detail() {
        extras.push(format!("detail: {detail}"));
    }
    if let Some(hint) = db.hint() {
        extras.push(format!("hint: {hint}"));
    }
    if let Some(position) = db.position() {
        extras.push(format!("position: {}", position_of(position)));
    }
    if let Some(context) = db.where_() {
        extras.push(format!("context: {context}"));
    }
    extras.extend(objects(db));
    extras.push(format!("SQLSTATE {}", db.code().code()));
    format!("{} ({})", db.message(), extras.join("; ")).replace('\n', " ")
}

/// The objects PostgreSQL names beside its message (table, column, type, constraint).
fn objects(db: &DbError) -> Vec<String> {
    let qualified = |name: &str| match db.schema() {
        Some(schema) => format!("{schema}.{name}"),
        None => name.to_owned(),
    };
    let mut found = Vec::new();
    if let Some(table) = db.table() {
        found.push(format!("table: {}", qualified(table)));
    }
    if let Some(column) = db.column() {
        found.push(format!("column: {column}"));
    }
    if let Some(datatype) = db.datatype() {
        found.push(format!("type: {}", qualified(datatype)));
    }
    if let Some(constraint) = db.constraint() {
        found.push(format!("constraint: {constraint}"));
    }
    if let (true, Some(schema)) = (found.is_empty(), db.schema()) {
        found.push(format!("schema: {schema}"));
    }
    found
}

/// PostgreSQL's message with its hint only — what a caller is shown about
/// its own statement (the SQLSTATE travels beside it).
pub fn message_and_hint(db: &DbError) -> String {
    match db.hint() {
        Some(hint) => format!("{} (hint: {hint})", db.message()),
        None => db.message().to_owned(),
    }
}

fn position_of(position: &ErrorPosition) -> u32 {
    match position {
        ErrorPosition::Original(at) => *at,
        ErrorPosition::Internal { position, .. } => *position,
    }
}

/// Whether retrying the same thing a moment later may succeed (see the
/// module documentation for the rule and why `40001`/`40P01` are not in it).
pub fn is_transient(error: &PgError) -> bool {
    match error.code() {
        Some(code) => is_transient_state(code),
        None => error.is_closed() || caused_by_io(error),
    }
}

/// Whether any error in `error`'s chain is a transient [`PgError`] (for
/// wrappers such as deadpool's pool error or [`crate::server::ServerError`]).
pub fn chain_is_transient(error: &(dyn StdError + 'static)) -> bool {
    let mut next: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(current) = next {
        if let Some(pg) = current.downcast_ref::<PgError>() {
            return is_transient(pg);
        }
        if current.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
        next = current.source();
    }
    false
}

/// The SQLSTATE half of [`is_transient`].
pub fn is_transient_state(code: &SqlState) -> bool {
    code.code().starts_with("08")
        || *code == SqlState::TOO_MANY_CONNECTIONS
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
}

fn caused_by_io(error: &PgError) -> bool {
    let mut next = error.source();
    while let Some(current) = next {
        if current.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
        next = current.source();
    }
    false
}

fn has_state(error: &PgError, state: &SqlState) -> bool {
    error.code() == Some(state)
}

/// `53300`: the server (or the database's or role's limit) has no free connection slot.
pub fn is_too_many_connections(error: &PgError) -> bool {
    has_state(error, &SqlState::TOO_MANY_CONNECTIONS)
}

/// `23505`: a unique constraint refused the row.
pub fn is_unique_violation(error: &PgError) -> bool {
    has_state(error, &SqlState::UNIQUE_VIOLATION)
}

/// `42P04`/`42710`: the database, role or object exists already (e.g. made
/// by a concurrent creator).
pub fn is_duplicate_object(error: &PgError) -> bool {
    has_state(error, &SqlState::DUPLICATE_DATABASE) || has_state(error, &SqlState::DUPLICATE_OBJECT)
}

/// `42P01`: the table does not exist.
pub fn is_undefined_table(error: &PgError) -> bool {
    has_state(error, &SqlState::UNDEFINED_TABLE)
}

/// `3D000`: the database does not exist.
pub fn is_undefined_database(error: &PgError) -> bool {
    has_state(error, &SqlState::UNDEFINED_DATABASE)
}

/// `55006`: the object (e.g. a database being dropped or cloned) is in use.
pub fn is_object_in_use(error: &PgError) -> bool {
    has_state(error, &SqlState::OBJECT_IN_USE)
}

/// `42501`: the role lacks the privilege (or ownership) the statement needs.
pub fn is_insufficient_privilege(error: &PgError) -> bool {
    has_state(error, &SqlState::INSUFFICIENT_PRIVILEGE)
}

/// `57014`: the statement was cancelled (statement timeout or a cancel request).
pub fn is_query_canceled(error: &PgError) -> bool {
    has_state(error, &SqlState::QUERY_CANCELED)
}

/// `42601` *without a position*: what PostgreSQL answers, in any
/// `lc_messages`, when a statement prepared with the extended protocol holds
/// more than one command ("cannot insert multiple commands into a prepared
/// statement"). Every syntax error the parser finds in the text carries the
/// position where it found it; this refusal comes after parsing and has none.
/// Callers that need certainty also check that the text has a `;` between
/// two statements.
pub fn is_multiple_commands(error: &PgError) -> bool {
    error
        .as_db_error()
        .is_some_and(|db| *db.code() == SqlState::SYNTAX_ERROR && db.position().is_none())
}

/// `0A000`/`26000`: a cached plan went stale after a schema change, or the
/// prepared statement is gone — re-preparing fixes it.
pub fn is_stale_statement(error: &PgError) -> bool {
    has_state(error, &SqlState::FEATURE_NOT_SUPPORTED)
        || has_state(error, &SqlState::INVALID_SQL_STATEMENT_NAME)
}

/// Doubling delays between attempts, from `first` up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `first`; each [`Backoff::next_delay`] doubles up to `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first.min(max),
        }
    }

    /// The delay to wait now; the next one is twice as long (at most `max`).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (delay * 2).min(self.max);
        delay
    }

    /// Waits [`Backoff::next_delay`].
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    /// Starts again from the first delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.first.min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(70));
        let delays: Vec<u64> = (0..4)
            .map(|_| backoff.next_delay().as_millis() as u64)
            .collect();
        assert_eq!(delays, [20, 40, 70, 70]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(20));
    }

    #[test]
    fn transient_states() {
        for code in [
            SqlState::CONNECTION_EXCEPTION,
            SqlState::CONNECTION_FAILURE,
            SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
        ] {
            assert!(is_transient_state(&code), "{}", code.code());
        }
        for code in [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::QUERY_CANCELED,
            SqlState::INVALID_PASSWORD,
            SqlState::UNDEFINED_DATABASE,
            SqlState::SYNTAX_ERROR,
            SqlState::UNIQUE_VIOLATION,
            SqlState::DISK_FULL,
        ] {
            assert!(!is_transient_state(&code), "{}", code.code());
        }
    }

    #[test]
    fn describes_a_chain_on_one_line_without_repeats() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer: {0}")]
        struct Outer(#[source] std::io::Error);
        let error = Outer(std::io::Error::other("line one\nline two"));
        assert_eq!(describe(&error), "outer: line one line two");
        #[derive(Debug, thiserror::Error)]
        #[error("wrapper")]
        struct Wrapper(#[source] std::io::Error);
        let error = Wrapper(std::io::Error::other("cause"));
        assert_eq!(describe(&error), "wrapper: cause");
        assert!(chain_is_transient(&error), "an I/O cause is transient");
    }
}
