//! The master secret and what is derived from it: tenant role passwords
//! (HMAC-SHA256 of the tenant id and its password generation), so no password
//! is ever stored — and whether the verifier PostgreSQL keeps for a role
//! (`pg_authid.rolpassword`) is that of a given password, so drift is seen
//! without a login.

use base64::Engine as _;

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

    /// The password of the tenant's role: hex HMAC-SHA256(secret, "role:" +
    /// id), and from generation 1 on (each `rotate-password`) the generation
    /// appended, so generation 0 is the password tenants always had.
    pub fn role_password(&self, tenant_id: Uuid, generation: i32) -> String {
        let mut mac = self.mac.clone();
        mac.update(b"tenantd role password:");
        mac.update(tenant_id.as_bytes());
        if generation != 0 {
            mac.update(b":generation:");
            mac.update(&generation.to_be_bytes());
        }
        hex::encode(mac.finalize().into_bytes())
    }
}

/// Whether `verifier` (a role's `pg_authid.rolpassword`) accepts `password`
/// for `role`: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`
/// (RFC 5802, recomputed) or `md5<hex of md5(password + role)>`. `None` when
/// the role has no password; an unknown format is a mismatch.
pub fn verifier_matches(verifier: Option<&str>, role: &str, password: &str) -> bool {
    match verifier {
        None => false,
        Some(v) if v.starts_with("SCRAM-SHA-256$") => scram_matches(v, password).unwrap_or(false),
        Some(v) if v.starts_with("md5") => {
            v == postgres_protocol::password::md5(password.as_bytes(), role)
        }
        Some(_) => false,
    }
}

fn scram_matches(verifier: &str, password: &str) -> Option<bool> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let rest = verifier.strip_prefix("SCRAM-SHA-256$")?;
    let (params, keys) = rest.split_once('$')?;
    let (iterations, salt) = params.split_once(':')?;
    let (stored_key, server_key) = keys.split_once(':')?;
    let iterations: u32 = iterations.parse().ok()?;
    let salt = b64.decode(salt).ok()?;
    let salted = pbkdf2_sha256(password.as_bytes(), &salt, iterations)?;
    let client_key = hmac_sha256(&salted, b"Client Key")?;
    let expected_stored = Sha256::digest(client_key);
    let expected_server = hmac_sha256(&salted, b"Server Key")?;
    Some(
        b64.decode(stored_key).ok()? == expected_stored.as_slice()
            && b64.decode(server_key).ok()? == expected_server,
    )
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Option<[u8; 32]> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(data);
    Some(mac.finalize().into_bytes().into())
}

/// PBKDF2-HMAC-SHA256 with one output block (SCRAM's `Hi`).
fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> Option<[u8; 32]> {
    let keyed = Hmac::<Sha256>::new_from_slice(password).ok()?;
    let mut mac = keyed.clone();
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut u: [u8; 32] = mac.finalize().into_bytes().into();
    let mut out = u;
    for _ in 1..iterations {
        let mut mac = keyed.clone();
        mac.update(&u);
        u = mac.finalize().into_bytes().into();
        out.iter_mut().zip(u.iter()).for_each(|(o, x)| *o ^= x);
    }
    Some(out)
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
        assert_eq!(secret.role_password(id, 0), secret.role_password(id, 0));
        assert_ne!(
            secret.role_password(id, 0),
            secret.role_password(Uuid::from_u128(2), 0)
        );
        assert_ne!(secret.role_password(id, 0), other.role_password(id, 0));
        assert_ne!(secret.role_password(id, 0), secret.role_password(id, 1));
        assert_ne!(secret.role_password(id, 1), secret.role_password(id, 2));
        assert_eq!(secret.role_password(id, 0).len(), 64);
        assert!(MasterSecret::new(b"short").is_err());
    }

    #[test]
    fn verifiers_made_by_postgres_are_recognised() {
        // A verifier as PostgreSQL stores it, made by the driver's own code.
        let verifier = postgres_protocol::password::scram_sha_256(b"pencil");
        assert!(verifier_matches(Some(&verifier), "r", "pencil"));
        assert!(!verifier_matches(Some(&verifier), "r", "pencil2"));
        let md5 = postgres_protocol::password::md5(b"pencil", "r");
        assert!(verifier_matches(Some(&md5), "r", "pencil"));
        assert!(!verifier_matches(Some(&md5), "other", "pencil"));
        assert!(!verifier_matches(None, "r", "pencil"));
        assert!(!verifier_matches(Some("SCRAM-SHA-256$x"), "r", "pencil"));
    }
}
