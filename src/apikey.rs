//! API keys as domain values: their scope, how a new secret is made and how
//! it is hashed. The secret is shown once to whoever creates the key; the
//! catalog keeps only its SHA-256 hash and a short display prefix. Nothing
//! here talks to a database ([`crate::catalog`] stores the keys).

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::secret::sha256;

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
