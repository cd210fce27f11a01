//! The conservative gate in front of `POST /v1/sql`. The statement already
//! runs as the tenant's own role in its own database (privileges keep it
//! away from AUTH and from other tenants); this gate additionally refuses
//! what would change the pooled session or escape the one-statement
//! transaction it runs in: transaction control, `SET`/`RESET`, `COPY`,
//! `LISTEN`, `DO`, temporary objects, role and database changes, session
//! advisory locks, `set_config`, `dblink` and psql meta-commands.
//!
//! It parses only as far as it must: comments are removed (outside string
//! literals), the first keywords are read, and a few patterns are searched
//! in the rest. A false refusal is acceptable; a false acceptance is not.
//! Multiple statements are refused by the server itself: the statement is
//! prepared with the extended protocol, which takes one command only;
//! [`has_second_statement`] only helps name that refusal.

/// First keywords refused outright, with why.
const REFUSED_FIRST: &[(&str, &str)] = &[
    (
        "set",
        "SET changes the pooled session; qualify names instead",
    ),
    ("reset", "RESET changes the pooled session"),
    (
        "begin",
        "transaction control is tenantd's: every statement runs in its own transaction",
    ),
    (
        "start",
        "transaction control is tenantd's: every statement runs in its own transaction",
    ),
    ("commit", "transaction control is tenantd's"),
    ("end", "transaction control is tenantd's"),
    ("rollback", "transaction control is tenantd's"),
    ("abort", "transaction control is tenantd's"),
    ("savepoint", "transaction control is tenantd's"),
    ("release", "transaction control is tenantd's"),
    (
        "prepare",
        "prepared statements would outlive the request; send parameters instead",
    ),
    (
        "execute",
        "prepared statements would outlive the request; send parameters instead",
    ),
    ("deallocate", "prepared statements are tenantd's"),
    ("discard", "DISCARD changes the pooled session"),
    ("listen", "LISTEN would outlive the request"),
    ("unlisten", "LISTEN/UNLISTEN are not available over HTTP"),
    ("notify", "NOTIFY is not available over HTTP"),
    (
        "do",
        "anonymous code blocks (DO) are not available over HTTP",
    ),
    (
        "copy",
        "COPY is not available over HTTP; use INSERT or SELECT",
    ),
    ("load", "LOAD is not available over HTTP"),
    ("declare", "cursors would outlive the request"),
    ("fetch", "cursors are not available over HTTP"),
    ("move", "cursors are not available over HTTP"),
    ("close", "cursors are not available over HTTP"),
    ("checkpoint", "CHECKPOINT is an administrator's command"),
    ("vacuum", "VACUUM cannot run in a transaction; ask an admin"),
];

/// Patterns refused anywhere in the statement (lower-case, comments removed,
/// white space collapsed to one space).
const REFUSED_ANYWHERE: &[(&str, &str)] = &[
    (
        "session authorization",
        "changing the session user is not allowed",
    ),
    ("set_config", "set_config changes the pooled session"),
    ("dblink", "dblink would reach other databases"),
    (
        "postgres_fdw",
        "foreign data wrappers would reach other databases",
    ),
    (
        "pg_advisory_lock",
        "session advisory locks would outlive the request; use pg_advisory_xact_lock",
    ),
    (
        "pg_try_advisory_lock",
        "session advisory locks would outlive the request; use pg_try_advisory_xact_lock",
    ),
    (
        "pg_advisory_unlock",
        "session advisory locks are not available over HTTP",
    ),
    ("into temp", "temporary tables would outlive the request"),
    ("lo_import", "server-side files are not available"),
    ("lo_export", "server-side files are not available"),
    (
        "u&\"",
        "Unicode-escaped identifiers are not accepted over HTTP",
    ),
    ("u&'", "Unicode-escaped strings are not accepted over HTTP"),
];

/// Refused statements of two keywords, e.g. `CREATE TEMP TABLE`.
const REFUSED_PAIRS: &[(&str, &str, &str)] = &[
    (
        "create",
        "temp",
        "temporary tables would outlive the request",
    ),
    (
        "create",
        "temporary",
        "temporary tables would outlive the request",
    ),
    (
        "create",
        "local",
        "temporary tables would outlive the request",
    ),
    (
        "create",
        "global",
        "temporary tables would outlive the request",
    ),
    (
        "create",
        "extension",
        "extensions are an administrator's business",
    ),
    ("create", "role", "roles are tenantd's business"),
    ("create", "user", "roles are tenantd's business"),
    ("create", "database", "databases are tenantd's business"),
    ("alter", "role", "roles are tenantd's business"),
    ("alter", "user", "roles are tenantd's business"),
    ("alter", "database", "databases are tenantd's business"),
    (
        "alter",
        "system",
        "server settings are an administrator's business",
    ),
    ("drop", "role", "roles are tenantd's business"),
    ("drop", "user", "roles are tenantd's business"),
    ("drop", "database", "databases are tenantd's business"),
    (
        "drop",
        "owned",
        "DROP OWNED would drop the tenant's whole schema",
    ),
    ("reassign", "owned", "ownership is tenantd's business"),
];

/// Checks `sql`; `Err` says why it is refused and what to do instead.
pub fn check(sql: &str) -> Result<(), String> {
    let text = normalise(sql);
    if text.is_empty() {
        return Err("the statement is empty".to_owned());
    }
    if text.starts_with('\\') {
        return Err("psql meta-commands (\\connect, \\c, …) are not SQL".to_owned());
    }
    let mut words = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty());
    let first = words.next().unwrap_or_default();
    let second = words.next().unwrap_or_default();
    if let Some((_, why)) = REFUSED_FIRST.iter().find(|(w, _)| *w == first) {
        return Err(format!("{} is refused: {why}", first.to_uppercase()));
    }
    if let Some((a, b, why)) = REFUSED_PAIRS
        .iter()
        .find(|(a, b, _)| *a == first && *b == second)
    {
        return Err(format!(
            "{} {} is refused: {why}",
            a.to_uppercase(),
            b.to_uppercase()
        ));
    }
    if let Some((pattern, why)) = REFUSED_ANYWHERE.iter().find(|(p, _)| text.contains(p)) {
        return Err(format!("the statement contains {pattern:?}: {why}"));
    }
    Ok(())
}

/// Whether `sql` holds a `;` followed by more than white space and comments
/// — outside string literals, quoted identifiers, dollar quotes and
/// comments. The server decides what runs; this only names its refusal.
pub fn has_second_statement(sql: &str) -> bool {
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    let mut ended = false;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        i = match (c, next) {
            ('-', Some('-')) => chars[i..]
                .iter()
                .position(|&c| c == '\n')
                .map_or(chars.len(), |n| i + n),
            ('/', Some('*')) => skip_block_comment(&chars, i),
            _ if c.is_whitespace() => i + 1,
            _ if ended => return true,
            (';', _) => {
                ended = true;
                i + 1
            }
            ('\'', _) => skip_quoted(&chars, i, escapes_backslash(&chars, i)),
            ('"', _) => skip_quoted(&chars, i, false),
            ('$', _) => skip_dollar_quoted(&chars, i),
            _ => i + 1,
        };
    }
    false
}

/// Whether the string literal at `start` is an `E'…'` string (backslash escapes).
fn escapes_backslash(chars: &[char], start: usize) -> bool {
    start > 0
        && matches!(chars[start - 1], 'e' | 'E')
        && (start < 2 || !(chars[start - 2].is_alphanumeric() || chars[start - 2] == '_'))
}

/// Skips the literal or identifier quoted at `start`; returns the index after it.
fn skip_quoted(chars: &[char], start: usize, backslash: bool) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if backslash => i += 2,
            c if c == quote && chars.get(i + 1) == Some(&quote) => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// Skips a dollar-quoted string (`$$…$$`, `$tag$…$tag$`) at `start`, or the
/// `$` of a parameter (`$1`); returns the index after it.
fn skip_dollar_quoted(chars: &[char], start: usize) -> usize {
    let tag_end = chars[start + 1..]
        .iter()
        .position(|&c| !(c.is_alphanumeric() || c == '_'))
        .map(|n| start + 1 + n);
    let Some(tag_end) = tag_end.filter(|&end| chars[end] == '$') else {
        return start + 1;
    };
    if chars.get(start + 1).is_some_and(char::is_ascii_digit) {
        return start + 1;
    }
    let tag = &chars[start..=tag_end];
    let mut i = tag_end + 1;
    while i + tag.len() <= chars.len() {
        if chars[i..i + tag.len()] == *tag {
            return i + tag.len();
        }
        i += 1;
    }
    chars.len()
}

/// Lower-cases `sql`, replaces comments by a space (string literals, quoted
/// identifiers and dollar quotes are kept) and collapses white space.
fn normalise(sql: &str) -> String {
    let lower = sql.to_lowercase();
    let chars: Vec<char> = lower.chars().collect();
    let mut out = String::with_capacity(lower.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match (c, next) {
            ('-', Some('-')) => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                out.push(' ');
            }
            ('/', Some('*')) => {
                i = skip_block_comment(&chars, i);
                out.push(' ');
            }
            ('\'' | '"', _) => i = copy_quoted(&chars, i, c, &mut out),
            _ => {
                out.push(if c.is_whitespace() { ' ' } else { c });
                i += 1;
            }
        }
    }
    let collapsed: Vec<&str> = out.split(' ').filter(|w| !w.is_empty()).collect();
    collapsed
        .join(" ")
        .trim_start_matches(['(', ' '])
        .to_owned()
}

/// Skips a (nested) block comment starting at `start`; returns the index after it.
fn skip_block_comment(chars: &[char], start: usize) -> usize {
    let mut depth = 0;
    let mut i = start;
    while i < chars.len() {
        match (chars[i], chars.get(i + 1).copied()) {
            ('/', Some('*')) => {
                depth += 1;
                i += 2;
            }
            ('*', Some('/')) => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    i
}

/// Copies a quoted literal or identifier (doubled quotes escape) to `out`.
fn copy_quoted(chars: &[char], start: usize, quote: char, out: &mut String) -> usize {
    out.push(quote);
    let mut i = start + 1;
    while i < chars.len() {
        out.push(chars[i]);
        if chars[i] == quote {
            if chars.get(i + 1) == Some(&quote) {
                out.push(quote);
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::{check, has_second_statement};

    #[test]
    fn finds_a_second_statement_outside_quotes_and_comments() {
        for sql in [
            "SELECT 1; SELECT 2",
            "SELECT 1 ;\n-- c\n  SET ROLE postgres",
            "SELECT ';'; SELECT 2",
            "SELECT $$;$$; SELECT 2",
            "SELECT $a$ ; $a$; SELECT 2",
            "SELECT E'\\';'; SELECT 2",
            "SELECT \"a;b\" FROM t; SELECT 2",
            "COMMIT; SELECT 1",
            "SELECT $1; SELECT 2",
        ] {
            assert!(has_second_statement(sql), "missed: {sql}");
        }
        for sql in [
            "SELECT 1",
            "SELECT 1;",
            "SELECT 1; -- trailing comment",
            "SELECT 1; /* a ; b */  ",
            "SELECT ';' AS x",
            "SELECT $$ ; SELECT 2 $$",
            "SELECT $tag$ ; $x$ ; $tag$",
            "SELECT 'it''s; fine'",
            "SELECT E'\\'; SELECT 2'",
            "SELECT 1 -- ; SELECT 2",
            "SELECT 1 /* ; SELECT 2 */",
        ] {
            assert!(!has_second_statement(sql), "false second statement: {sql}");
        }
    }

    #[test]
    fn accepts_ordinary_statements() {
        for sql in [
            "SELECT 1",
            "  -- a comment\n select * from clients where name = '-- not a comment'",
            "/* c */ INSERT INTO clients (code, name, currency) VALUES ($1, $2, 'EUR')",
            "with x as (select 1) select * from x",
            "(SELECT 1)",
            "UPDATE clients SET name = 'x' WHERE id = 1",
            "SELECT pg_advisory_xact_lock(1)",
            "CREATE TABLE notes (id int)",
            "SELECT 1;",
            "UPDATE team SET role = 'lead' WHERE id = 1",
        ] {
            assert!(check(sql).is_ok(), "{sql}: {:?}", check(sql));
        }
    }

    #[test]
    fn refuses_session_changes_and_escapes() {
        for sql in [
            "",
            "  -- only a comment",
            "SET ROLE postgres",
            "set search_path = x",
            "/* x */ SeT SESSION AUTHORIZATION postgres",
            "RESET ALL",
            "BEGIN",
            "commit",
            "COPY clients TO PROGRAM 'id'",
            "copy clients from '/etc/passwd'",
            "LISTEN x",
            "DO $$ BEGIN PERFORM 1; END $$",
            "\\connect tenantd_auth",
            "select set_config('role', 'postgres', false)",
            "SELECT * FROM dblink('dbname=tenantd_auth', 'select 1') AS t(x int)",
            "CREATE TEMP TABLE t (x int)",
            "create temporary table t (x int)",
            "SELECT 1 INTO TEMP t",
            "ALTER ROLE current_user PASSWORD 'x'",
            "ALTER DATABASE x SET search_path = y",
            "select pg_advisory_lock(1)",
            "CREATE EXTENSION dblink",
            "select/**/set_config('a','b',false)",
            "SELECT U&\"\\0073et_config\"('a', 'b', false)",
            "PREPARE p AS SELECT 1",
            "DISCARD ALL",
        ] {
            assert!(check(sql).is_err(), "accepted: {sql}");
        }
    }
}
