//! Adopting a tenant database made by an older tenantd: there the database
//! belonged to the tenant's role and its objects to `pg_database_owner`.
//! The objects are handed to the tenant's role first (PostgreSQL refuses
//! `REASSIGN OWNED BY pg_database_owner`, so each is altered), then the
//! database to tenantd's admin role, and the tenant gets the database
//! privileges it had as owner — the shape of `super::shape`.
//!
//! Only schemas, relations, routines and types are handed over (what
//! migrations make); objects of extensions stay as they are.

use deadpool_postgres::Object;

use super::ProvisionError;
use crate::ident::{quote_ident, quote_literal};
use crate::server::Server;
use crate::tenant::Tenant;

/// Hands every object owned by `pg_database_owner` to the tenant role
/// named by the literal `%TENANT%` (run in the tenant's database).
const ADOPT_OBJECTS: &str = r#"
DO $adopt$
DECLARE
  statement text;
BEGIN
  FOR statement IN
    WITH owner AS (SELECT 'pg_database_owner'::pg_catalog.regrole::oid AS oid),
    own_ns AS (
      SELECT n.oid, n.nspname FROM pg_catalog.pg_namespace n
       WHERE n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'),
    not_extension AS (
      SELECT objid FROM pg_catalog.pg_depend WHERE deptype = 'e')
    SELECT pg_catalog.format('ALTER SCHEMA %I OWNER TO %I', n.nspname, %TENANT%)
      FROM own_ns n JOIN pg_catalog.pg_namespace x ON x.oid = n.oid, owner
     WHERE x.nspowner = owner.oid
    UNION ALL
    SELECT pg_catalog.format('ALTER %s %s OWNER TO %I',
             CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
               WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
             c.oid::pg_catalog.regclass, %TENANT%)
      FROM pg_catalog.pg_class c JOIN own_ns n ON n.oid = c.relnamespace, owner
     WHERE c.relowner = owner.oid AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
       AND c.oid NOT IN (SELECT objid FROM not_extension)
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                        WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                          AND d.objid = c.oid AND d.deptype IN ('a', 'i')
                          AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass)
    UNION ALL
    SELECT pg_catalog.format('ALTER ROUTINE %s OWNER TO %I', p.oid::pg_catalog.regprocedure, %TENANT%)
      FROM pg_catalog.pg_proc p JOIN own_ns n ON n.oid = p.pronamespace, owner
     WHERE p.proowner = owner.oid AND p.oid NOT IN (SELECT objid FROM not_extension)
    UNION ALL
    SELECT pg_catalog.format('ALTER %s %s OWNER TO %I',
             CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
             t.oid::pg_catalog.regtype, %TENANT%)
      FROM pg_catalog.pg_type t JOIN own_ns n ON n.oid = t.typnamespace, owner
     WHERE t.typowner = owner.oid AND t.oid NOT IN (SELECT objid FROM not_extension)
       AND (t.typtype IN ('d', 'e', 'r')
            OR (t.typtype = 'c' AND EXISTS (SELECT 1 FROM pg_catalog.pg_class r
                                              WHERE r.oid = t.typrelid AND r.relkind = 'c')))
  LOOP
    EXECUTE statement;
  END LOOP;
END
$adopt$"#;

/// Adopts `tenant`'s database (see the module documentation); `admin` is a
/// connection to the maintenance database as tenantd's admin role.
pub(crate) async fn adopt_database(
    server: &Server,
    admin: &Object,
    tenant: &Tenant,
) -> Result<(), ProvisionError> {
    let role = tenant.role_name();
    let client = server.connect(&tenant.database_name).await?;
    client
        .batch_execute(&ADOPT_OBJECTS.replace("%TENANT%", &quote_literal(role)))
        .await?;
    drop(client);
    let db = quote_ident(&tenant.database_name);
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {db} OWNER TO CURRENT_USER; {}",
            super::database_grants_sql(&tenant.database_name, role)
        ))
        .await?;
    Ok(())
}
