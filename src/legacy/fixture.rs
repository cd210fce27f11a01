//! A generated TopSteel-like ERP monolith, for tests and the benchmark: one
//! database where every société's rows sit side by side.
//!
//! Test and benchmark code only: compiled with the `testing` feature.
//!
//! Its tenant tables are the shipped tenant schema's tables
//! (`migrations/tenant`) plus a `societe_id` column on the root tables
//! (clients, suppliers, articles, warehouses); its reference tables are the
//! shipped SHARED schema's (`migrations/shared`) with their seed rows plus a
//! few extra materials. Beside them: `societes`, `users`, `user_societes`, and
//! `app_log` (owned by nobody). Rows are generated server-side with
//! `generate_series`, with explicit ids, so large monoliths build fast.
//!
//! It also plants what the audit must find: test users and test clients
//! (`@test.` e-mails) and a few orphan rows owned by no société.

use tokio_postgres::Client;

use crate::ident::quote_ident;

const SHARED_SQL: &str = include_str!("../../migrations/shared/V1__reference_data.sql");
const TENANT_SQL: &str = include_str!("../../migrations/tenant/V1__erp_schema.sql");

/// The monolith's own tables and the links that make the FK graph.
const MONOLITH_DDL: &str = "
CREATE TABLE societes (
    id      bigint PRIMARY KEY,
    code    text NOT NULL UNIQUE,
    name    text NOT NULL
);
CREATE TABLE users (
    id              bigint PRIMARY KEY,
    email           text NOT NULL UNIQUE,
    display_name    text,
    password_hash   text,
    is_active       boolean NOT NULL DEFAULT true
);
CREATE TABLE user_societes (
    user_id     bigint NOT NULL REFERENCES users (id),
    societe_id  bigint NOT NULL REFERENCES societes (id),
    role        text NOT NULL,
    PRIMARY KEY (user_id, societe_id)
);
CREATE TABLE app_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message     text NOT NULL
);
ALTER TABLE clients    ADD COLUMN societe_id bigint REFERENCES societes (id);
ALTER TABLE suppliers  ADD COLUMN societe_id bigint REFERENCES societes (id);
ALTER TABLE articles   ADD COLUMN societe_id bigint REFERENCES societes (id);
ALTER TABLE warehouses ADD COLUMN societe_id bigint REFERENCES societes (id);
CREATE INDEX clients_societe ON clients (societe_id);
CREATE INDEX suppliers_societe ON suppliers (societe_id);
CREATE INDEX articles_societe ON articles (societe_id);
CREATE INDEX warehouses_societe ON warehouses (societe_id);
ALTER TABLE articles ADD FOREIGN KEY (material_code) REFERENCES materials (code);
ALTER TABLE articles ADD FOREIGN KEY (unit_code) REFERENCES units (code);
ALTER TABLE clients  ADD FOREIGN KEY (currency) REFERENCES currencies (code);
ALTER TABLE clients  ADD FOREIGN KEY (country_code) REFERENCES countries (code);
INSERT INTO materials (code, name, grade, density_kg_m3, unit) VALUES
    ('S460M', 'Thermomechanical structural steel S460M', 'S460M (1.8827)', 7850, 'kg'),
    ('DX51D', 'Galvanised sheet DX51D+Z275', 'DX51D (1.0226)', 7850, 'kg');
INSERT INTO app_log (message) VALUES ('monolith created'), ('nightly export');
";

/// Rows of one monolith, generated from `$1` sociétés and `$2` clients each.
const DATA_SQL: &[&str] = &[
    "INSERT INTO societes SELECT s, format('TS-%s', lpad(s::text, 2, '0')), format('TopSteel %s', s)
     FROM generate_series(1, $1::int) s",
    "INSERT INTO users SELECT (s - 1) * 4 + u, format('user%s.%s@societe%s.example', u, s, s),
            format('User %s/%s', s, u), 'argon2id$fixture', u <> 3
     FROM generate_series(1, $1::int) s, generate_series(1, 3) u",
    "INSERT INTO users SELECT (s - 1) * 4 + 4, format('qa%s@test.example', s), 'QA robot', NULL, true
     FROM generate_series(1, $1::int) s",
    "INSERT INTO user_societes SELECT (s - 1) * 4 + u, s, CASE u WHEN 1 THEN 'owner' WHEN 2 THEN 'admin' ELSE 'comptable' END
     FROM generate_series(1, $1::int) s, generate_series(1, 4) u",
    "INSERT INTO user_societes SELECT 1, s, 'viewer' FROM generate_series(2, $1::int) s",
    "INSERT INTO warehouses (id, code, name, societe_id) OVERRIDING SYSTEM VALUE
     SELECT (s - 1) * 2 + w, format('W%s-%s', s, w), format('Dépôt %s', w), s
     FROM generate_series(1, $1::int) s, generate_series(1, 2) w",
    "INSERT INTO suppliers (id, code, name, currency, country_code, societe_id) OVERRIDING SYSTEM VALUE
     SELECT (s - 1) * 2 + f, format('F%s-%s', s, f), format('Aciérie %s', f), 'EUR', 'FR', s
     FROM generate_series(1, $1::int) s, generate_series(1, 2) f",
    "INSERT INTO articles (id, code, designation, material_code, unit_code, profile, sale_price, default_supplier_id, societe_id)
     OVERRIDING SYSTEM VALUE
     SELECT (s - 1) * 20 + a, format('A%s-%s', s, a), format('Poutrelle HEA %s', 100 + a * 20),
            (ARRAY['S235JR','S275JR','S355J2','S460M','AL6060'])[1 + a % 5], 'kg', format('HEA %s', 100 + a * 20),
            10 + a, (s - 1) * 2 + 1 + a % 2, s
     FROM generate_series(1, $1::int) s, generate_series(1, 20) a",
    "INSERT INTO stock (id, article_id, warehouse_id, quantity, location) OVERRIDING SYSTEM VALUE
     SELECT (s - 1) * 40 + (a - 1) * 2 + w, (s - 1) * 20 + a, (s - 1) * 2 + w, a * 10 + w, format('R%s', a)
     FROM generate_series(1, $1::int) s, generate_series(1, 20) a, generate_series(1, 2) w",
    "INSERT INTO clients (id, code, name, email, country_code, currency, societe_id) OVERRIDING SYSTEM VALUE
     SELECT (s - 1) * $2::bigint + c, format('C%s-%s', s, c), format('Client %s de %s', c, s),
            format('achat@client%s-%s.example', s, c), 'FR', 'EUR', s
     FROM generate_series(1, $1::int) s, generate_series(1, $2::int) c",
    "INSERT INTO orders (id, number, client_id, status, currency, total_net) OVERRIDING SYSTEM VALUE
     SELECT (s - 1) * 2 * $2::bigint + o, format('S%s-O%s', s, o), (s - 1) * $2::bigint + 1 + (o - 1) % $2::int,
            'confirmed', 'EUR', o % 1000
     FROM generate_series(1, $1::int) s, generate_series(1, 2 * $2::int) o",
    "INSERT INTO order_lines (id, order_id, line_no, article_id, description, quantity, unit_price) OVERRIDING SYSTEM VALUE
     SELECT ((s - 1) * 2 * $2::bigint + o - 1) * 3 + l, (s - 1) * 2 * $2::bigint + o, l,
            (s - 1) * 20 + 1 + (o + l) % 20, 'Découpe et perçage', l, 12.5
     FROM generate_series(1, $1::int) s, generate_series(1, 2 * $2::int) o, generate_series(1, 3) l",
];

/// Test data and orphans (ids far above the generated ones).
const EXTRA_SQL: &str = "
INSERT INTO clients (id, code, name, email, currency, societe_id) OVERRIDING SYSTEM VALUE
SELECT 900000000 + s, format('TEST-%s', s), 'Client de test', format('qa%s@test.example', s), 'EUR', s
FROM generate_series(1, (SELECT count(*) FROM societes)::int) s;
INSERT INTO clients (id, code, name, currency) OVERRIDING SYSTEM VALUE
VALUES (910000001, 'ORPHAN-1', 'Client sans société', 'EUR'), (910000002, 'ORPHAN-2', 'Ancien client', 'CHF');
INSERT INTO articles (id, code, designation, material_code, unit_code) OVERRIDING SYSTEM VALUE
VALUES (910000001, 'ORPHAN-A1', 'Tôle orpheline', 'DX51D', 'kg');
INSERT INTO orders (id, number, client_id, currency) OVERRIDING SYSTEM VALUE
VALUES (910000001, 'ORPHAN-O1', 910000001, 'EUR');
INSERT INTO order_lines (id, order_id, line_no, article_id, quantity, unit_price) OVERRIDING SYSTEM VALUE
VALUES (910000001, 910000001, 1, 910000001, 2, 40), (910000002, 910000001, 2, 910000001, 1, 40);
";

/// Shape of a generated monolith.
#[derive(Debug, Clone, Copy)]
pub struct Fixture {
    /// Number of sociétés.
    pub societes: u32,
    /// Clients per société (orders are twice that, order lines six times).
    pub clients_per_societe: u32,
}

impl Fixture {
    /// Tenant-table rows of one société (clients, orders, lines, articles, stock, warehouses, suppliers).
    pub fn tenant_rows_per_societe(&self) -> u64 {
        u64::from(self.clients_per_societe) * 9 + 20 + 40 + 2 + 2
    }

    /// Creates database `name` on the server reached by `admin` (connected
    /// to the maintenance database) and fills it; `config` reaches the server.
    pub async fn create(
        &self,
        admin: &Client,
        config: &tokio_postgres::Config,
        name: &str,
    ) -> Result<(), tokio_postgres::Error> {
        admin
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
            .await?;
        let mut config = config.clone();
        config.dbname(name);
        let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
        let driver = tokio::spawn(connection);
        client.batch_execute(SHARED_SQL).await?;
        client.batch_execute(TENANT_SQL).await?;
        client.batch_execute(MONOLITH_DDL).await?;
        let societes = i32::try_from(self.societes).unwrap_or(i32::MAX);
        let clients = i32::try_from(self.clients_per_societe).unwrap_or(i32::MAX);
        for statement in DATA_SQL {
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                if statement.contains("$2") {
                    vec![&societes, &clients]
                } else {
                    vec![&societes]
                };
            client.execute(*statement, &params).await?;
        }
        client.batch_execute(EXTRA_SQL).await?;
        client.batch_execute("ANALYZE").await?;
        drop(client);
        let _ = driver.await;
        Ok(())
    }
}
