//! What tenantd relies on in a tenant's database and role, stated once; how
//! to read what the server has; and how to put it back.
//!
//! Tenants are hostile by assumption: whatever SQL the tenant's role runs
//! (directly with its `/connection` password, or through a function that
//! runs `EXECUTE`, which the `/v1/sql` gate cannot see), it must not change
//! what tenantd relies on. The mechanism:
//!
//! - **The database is owned by tenantd's admin role**, not by the tenant's.
//!   Every `ALTER DATABASE` (`IS_TEMPLATE`, `ALLOW_CONNECTIONS`, `CONNECTION
//!   LIMIT`, `SET`, `RENAME`, `OWNER`) needs ownership, so PostgreSQL itself
//!   refuses them to the tenant on every path. The tenant's *objects* are
//!   its role's — migrations run as it, and a template clone gets them with
//!   `REASSIGN OWNED` from the template owner — and it holds `CONNECT`,
//!   `TEMPORARY` and `CREATE` on the database, so it keeps full rights on
//!   its own schema.
//! - **The role administers nothing** (`NOSUPERUSER NOCREATEDB NOCREATEROLE
//!   NOREPLICATION NOBYPASSRLS`) and has a `CONNECTION LIMIT`
//!   (`TENANTD_TENANT_ROLE_CONNECTION_LIMIT`) that it cannot raise: only a
//!   role's admin can. PostgreSQL does let every role change its *own
//!   password* and its *own settings* (`ALTER ROLE current_user PASSWORD …`,
//!   `… SET …`), and offers no way to forbid it; so those two are detected
//!   and repaired by `reconcile` (the verifier in `pg_authid` is checked
//!   against the derived password; role settings must be absent).
//! - Anything else found different from [`Shape`] (a tenant made by an older
//!   tenantd, a change by hand) is put back by the same repair; what cannot
//!   be is reported, and the reconciler goes on with the next tenant.
//!
//! This module reads and writes the server's catalogs only; it never
//! touches the AUTH catalog or decides when to run.

use deadpool_postgres::Object;

use super::ProvisionError;
use crate::ident::{quote_ident, quote_literal};
use crate::server::Server;
use crate::tenant::Tenant;

/// What a tenant's database and role must look like (the database's owner
/// is the role tenantd administers the server as: `current_user` of its
/// admin connections).
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    /// The role's `CONNECTION LIMIT`.
    pub connection_limit: i32,
}

/// The database's `CONNECTION LIMIT`: none (the role's limit applies).
const DATABASE_CONNECTION_LIMIT: i32 = -1;

/// One way a tenant's database or role differs from its [`Shape`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Drift {
    /// The database belongs to another role (a tenant made by an older tenantd).
    DatabaseOwner(String),
    /// The database is a template or refuses connections.
    DatabaseSealed,
    /// The database has a connection limit.
    DatabaseConnectionLimit(i32),
    /// The database has settings of its own (`ALTER DATABASE … SET`).
    DatabaseSettings,
    /// The role has an attribute that administers something.
    RoleAttributes,
    /// The role's connection limit is not the configured one.
    RoleConnectionLimit(i32),
    /// The role has settings of its own (`ALTER ROLE … SET`), in these
    /// databases (`None`: in all).
    RoleSettings(Vec<Option<String>>),
    /// The role's password is not the derived one.
    RolePassword,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::DatabaseOwner(owner) => write!(f, "database owned by {owner}"),
            Self::DatabaseSealed => f.write_str("database sealed (template or no connections)"),
            Self::DatabaseConnectionLimit(n) => write!(f, "database connection limit {n}"),
            Self::DatabaseSettings => f.write_str("database-level settings"),
            Self::RoleAttributes => f.write_str("role attributes"),
            Self::RoleConnectionLimit(n) => write!(f, "role connection limit {n}"),
            Self::RoleSettings(_) => f.write_str("role-level settings"),
            Self::RolePassword => f.write_str("role password"),
        }
    }
}

/// The facts read about a tenant's database and role (both exist).
const FACTS_SQL: &str = "\
SELECT pg_catalog.pg_get_userbyid(d.datdba)::text AS owner, current_user::text AS admin, \
       d.datistemplate OR NOT d.datallowconn AS sealed, \
       d.datconnlimit, \
       EXISTS (SELECT 1 FROM pg_catalog.pg_db_role_setting s \
                WHERE s.setdatabase = d.oid AND s.setrole = 0) AS db_settings, \
       r.rolsuper OR r.rolcreatedb OR r.rolcreaterole OR r.rolreplication OR r.rolbypassrls \
         AS powerful, \
       r.rolconnlimit, \
       ARRAY(SELECT sd.datname::text FROM pg_catalog.pg_db_role_setting s \
               LEFT JOIN pg_catalog.pg_database sd ON sd.oid = s.setdatabase \
              WHERE s.setrole = r.oid) AS role_settings \
  FROM pg_catalog.pg_database d, pg_catalog.pg_roles r \
 WHERE d.datname = $1 AND r.rolname = $2";

/// The role's password verifier (readable by a superuser only).
const VERIFIER_SQL: &str = "SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = $1";

impl Shape {
    /// How `tenant`'s database and role differ from the shape; `password` is
    /// the derived one. Empty when the database or role is missing (the
    /// reconciler's other checks handle that).
    pub(crate) async fn inspect(
        &self,
        admin: &Object,
        tenant: &Tenant,
        password: &str,
    ) -> Result<Vec<Drift>, tokio_postgres::Error> {
        let role = tenant.role_name();
        let Some(row) = admin
            .query_opt(FACTS_SQL, &[&tenant.database_name, &role])
            .await?
        else {
            return Ok(Vec::new());
        };
        let mut drift = Vec::new();
        let owner: String = row.try_get("owner")?;
        if owner != row.try_get::<_, String>("admin")? {
            drift.push(Drift::DatabaseOwner(owner));
        }
        if row.try_get("sealed")? {
            drift.push(Drift::DatabaseSealed);
        }
        let db_limit: i32 = row.try_get("datconnlimit")?;
        if db_limit != DATABASE_CONNECTION_LIMIT {
            drift.push(Drift::DatabaseConnectionLimit(db_limit));
        }
        if row.try_get("db_settings")? {
            drift.push(Drift::DatabaseSettings);
        }
        if row.try_get("powerful")? {
            drift.push(Drift::RoleAttributes);
        }
        let role_limit: i32 = row.try_get("rolconnlimit")?;
        if role_limit != self.connection_limit {
            drift.push(Drift::RoleConnectionLimit(role_limit));
        }
        let settings: Vec<Option<String>> = row.try_get("role_settings")?;
        if !settings.is_empty() {
            drift.push(Drift::RoleSettings(settings));
        }
        if !password_matches(admin, role, password).await? {
            drift.push(Drift::RolePassword);
        }
        Ok(drift)
    }

    /// Puts every drifted property back; `password` is the derived one.
    pub(crate) async fn repair(
        &self,
        server: &Server,
        admin: &Object,
        tenant: &Tenant,
        password: &str,
        drift: &[Drift],
    ) -> Result<(), ProvisionError> {
        let db = quote_ident(&tenant.database_name);
        let role = quote_ident(tenant.role_name());
        for item in drift {
            let sql = match item {
                Drift::DatabaseOwner(_) => {
                    super::adopt::adopt_database(server, admin, tenant).await?;
                    continue;
                }
                Drift::DatabaseSealed => {
                    format!("ALTER DATABASE {db} WITH IS_TEMPLATE false ALLOW_CONNECTIONS true")
                }
                Drift::DatabaseConnectionLimit(_) => {
                    format!("ALTER DATABASE {db} WITH CONNECTION LIMIT {DATABASE_CONNECTION_LIMIT}")
                }
                Drift::DatabaseSettings => format!("ALTER DATABASE {db} RESET ALL"),
                Drift::RoleAttributes => format!("ALTER ROLE {role} {ROLE_ATTRIBUTES}"),
                Drift::RoleConnectionLimit(_) => format!(
                    "ALTER ROLE {role} CONNECTION LIMIT {}",
                    self.connection_limit
                ),
                Drift::RoleSettings(databases) => reset_role_settings(&role, databases),
                Drift::RolePassword => {
                    format!("ALTER ROLE {role} PASSWORD {}", quote_literal(password))
                }
            };
            admin.batch_execute(&sql).await?;
        }
        Ok(())
    }

    /// The `CREATE ROLE` of a new tenant role: it may log in with
    /// `password`, administers nothing, has the configured connection limit
    /// and reads SHARED through `reader`.
    pub(crate) fn create_role_sql(&self, role: &str, password: &str, reader: &str) -> String {
        format!(
            "CREATE ROLE {} LOGIN {ROLE_ATTRIBUTES} CONNECTION LIMIT {} PASSWORD {} IN ROLE {}",
            quote_ident(role),
            self.connection_limit,
            quote_literal(password),
            quote_ident(reader)
        )
    }
}

/// The attributes of every tenant role.
const ROLE_ATTRIBUTES: &str = "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS";

fn reset_role_settings(role: &str, databases: &[Option<String>]) -> String {
    databases
        .iter()
        .map(|database| match database {
            None => format!("ALTER ROLE {role} RESET ALL;"),
            Some(db) => format!(
                "ALTER ROLE {role} IN DATABASE {} RESET ALL;",
                quote_ident(db)
            ),
        })
        .collect()
}

/// Whether the role's stored verifier accepts `password`. Without the right
/// to read `pg_authid` (an admin role that is not a superuser) the check is
/// skipped, with a warning.
async fn password_matches(
    admin: &Object,
    role: &str,
    password: &str,
) -> Result<bool, tokio_postgres::Error> {
    let verifier = match admin.query_opt(VERIFIER_SQL, &[&role]).await {
        Ok(row) => row.map(|r| r.try_get::<_, Option<String>>(0)).transpose()?,
        Err(e) if crate::pg_error::is_insufficient_privilege(&e) => {
            tracing::warn!(
                role,
                "cannot read role password verifiers (the admin role is not a superuser); \
                 a password changed by the tenant is not detected"
            );
            return Ok(true);
        }
        Err(e) => return Err(e),
    };
    let verifier = verifier.flatten();
    let role = role.to_owned();
    let password = password.to_owned();
    // PBKDF2 (4,096 rounds): off the async threads.
    Ok(tokio::task::spawn_blocking(move || {
        crate::secret::verifier_matches(verifier.as_deref(), &role, &password)
    })
    .await
    .unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_quote_every_name() {
        let shape = Shape {
            connection_limit: 20,
        };
        assert_eq!(
            shape.create_role_sql("t_a\"b", "p'w", "t__shared_reader"),
            "CREATE ROLE \"t_a\"\"b\" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION \
             NOBYPASSRLS CONNECTION LIMIT 20 PASSWORD 'p''w' IN ROLE \"t__shared_reader\""
        );
        assert_eq!(
            reset_role_settings("\"r\"", &[None, Some("d\"b".to_owned())]),
            "ALTER ROLE \"r\" RESET ALL;ALTER ROLE \"r\" IN DATABASE \"d\"\"b\" RESET ALL;"
        );
        assert_eq!(Drift::RolePassword.to_string(), "role password");
    }
}
