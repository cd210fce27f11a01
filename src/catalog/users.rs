//! The `users` and `memberships` tables of AUTH, as far as tenantd writes
//! them today: users and memberships imported in bulk (by the legacy
//! split), counted and deleted by id.

use uuid::Uuid;

use super::{Catalog, CatalogError};

/// A user to import; an existing user with this id is kept as it is.
#[derive(Debug, Clone)]
pub struct ImportedUser<'a> {
    /// Its AUTH id.
    pub id: Uuid,
    /// E-mail address.
    pub email: &'a str,
    /// Display name.
    pub display_name: Option<&'a str>,
    /// Password hash, in whatever format the source kept it.
    pub password_hash: Option<&'a str>,
    /// Whether the user may log in.
    pub is_active: bool,
}

/// A user's membership of a tenant, with its role (`owner`, `admin`, `member`, `viewer`).
#[derive(Debug, Clone)]
pub struct ImportedMembership {
    /// The user's AUTH id.
    pub user_id: Uuid,
    /// The tenant's id.
    pub tenant_id: Uuid,
    /// The role.
    pub role: &'static str,
}

const INSERT_USERS: &str = "INSERT INTO users (id, email, display_name, password_hash, is_active)
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bool[])
    ON CONFLICT DO NOTHING";
const INSERT_MEMBERSHIPS: &str = "INSERT INTO memberships (user_id, tenant_id, role)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[])
    ON CONFLICT DO NOTHING";
const COUNT_USERS: &str = "SELECT count(*) FROM users WHERE id = ANY ($1)";
const DELETE_USERS: &str = "DELETE FROM users WHERE id = ANY ($1)";

impl Catalog {
    /// Inserts the users that do not exist yet (one statement).
    pub async fn import_users(&self, users: &[ImportedUser<'_>]) -> Result<(), CatalogError> {
        let ids: Vec<Uuid> = users.iter().map(|u| u.id).collect();
        let emails: Vec<&str> = users.iter().map(|u| u.email).collect();
        let names: Vec<Option<&str>> = users.iter().map(|u| u.display_name).collect();
        let hashes: Vec<Option<&str>> = users.iter().map(|u| u.password_hash).collect();
        let active: Vec<bool> = users.iter().map(|u| u.is_active).collect();
        self.client()
            .await?
            .execute(INSERT_USERS, &[&ids, &emails, &names, &hashes, &active])
            .await?;
        Ok(())
    }

    /// Inserts the memberships that do not exist yet (one statement).
    pub async fn import_memberships(
        &self,
        memberships: &[ImportedMembership],
    ) -> Result<(), CatalogError> {
        let users: Vec<Uuid> = memberships.iter().map(|m| m.user_id).collect();
        let tenants: Vec<Uuid> = memberships.iter().map(|m| m.tenant_id).collect();
        let roles: Vec<&str> = memberships.iter().map(|m| m.role).collect();
        self.client()
            .await?
            .execute(INSERT_MEMBERSHIPS, &[&users, &tenants, &roles])
            .await?;
        Ok(())
    }

    /// How many of these users exist.
    pub async fn count_users(&self, ids: &[Uuid]) -> Result<i64, CatalogError> {
        let row = self.client().await?.query_one(COUNT_USERS, &[&ids]).await?;
        Ok(row.try_get(0)?)
    }

    /// Deletes these users (their memberships go with them); returns how many were deleted.
    pub async fn delete_users(&self, ids: &[Uuid]) -> Result<u64, CatalogError> {
        Ok(self.client().await?.execute(DELETE_USERS, &[&ids]).await?)
    }
}
