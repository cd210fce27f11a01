//! What the monolith looks like: its tables, columns and foreign keys, read
//! from the PostgreSQL catalog of the source database (schema `public`).
//!
//! It reads structure only; classification lives in [`super::graph`].

use std::collections::BTreeMap;

use tokio_postgres::Client;

/// A column of a table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Column {
    /// Name.
    pub name: String,
    /// Type as `format_type` prints it.
    pub data_type: String,
    /// Declared NOT NULL.
    pub not_null: bool,
    /// A generated (computed) column: never copied.
    pub generated: bool,
    /// Backed by a sequence (identity or serial): set after a copy.
    pub sequence: bool,
}

/// A single-or-multi-column foreign key `table(columns) → parent(parent_columns)`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ForeignKey {
    /// Constraint name.
    pub name: String,
    /// Referencing table.
    pub table: String,
    /// Referencing columns.
    pub columns: Vec<String>,
    /// Referenced table.
    pub parent: String,
    /// Referenced columns.
    pub parent_columns: Vec<String>,
    /// Every referencing column is NOT NULL.
    pub not_null: bool,
}

/// A table of the monolith.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Table {
    /// Name (schema `public`).
    pub name: String,
    /// Columns in order.
    pub columns: Vec<Column>,
    /// Primary-key columns.
    pub primary_key: Vec<String>,
}

impl Table {
    /// The column with this name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Tables and foreign keys of one database's `public` schema.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Schema {
    /// Tables by name.
    pub tables: BTreeMap<String, Table>,
    /// Every foreign key between them.
    pub foreign_keys: Vec<ForeignKey>,
}

const COLUMNS: &str = "\
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attgenerated <> '',
       pg_get_serial_sequence(format('%I', c.relname), a.attname) IS NOT NULL
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname <> 'refinery_schema_history'
ORDER BY c.relname, a.attnum";

const PRIMARY_KEYS: &str = "\
SELECT c.relname, a.attname
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN LATERAL unnest(k.conkey) WITH ORDINALITY AS u(attnum, ord) ON true
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = u.attnum
WHERE n.nspname = 'public' AND k.contype = 'p'
ORDER BY c.relname, u.ord";

const FOREIGN_KEYS: &str = "\
SELECT k.conname, c.relname, p.relname,
       array(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY u(n, o)
             JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.o)::text[],
       array(SELECT a.attname FROM unnest(k.confkey) WITH ORDINALITY u(n, o)
             JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n ORDER BY u.o)::text[],
       bool_and(a.attnotnull)
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_class p ON p.oid = k.confrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = ANY (k.conkey)
WHERE n.nspname = 'public' AND k.contype = 'f'
GROUP BY k.oid, k.conname, c.relname, p.relname, k.conkey, k.confkey, k.conrelid, k.confrelid
ORDER BY c.relname, k.conname";

impl Schema {
    /// Reads the schema of the database `client` is connected to.
    pub async fn read(client: &Client) -> Result<Self, tokio_postgres::Error> {
        let mut tables: BTreeMap<String, Table> = BTreeMap::new();
        for row in client.query(COLUMNS, &[]).await? {
            let table: String = row.get(0);
            let entry = tables.entry(table.clone()).or_insert_with(|| Table {
                name: table,
                columns: Vec::new(),
                primary_key: Vec::new(),
            });
            entry.columns.push(Column {
                name: row.get(1),
                data_type: row.get(2),
                not_null: row.get(3),
                generated: row.get(4),
                sequence: row.get(5),
            });
        }
        for row in client.query(PRIMARY_KEYS, &[]).await? {
            let table: String = row.get(0);
            if let Some(entry) = tables.get_mut(&table) {
                entry.primary_key.push(row.get(1));
            }
        }
        let foreign_keys = client
            .query(FOREIGN_KEYS, &[])
            .await?
            .iter()
            .map(|row| ForeignKey {
                name: row.get(0),
                table: row.get(1),
                parent: row.get(2),
                columns: row.get(3),
                parent_columns: row.get(4),
                not_null: row.get(5),
            })
            .collect();
        Ok(Self {
            tables,
            foreign_keys,
        })
    }

    /// Foreign keys declared on `table`.
    pub fn foreign_keys_of<'a>(&'a self, table: &'a str) -> impl Iterator<Item = &'a ForeignKey> {
        self.foreign_keys.iter().filter(move |f| f.table == table)
    }
}
