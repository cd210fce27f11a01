//! Users and memberships copied from the monolith into AUTH. AUTH keys users
//! by UUID: a source user's UUID is derived from the source name and its key
//! (SHA-256), so a resumed or repeated run finds the same users again.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use tokio_postgres::Client;
use uuid::Uuid;

use super::{LegacyConfig, LegacyError};
use crate::Orchestrator;
use crate::catalog::{ImportedMembership, ImportedUser};
use crate::ident::quote_ident;

/// The AUTH id of the source user with key `key`.
pub fn user_id(source: &str, key: &str) -> Uuid {
    let digest = Sha256::digest(format!("tenantd-legacy-user\0{source}\0{key}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// A user row of the source.
struct SourceUser {
    key: String,
    email: String,
    display_name: Option<String>,
    password_hash: Option<String>,
    is_active: bool,
}

async fn source_users(src: &Client, config: &LegacyConfig) -> Result<Vec<SourceUser>, LegacyError> {
    let u = &config.users;
    let sql = format!(
        "SELECT {}::text, {}::text, {}::text, {}::text, coalesce({}::bool, true) FROM {}",
        quote_ident(&u.id),
        quote_ident(&u.email),
        quote_ident(&u.display_name),
        quote_ident(&u.password_hash),
        quote_ident(&u.is_active),
        quote_ident(&u.table)
    );
    let rows = src
        .query(&sql, &[])
        .await
        .map_err(LegacyError::db("read the source users"))?;
    Ok(rows
        .iter()
        .map(|r| SourceUser {
            key: r.get(0),
            email: r.get(1),
            display_name: r.get(2),
            password_hash: r.get(3),
            is_active: r.get(4),
        })
        .collect())
}

/// AUTH ids of every source user.
pub async fn user_ids(src: &Client, config: &LegacyConfig) -> Result<Vec<Uuid>, LegacyError> {
    let source = config.source_db()?;
    Ok(source_users(src, config)
        .await?
        .iter()
        .map(|u| user_id(&source, &u.key))
        .collect())
}

/// Copies the users into AUTH (existing ones are kept); returns how many the source has.
pub async fn copy_users(
    src: &Client,
    orchestrator: &Orchestrator,
    config: &LegacyConfig,
) -> Result<i64, LegacyError> {
    let source = config.source_db()?;
    let users = source_users(src, config).await?;
    let imported: Vec<ImportedUser<'_>> = users
        .iter()
        .map(|u| ImportedUser {
            id: user_id(&source, &u.key),
            email: &u.email,
            display_name: u.display_name.as_deref(),
            password_hash: u.password_hash.as_deref(),
            is_active: u.is_active,
        })
        .collect();
    orchestrator.import_users(&imported).await?;
    Ok(i64::try_from(users.len()).unwrap_or(i64::MAX))
}

/// How many of the source's users AUTH holds.
pub async fn count_in_auth(
    src: &Client,
    orchestrator: &Orchestrator,
    config: &LegacyConfig,
) -> Result<(i64, i64), LegacyError> {
    let ids = user_ids(src, config).await?;
    let found = orchestrator.count_users(&ids).await?;
    Ok((i64::try_from(ids.len()).unwrap_or(i64::MAX), found))
}

/// Links users to their sociétés' tenants; `tenants` maps a société key to
/// the tenant's id. Returns the memberships written or kept.
pub async fn copy_memberships(
    src: &Client,
    orchestrator: &Orchestrator,
    config: &LegacyConfig,
    tenants: &HashMap<String, Uuid>,
) -> Result<i64, LegacyError> {
    let source = config.source_db()?;
    let m = &config.memberships;
    let sql = format!(
        "SELECT {}::text, {}::text, {}::text FROM {}",
        quote_ident(&m.user_column),
        quote_ident(&m.societe_column),
        quote_ident(&m.role_column),
        quote_ident(&m.table)
    );
    let rows = src
        .query(&sql, &[])
        .await
        .map_err(LegacyError::db("read the source memberships"))?;
    let mut memberships = Vec::new();
    for row in &rows {
        let (user, societe, role): (String, Option<String>, Option<String>) =
            (row.get(0), row.get(1), row.get(2));
        let Some(tenant) = societe.and_then(|s| tenants.get(&s).copied()) else {
            continue;
        };
        memberships.push(ImportedMembership {
            user_id: user_id(&source, &user),
            tenant_id: tenant,
            role: auth_role(role.as_deref()),
        });
    }
    orchestrator.import_memberships(&memberships).await?;
    Ok(i64::try_from(memberships.len()).unwrap_or(i64::MAX))
}

/// AUTH's role for a source role: owner, admin and viewer keep theirs, the rest are members.
fn auth_role(role: Option<&str>) -> &'static str {
    match role.map(str::to_ascii_lowercase).as_deref() {
        Some("owner") => "owner",
        Some("admin") => "admin",
        Some("viewer") => "viewer",
        _ => "member",
    }
}

/// Deletes the source's users from AUTH (rollback into an AUTH that stays).
pub async fn delete_users(
    src: &Client,
    orchestrator: &Orchestrator,
    config: &LegacyConfig,
) -> Result<u64, LegacyError> {
    let ids = user_ids(src, config).await?;
    Ok(orchestrator.delete_users(&ids).await?)
}
