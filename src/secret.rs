//! The master secret and what is derived from it: tenant role passwords
//! (HMAC-SHA256 of the tenant id), so no password is ever stored.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The master secret is too weak to derive passwords from.
#[derive(Debug, thiserror::Error)]
#[error("must be at least {MIN_SECRET_LEN} bytes long (e.g. `openssl rand -hex 32`)")]
pub struct WeakSecret;

/// Shortest accepted master secret.
pub const MIN_SECRET_LEN: usize = 32;

/// `TENANTD_SECRET`: the key of every password derivation.
#[derive(Clone)]
pub struct MasterSecret {
    /// HMAC-SHA256 keyed with the secret, cloned for each derivation.
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterSecret(…)")
    }
}

impl MasterSecret {
    /// Accepts a secret of at least [`MIN_SECRET_LEN`] bytes.
    pub fn new(bytes: &[u8]) -> Result<Self, WeakSecret> {
        if bytes.len() < MIN_SECRET_LEN {
            return Err(WeakSecret);
        }
        let mac = Hmac::<Sha256>::new_from_slice(bytes).map_err(|_| WeakSecret)?;
        Ok(Self { mac })
    }

    /// The password of the tenant's role: hex HMAC-SHA256(secret, "role:" + id).
    pub fn role_password(&self, tenant_id: Uuid) -> String {
        let mut mac = self.mac.clone();
        mac.update(b"tenantd role password:");
        mac.update(tenant_id.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// SHA-256 of `data` (API key hashes, migration set fingerprints).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_stable_and_distinct() {
        let secret = MasterSecret::new(&[7u8; 32]).unwrap();
        let other = MasterSecret::new(&[8u8; 32]).unwrap();
        let id = Uuid::from_u128(1);
        assert_eq!(secret.role_password(id), secret.role_password(id));
        assert_ne!(
            secret.role_password(id),
            secret.role_password(Uuid::from_u128(2))
        );
        assert_ne!(secret.role_password(id), other.role_password(id));
        assert_eq!(secret.role_password(id).len(), 64);
        assert!(MasterSecret::new(b"short").is_err());
    }
}
