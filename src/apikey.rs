//! API keys as domain values: their scope, how a new secret is made and how
//! it is hashed. The secret is shown once to whoever creates the key; the
//! catalog keeps only its SHA-256 hash and a short display prefix. Nothing
//! here talks to a database (the catalog stores the keys).

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error_kind::{Classify, ErrorKind};
use crate::secret::sha256;
use crate::tenant::{Plan, TenantCode};

/// Every key starts with this, so a leaked key is recognisable in logs and scanners.
pub const KEY_PREFIX: &str = "tdk_";
/// Characters of a key kept in the catalog for display (`tdk_` + 8).
const DISPLAY_PREFIX_LEN: usize = 12;
/// Random bytes in a key.
const KEY_BYTES: usize = 32;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyScope {
    /// Every admin route.
    Admin,
    /// The tenant-routed routes of one tenant, and its connection.
    Tenant,
}

impl ApiKeyScope {
    /// The value stored in the catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Tenant => "tenant",
        }
    }
}

impl fmt::Display for ApiKeyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope text that is neither `admin` nor `tenant`.
#[derive(Debug, thiserror::Error)]
#[error("invalid API key scope {0:?}: expected admin or tenant")]
pub struct InvalidScope(pub String);

impl FromStr for ApiKeyScope {
    type Err = InvalidScope;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Self::Admin),
            "tenant" => Ok(Self::Tenant),
            other => Err(InvalidScope(other.to_owned())),
        }
    }
}

/// An API key as recorded in the catalog (without its secret).
#[derive(Debug, Clone, Serialize)]
pub struct ApiKeyRecord {
    /// Identifier.
    pub id: Uuid,
    /// Human name.
    pub name: String,
    /// First characters of the key, for display.
    pub key_prefix: String,
    /// What it may do.
    pub scope: ApiKeyScope,
    /// The tenant a tenant-scoped key is bound to.
    pub tenant_id: Option<Uuid>,
    /// That tenant's code.
    pub tenant_code: Option<TenantCode>,
    /// That tenant's plan (drives its rate limit).
    #[serde(skip)]
    pub tenant_plan: Option<Plan>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Revocation time; a revoked key authenticates nothing.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A key just issued: its record and its secret, shown this once.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedApiKey {
    /// What the catalog keeps.
    pub record: ApiKeyRecord,
    /// The full key (`tdk_…`), sent as `Authorization: Bearer <key>`; not stored.
    pub secret: String,
}

/// Longest key name, in characters.
pub const MAX_KEY_NAME_LEN: usize = 200;

/// Why a key could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    /// The name is empty (after trimming) or too long.
    #[error("name: must be 1 to {MAX_KEY_NAME_LEN} characters")]
    InvalidName,
    /// A tenant key without its tenant, or an admin key with one.
    #[error("tenant: required for a tenant key, refused for an admin key")]
    TenantMismatch,
}

impl Classify for ApiKeyError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidName | Self::TenantMismatch => ErrorKind::InvalidInput,
        }
    }
}

/// A key name, trimmed, checked for length.
pub fn key_name(name: &str) -> Result<&str, ApiKeyError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_KEY_NAME_LEN {
        return Err(ApiKeyError::InvalidName);
    }
    Ok(name)
}

/// A freshly generated key: the secret (shown once) and what the catalog keeps.
pub struct NewKeySecret {
    /// The full key, `tdk_…`; never stored.
    pub secret: String,
    /// Its first characters, for display.
    pub display_prefix: String,
    /// SHA-256 of the full key.
    pub hash: [u8; 32],
}

impl NewKeySecret {
    /// Generates a key from 32 random bytes.
    pub fn generate() -> Self {
        let bytes: [u8; KEY_BYTES] = rand::random();
        let secret = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
        Self {
            display_prefix: secret[..DISPLAY_PREFIX_LEN].to_owned(),
            hash: hash_key(&secret),
            secret,
        }
    }
}

/// The catalog's hash of a presented key.
pub fn hash_key(secret: &str) -> [u8; 32] {
    sha256(secret.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_hashed() {
        let a = NewKeySecret::generate();
        let b = NewKeySecret::generate();
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with(KEY_PREFIX));
        assert_eq!(a.hash, hash_key(&a.secret));
        assert!(a.secret.starts_with(&a.display_prefix));
        assert_eq!(
            "tenant".parse::<ApiKeyScope>().unwrap(),
            ApiKeyScope::Tenant
        );
        assert!("root".parse::<ApiKeyScope>().is_err());
    }
}
