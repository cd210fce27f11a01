//! The SQL text of a migration that runs outside a transaction, read as
//! PostgreSQL would: split into its statements (at each `;` outside quotes,
//! comments and dollar quoting) so each runs on its own, and each
//! `CREATE INDEX CONCURRENTLY` recognised with the index and table it names,
//! so a failed build's invalid index can be found and dropped before a retry.
//!
//! This module reads text only; it runs nothing and knows no database.

/// One `CREATE [UNIQUE] INDEX CONCURRENTLY` statement: what a retry looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcurrentIndex {
    /// The index's name as PostgreSQL stores it (unquoted, case-folded).
    pub index: String,
    /// The table's name, each part as PostgreSQL stores it (`[schema,] table`).
    pub table: Vec<String>,
}

/// What [`concurrent_index`] found in a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexStatement {
    /// Not a `CREATE INDEX CONCURRENTLY`.
    Other,
    /// A named concurrent index build.
    Named(ConcurrentIndex),
    /// A concurrent index build without a name (PostgreSQL would choose one,
    /// so a retry could not find what a failed build left behind).
    Unnamed,
}

/// The statements of `sql`, trimmed, without their `;`, skipping those that
/// hold only blanks and comments.
pub fn split(sql: &str) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let mut statements = Vec::new();
    let (mut start, mut at) = (0, 0);
    while at < bytes.len() {
        at = match bytes[at] {
            b';' => {
                push(&mut statements, &sql[start..at]);
                start = at + 1;
                at + 1
            }
            _ => skip_token(sql, at),
        };
    }
    push(&mut statements, &sql[start..]);
    statements
}

fn push<'a>(statements: &mut Vec<&'a str>, text: &'a str) {
    let text = text.trim();
    if !tokens(text).is_empty() {
        statements.push(text);
    }
}

/// The end of the token that starts at `at` (a quoted string or
/// identifier, a comment, a dollar-quoted body, or one character).
fn skip_token(sql: &str, at: usize) -> usize {
    let bytes = sql.as_bytes();
    let rest = &sql[at..];
    match bytes[at] {
        b'-' if rest.starts_with("--") => rest.find('\n').map_or(sql.len(), |n| at + n + 1),
        b'/' if rest.starts_with("/*") => skip_block_comment(sql, at),
        b'\'' => skip_quoted(sql, at, b'\'', escapes_backslash(sql, at)),
        b'"' => skip_quoted(sql, at, b'"', false),
        b'$' if !follows_identifier(sql, at) => match dollar_tag(rest) {
            Some(tag) => rest[tag.len()..]
                .find(tag)
                .map_or(sql.len(), |n| at + tag.len() + n + tag.len()),
            None => at + 1,
        },
        _ => at + rest.chars().next().map_or(1, char::len_utf8),
    }
}

/// Block comments nest in PostgreSQL.
fn skip_block_comment(sql: &str, at: usize) -> usize {
    let mut depth = 0;
    let mut i = at;
    while i < sql.len() {
        let rest = &sql[i..];
        if rest.starts_with("/*") {
            depth += 1;
            i += 2;
        } else if rest.starts_with("*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    sql.len()
}

/// A quoted string or identifier; a doubled quote is part of it.
fn skip_quoted(sql: &str, at: usize, quote: u8, backslash: bool) -> usize {
    let bytes = sql.as_bytes();
    let mut i = at + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if backslash => i += 2,
            b if b == quote && bytes.get(i + 1) == Some(&quote) => i += 2,
            b if b == quote => return i + 1,
            _ => i += 1,
        }
    }
    sql.len()
}

/// `E'…'` strings take backslash escapes.
fn escapes_backslash(sql: &str, at: usize) -> bool {
    at > 0 && matches!(sql.as_bytes()[at - 1], b'e' | b'E') && !follows_identifier(sql, at - 1)
}

fn is_identifier_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

fn follows_identifier(sql: &str, at: usize) -> bool {
    at > 0 && is_identifier_byte(sql.as_bytes()[at - 1])
}

/// `$tag$` or `$$` at the start of `text` (a `$1` parameter is no tag).
fn dollar_tag(text: &str) -> Option<&str> {
    let body = &text[1..];
    let end = body.find('$')?;
    let tag = &body[..end];
    let valid = tag.is_empty()
        || (tag.starts_with(|c: char| c.is_alphabetic() || c == '_')
            && tag.chars().all(|c| c.is_alphanumeric() || c == '_'));
    valid.then(|| &text[..end + 2])
}

/// A word of a statement: a keyword or identifier (folded to lower case
/// unless it was quoted), or one punctuation character.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Punct(char),
}

impl Token {
    fn is_keyword(&self, keyword: &str) -> bool {
        matches!(self, Self::Word(w) if w == keyword)
    }

    fn identifier(&self) -> Option<String> {
        match self {
            Self::Word(w) | Self::Quoted(w) => Some(w.clone()),
            Self::Punct(_) => None,
        }
    }
}

/// The tokens of `text` that [`concurrent_index`] needs (comments dropped,
/// strings and other literals kept only as punctuation).
fn tokens(text: &str) -> Vec<Token> {
    let mut found = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let rest = &text[at..];
        let c = rest.chars().next().unwrap_or(' ');
        let mut end = skip_token(text, at);
        let skipped = c.is_whitespace() || rest.starts_with("--") || rest.starts_with("/*");
        if skipped {
            // Blanks and comments say nothing.
        } else if c == '"' {
            let inner = &text[at + 1..end.saturating_sub(1).max(at + 1)];
            found.push(Token::Quoted(inner.replace("\"\"", "\"")));
        } else if c.is_alphabetic() || c == '_' {
            end = rest
                .find(|ch: char| !(ch.is_alphanumeric() || ch == '_' || ch == '$'))
                .map_or(text.len(), |n| at + n);
            found.push(Token::Word(text[at..end].to_lowercase()));
        } else {
            found.push(Token::Punct(c));
        }
        at = end;
    }
    found
}

/// Whether `sql` holds a SQL-standard function body (`BEGIN ATOMIC … END`),
/// whose inner `;` [`split`] cannot tell from a statement's end.
pub fn has_atomic_body(sql: &str) -> bool {
    tokens(sql)
        .windows(2)
        .any(|pair| pair[0].is_keyword("begin") && pair[1].is_keyword("atomic"))
}

/// Whether `statement` builds an index concurrently, and under which name.
pub fn concurrent_index(statement: &str) -> IndexStatement {
    let tokens = tokens(statement);
    let mut t = tokens.iter().peekable();
    let mut next_is = |keyword: &str| t.next_if(|tok| tok.is_keyword(keyword)).is_some();
    if !next_is("create") {
        return IndexStatement::Other;
    }
    next_is("unique");
    if !(next_is("index") && next_is("concurrently")) {
        return IndexStatement::Other;
    }
    if next_is("if") {
        next_is("not");
        next_is("exists");
    }
    if t.peek().is_some_and(|tok| tok.is_keyword("on")) {
        return IndexStatement::Unnamed;
    }
    let Some(index) = t.next().and_then(Token::identifier) else {
        return IndexStatement::Unnamed;
    };
    if !t.next().is_some_and(|tok| tok.is_keyword("on")) {
        return IndexStatement::Unnamed;
    }
    t.next_if(|tok| tok.is_keyword("only"));
    let mut table = Vec::new();
    while let Some(part) = t.next().and_then(Token::identifier) {
        table.push(part);
        if t.next_if(|tok| **tok == Token::Punct('.')).is_none() {
            break;
        }
    }
    match table.is_empty() {
        true => IndexStatement::Unnamed,
        false => IndexStatement::Named(ConcurrentIndex { index, table }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_semicolons_outside_quotes_comments_and_bodies() {
        let sql = "-- tenantd:no-transaction\n\
                   CREATE INDEX CONCURRENTLY a ON t (x);\n\
                   /* a ; /* nested ; */ still ; */\n\
                   INSERT INTO t VALUES ('it''s; fine', E'\\'; too', \"we;ird\");\n\
                   CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$ SELECT 1; $body$;\n\
                   DO $$ BEGIN PERFORM 1; END $$;\n\
                   -- only a comment; here\n  ;  ;";
        let statements = split(sql);
        assert_eq!(statements.len(), 4, "{statements:#?}");
        assert!(statements[0].ends_with("CREATE INDEX CONCURRENTLY a ON t (x)"));
        assert!(statements[1].starts_with("/* a ;"));
        assert!(statements[1].ends_with("\"we;ird\")"));
        assert!(statements[2].ends_with("$body$ SELECT 1; $body$"));
        assert_eq!(statements[3], "DO $$ BEGIN PERFORM 1; END $$");
    }

    #[test]
    fn finds_sql_standard_function_bodies() {
        assert!(has_atomic_body(
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC SELECT 1; END;"
        ));
        assert!(!has_atomic_body(
            "-- begin atomic\nSELECT 'begin atomic'; BEGIN; COMMIT;"
        ));
    }

    #[test]
    fn a_parameter_or_identifier_dollar_is_no_quote() {
        assert_eq!(
            split("SELECT a$b; SELECT $1"),
            vec!["SELECT a$b", "SELECT $1"]
        );
    }

    #[test]
    fn recognises_concurrent_index_builds() {
        let named = |index: &str, table: &[&str]| {
            IndexStatement::Named(ConcurrentIndex {
                index: index.to_owned(),
                table: table.iter().map(|s| (*s).to_owned()).collect(),
            })
        };
        assert_eq!(
            concurrent_index("create unique index concurrently IX_a on Clients (x)"),
            named("ix_a", &["clients"])
        );
        assert_eq!(
            concurrent_index(
                "-- why\nCREATE INDEX CONCURRENTLY IF NOT EXISTS \"Ix\"\"b\" ON ONLY \"S\".t USING btree (x)"
            ),
            named("Ix\"b", &["S", "t"])
        );
        assert_eq!(
            concurrent_index("CREATE INDEX CONCURRENTLY ON t (x)"),
            IndexStatement::Unnamed
        );
        assert_eq!(
            concurrent_index("CREATE INDEX CONCURRENTLY IF NOT EXISTS ON t (x)"),
            IndexStatement::Unnamed
        );
        assert_eq!(
            concurrent_index("CREATE INDEX a ON t (x)"),
            IndexStatement::Other
        );
        assert_eq!(
            concurrent_index("DROP INDEX CONCURRENTLY a"),
            IndexStatement::Other
        );
    }
}
