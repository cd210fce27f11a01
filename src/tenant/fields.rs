//! The limits on a tenant's free-text and JSON fields, checked before
//! anything is stored: PostgreSQL's `text` and `jsonb` refuse the NUL
//! character, sizes are capped so one row cannot grow without bound, and a
//! settings document must be an object of finite numbers, bounded in bytes
//! and depth. The HTTP forms and the catalog's writes both call these, so
//! the CLI and library callers get the same rules (a
//! [`TenantError::InvalidField`] naming the field).

use super::TenantError;

/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest administrator e-mail, in bytes.
pub const MAX_EMAIL_LEN: usize = 320;
/// Longest status reason (a suspension's), in characters.
pub const MAX_REASON_CHARS: usize = 1_000;
/// Largest settings document, in bytes of compact JSON.
pub const MAX_SETTINGS_BYTES: usize = 64 * 1024;
/// Deepest nesting of arrays and objects in a settings document.
pub const MAX_SETTINGS_DEPTH: usize = 32;

fn invalid(field: &'static str, reason: impl Into<String>) -> TenantError {
    TenantError::InvalidField {
        field,
        reason: reason.into(),
    }
}

/// A display name: 1 to [`MAX_NAME_CHARS`] characters once trimmed, no
/// control character (NUL, line breaks, …).
pub fn check_name(name: &str) -> Result<(), TenantError> {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed.chars().count() > MAX_NAME_CHARS {
        return Err(invalid(
            "name",
            format!("must be 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("name", "must not contain control characters"));
    }
    Ok(())
}

/// An administrator e-mail: at most [`MAX_EMAIL_LEN`] characters, an `@`,
/// no white space or control character.
pub fn check_email(email: &str) -> Result<(), TenantError> {
    let valid = email.chars().count() <= MAX_EMAIL_LEN
        && email.contains('@')
        && !email.contains(|c: char| c.is_whitespace() || c.is_control());
    match valid {
        true => Ok(()),
        false => Err(invalid("admin_email", "must be an e-mail address")),
    }
}

/// A status reason: at most [`MAX_REASON_CHARS`] characters, no NUL.
pub fn check_reason(reason: &str) -> Result<(), TenantError> {
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(invalid(
            "reason",
            format!("must be at most {MAX_REASON_CHARS} characters"),
        ));
    }
    if reason.contains('\0') {
        return Err(invalid("reason", "must not contain the NUL character"));
    }
    Ok(())
}

/// A settings document: a JSON object of at most [`MAX_SETTINGS_BYTES`]
/// bytes and [`MAX_SETTINGS_DEPTH`] levels, finite numbers only, no NUL in
/// any key or string.
pub fn check_settings(settings: &serde_json::Value) -> Result<(), TenantError> {
    if !settings.is_object() {
        return Err(invalid("settings", "must be a JSON object"));
    }
    check_json("settings", settings, 1)?;
    let size = serde_json::to_vec(settings).map_or(usize::MAX, |bytes| bytes.len());
    if size > MAX_SETTINGS_BYTES {
        return Err(invalid(
            "settings",
            format!("must be at most {MAX_SETTINGS_BYTES} bytes of JSON ({size} sent)"),
        ));
    }
    Ok(())
}

/// A JSON document tenantd writes to a `jsonb` column (an operation's
/// detail): no NUL in any key or string, finite numbers, bounded depth.
pub fn check_document(field: &'static str, value: &serde_json::Value) -> Result<(), TenantError> {
    check_json(field, value, 1)
}

fn check_json(
    field: &'static str,
    value: &serde_json::Value,
    depth: usize,
) -> Result<(), TenantError> {
    use serde_json::Value;
    if depth > MAX_SETTINGS_DEPTH {
        return Err(invalid(
            field,
            format!("must nest at most {MAX_SETTINGS_DEPTH} levels deep"),
        ));
    }
    let nul = || invalid(field, "must not contain the NUL character");
    match value {
        Value::Null | Value::Bool(_) => Ok(()),
        // serde_json holds no NaN or infinity, but say it where it matters:
        // PostgreSQL's `numeric` would store anything, tenantd reads f64.
        Value::Number(n) => match n.as_f64().is_some_and(f64::is_finite) {
            true => Ok(()),
            false => Err(invalid(field, format!("{n} is not a finite number"))),
        },
        Value::String(s) => match s.contains('\0') {
            true => Err(nul()),
            false => Ok(()),
        },
        Value::Array(items) => items
            .iter()
            .try_for_each(|item| check_json(field, item, depth + 1)),
        Value::Object(members) => members.iter().try_for_each(|(key, item)| {
            if key.contains('\0') {
                return Err(nul());
            }
            check_json(field, item, depth + 1)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(result: Result<(), TenantError>) -> &'static str {
        match result {
            Err(TenantError::InvalidField { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn names() {
        assert!(check_name("Acme Steel").is_ok());
        assert!(check_name(&"é".repeat(MAX_NAME_CHARS)).is_ok());
        for bad in ["", "   ", "a\0b", "a\nb"] {
            assert_eq!(field_of(check_name(bad)), "name", "{bad:?}");
        }
        assert_eq!(
            field_of(check_name(&"a".repeat(MAX_NAME_CHARS + 1))),
            "name"
        );
    }

    #[test]
    fn emails_and_reasons() {
        assert!(check_email("a@b.c").is_ok());
        for bad in ["ab", "a b@c", "a\0@b"] {
            assert_eq!(field_of(check_email(bad)), "admin_email");
        }
        assert!(check_reason("late payment").is_ok());
        assert_eq!(field_of(check_reason("x\0")), "reason");
        assert_eq!(
            field_of(check_reason(&"x".repeat(MAX_REASON_CHARS + 1))),
            "reason"
        );
    }

    #[test]
    fn settings() {
        assert!(check_settings(&json!({"a": f64::MAX, "b": [1, "x", null]})).is_ok());
        assert_eq!(field_of(check_settings(&json!([1]))), "settings");
        assert_eq!(field_of(check_settings(&json!({"a": "\u{0}"}))), "settings");
        assert_eq!(field_of(check_settings(&json!({"\u{0}": 1}))), "settings");
        let big = json!({ "a": "x".repeat(MAX_SETTINGS_BYTES) });
        assert_eq!(field_of(check_settings(&big)), "settings");
        let mut deep = json!(1);
        for _ in 0..MAX_SETTINGS_DEPTH {
            deep = json!({ "a": deep });
        }
        assert_eq!(field_of(check_settings(&deep)), "settings");
    }
}
