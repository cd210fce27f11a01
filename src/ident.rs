//! Quoting of SQL identifiers and literals for the DDL PostgreSQL cannot take
//! as bind parameters (`CREATE DATABASE`, `CREATE ROLE … PASSWORD`, `GRANT`).
//!
//! Callers quote names they have already validated (a [`crate::TenantCode`],
//! a configured database name); quoting is the second line of defence, not
//! the first. User text never reaches SQL by any other path.

/// Quotes `name` as a PostgreSQL identifier: `"name"`, inner quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes `value` as a standard-conforming string literal: `'value'`.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// True when `name` is a plain lower-case identifier of at most 63 bytes
/// (`^[a-z_][a-z0-9_]*$`), the only shape tenantd gives the objects it creates.
pub fn is_plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    first_ok
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_identifiers_and_literals() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn plain_identifiers() {
        assert!(is_plain_identifier("tenantd_auth"));
        assert!(is_plain_identifier("_x1"));
        assert!(!is_plain_identifier("Auth"));
        assert!(!is_plain_identifier("a;drop"));
        assert!(!is_plain_identifier(""));
        assert!(!is_plain_identifier(&"a".repeat(64)));
    }
}
