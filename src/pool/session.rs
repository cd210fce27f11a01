//! Session hygiene of pooled tenant connections: nothing a request does on a
//! connection outlives the request.
//!
//! What a tenant's SQL can leave behind in a session — directly or from
//! inside a function it wrote, which no statement filter sees — and how each
//! is undone by [`RESET`]:
//!
//! | state | undone by |
//! |---|---|
//! | `SET ROLE` (e.g. to the SHARED reader role) | `RESET ROLE` (`RESET ALL` leaves the role alone) |
//! | settings: `search_path`, `statement_timeout`, `application_name`… (`SET`, `set_config`) | `RESET ALL` |
//! | cursors `WITH HOLD` | `CLOSE ALL` |
//! | `LISTEN` | `UNLISTEN *` |
//! | advisory locks of the session | `pg_advisory_unlock_all()` |
//! | temporary tables, functions, types | `DISCARD TEMP` |
//! | `currval`/`lastval` state | `DISCARD SEQUENCES` |
//! | statements `PREPARE`d in SQL | counted by the reset; when any exist the connection is closed (`DEALLOCATE ALL` would also free the driver's own statements) |
//!
//! The statement timeout is not set per request: it is a startup option of
//! every tenant connection (`-c statement_timeout=…`, see
//! [`startup_options`]), so it covers a request from its first message
//! (prepare included), a tenant's `ALTER ROLE … SET` or `ALTER DATABASE …
//! SET` cannot override it (a client's startup option outranks both), and
//! `RESET ALL` brings back exactly that value after a function changed it.
//! Within one statement a function's `SET statement_timeout` does not move
//! the timer PostgreSQL armed when the statement started.
//!
//! A connection is *dirty* from the moment it is checked out. `POST /v1/sql`
//! pipelines a cheap reset behind its statement ([`RESET_SETTINGS`] and
//! [`RESET_CHECK`], prepared once per connection, no extra round trip) and
//! marks the connection clean when nothing else is left; otherwise (state
//! only a function the tenant wrote can leave: `LISTEN`, held cursors, SQL
//! `PREPARE`s, temporary objects) the connection is closed. Library clients
//! get the full [`RESET`] when their connection is next checked out (one
//! round trip). A connection whose reset fails is closed, never handed out. `currval`/`lastval` are the one state only the
//! full reset clears: after a cheap reset the tenant's next request may
//! still read the value of a sequence its previous request advanced. Every statement here names its objects
//! in `pg_catalog`, so a tenant's own functions and search path cannot stand
//! in for them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_postgres::ClientWrapper;
use tokio_postgres::SimpleQueryMessage;

/// The reset of a tenant session, as one simple query (one round trip, or
/// none when pipelined). Its one row holds the number of statements prepared
/// in SQL that are still allocated.
pub(crate) const RESET: &str = "RESET ROLE; RESET ALL; CLOSE ALL; UNLISTEN *; \
     DISCARD TEMP; DISCARD SEQUENCES; \
     SELECT pg_catalog.pg_advisory_unlock_all(), \
     (SELECT pg_catalog.count(*) FROM pg_catalog.pg_prepared_statements WHERE from_sql)";

/// The settings part of the reset, prepared once per connection and run
/// behind every `POST /v1/sql` statement (`RESET ALL` leaves the role alone).
pub(crate) const RESET_SETTINGS: &str = "RESET ALL";

/// The rest of the reset behind every `POST /v1/sql` statement, prepared
/// once per connection: ends `SET ROLE` and the session's advisory locks,
/// and answers whether state remains that only the full [`RESET`] undoes
/// (the protocol's unnamed portal is listed in `pg_cursors` too, and is no
/// cursor of the session's). It costs a fraction of [`RESET`], whose seven
/// statements are parsed and planned again each time.
pub(crate) const RESET_CHECK: &str = "SELECT \
     EXISTS (SELECT FROM pg_catalog.pg_listening_channels()) \
     OR EXISTS (SELECT FROM pg_catalog.pg_cursors WHERE name <> '') \
     OR EXISTS (SELECT FROM pg_catalog.pg_prepared_statements WHERE from_sql) \
     OR (pg_catalog.pg_my_temp_schema() <> 0 AND EXISTS \
         (SELECT FROM pg_catalog.pg_class WHERE relnamespace = pg_catalog.pg_my_temp_schema())), \
     pg_catalog.set_config('role', 'none', false), \
     pg_catalog.pg_advisory_unlock_all()";

/// The startup options of a tenant connection: `existing` (options of the
/// admin URL, if any) followed by the statement timeout.
pub(crate) fn startup_options(existing: Option<&str>, statement_timeout: Duration) -> String {
    let timeout = format!("-c statement_timeout={}", statement_timeout.as_millis());
    match existing
        .map(str::trim)
        .filter(|options| !options.is_empty())
    {
        Some(options) => format!("{options} {timeout}"),
        None => timeout,
    }
}

/// Whether a connection's session may hold state from its last checkout.
#[derive(Debug, Default)]
pub(crate) struct SessionState {
    dirty: AtomicBool,
}

impl SessionState {
    /// The connection is being handed out: from now on its state is unknown.
    pub fn checked_out(&self) {
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// The connection was reset.
    pub fn reset(&self) {
        self.dirty.store(false, Ordering::Relaxed);
    }

    /// Whether the connection must be reset before it is handed out again.
    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Relaxed)
    }
}

/// How many SQL-prepared statements remain, from the reply of [`RESET`].
fn prepared_left(reply: &[SimpleQueryMessage]) -> usize {
    reply
        .iter()
        .find_map(|message| match message {
            SimpleQueryMessage::Row(row) => row.get(1).and_then(|count| count.parse().ok()),
            _ => None,
        })
        .unwrap_or(0)
}

/// The outcome of a reset.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reset {
    /// The session is as a new one, but for the driver's prepared statements.
    Clean,
    /// The session still holds statements prepared in SQL: close the connection.
    PreparedLeft(usize),
}

impl Reset {
    /// Reads the reply of [`RESET`].
    pub fn from_reply(reply: &[SimpleQueryMessage]) -> Self {
        match prepared_left(reply) {
            0 => Self::Clean,
            left => Self::PreparedLeft(left),
        }
    }
}

/// Runs [`RESET`] on `client` (one round trip).
pub(crate) async fn reset(client: &ClientWrapper) -> Result<Reset, tokio_postgres::Error> {
    Ok(Reset::from_reply(&client.simple_query(RESET).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_follows_existing_options() {
        let timeout = Duration::from_millis(5000);
        assert_eq!(startup_options(None, timeout), "-c statement_timeout=5000");
        assert_eq!(
            startup_options(Some("  "), timeout),
            "-c statement_timeout=5000"
        );
        assert_eq!(
            startup_options(Some("-c work_mem=64MB"), timeout),
            "-c work_mem=64MB -c statement_timeout=5000"
        );
    }

    #[test]
    fn a_fresh_connection_is_clean_and_a_checked_out_one_dirty() {
        let state = SessionState::default();
        assert!(!state.is_dirty());
        state.checked_out();
        assert!(state.is_dirty());
        state.reset();
        assert!(!state.is_dirty());
    }
}
