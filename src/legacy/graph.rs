//! Classification of the monolith's tables from its foreign-key graph: a
//! table that reaches the société key through foreign keys is a tenant table
//! (with the path that decides which société owns each row), a table only
//! referenced by tenant (or shared) tables is shared, user tables are auth,
//! the rest is skipped. Config overrides win.
//!
//! It also orders tenant tables parents-first and builds the SQL that selects
//! one société's rows along a table's path.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::config::{Class, LegacyConfig};
use super::schema::{ForeignKey, Schema};
use crate::ident::{quote_ident, quote_literal};

/// Extra cost of following a nullable foreign key (a NOT NULL path is preferred).
const NULLABLE_COST: u32 = 1000;

/// One step of a path: `column` of the current table references `parent(parent_column)`.
#[derive(Debug, Clone, Serialize)]
pub struct Hop {
    /// The referencing column.
    pub column: String,
    /// The referenced table.
    pub parent: String,
    /// The referenced column.
    pub parent_column: String,
}

/// How a table is split, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Classified {
    /// The class.
    pub class: Class,
    /// Set by a config override rather than inferred.
    pub overridden: bool,
    /// For tenant tables: the foreign-key path to the société table.
    pub path: Vec<Hop>,
    /// A readable reason.
    pub reason: String,
}

/// The classification of every table.
#[derive(Debug, Clone, Serialize)]
pub struct Graph {
    /// By table name.
    pub tables: BTreeMap<String, Classified>,
    /// Tenant tables, parents before children.
    pub tenant_order: Vec<String>,
    /// Shared tables, parents before children.
    pub shared_order: Vec<String>,
}

impl Graph {
    /// Classifies every table of `schema` under `config`.
    pub fn classify(schema: &Schema, config: &LegacyConfig) -> Self {
        let societe = &config.societe.table;
        let auth: BTreeSet<&str> = [config.users.table.as_str(), &config.memberships.table]
            .into_iter()
            .chain(std::iter::once(societe.as_str()))
            .collect();
        let fixed = |t: &str| config.classification.get(t).copied();
        let paths = tenant_paths(schema, societe, |t| {
            !auth.contains(t) && fixed(t).is_none_or(|c| c == Class::Tenant)
        });
        let mut tables = BTreeMap::new();
        for name in schema.tables.keys() {
            let classified = if let Some(class) = fixed(name) {
                let path = paths.get(name).cloned().unwrap_or_default();
                Classified {
                    class,
                    overridden: true,
                    path,
                    reason: "config override".to_owned(),
                }
            } else if name == societe {
                auth_entry("the société table: its rows become tenants in AUTH")
            } else if auth.contains(name.as_str()) {
                auth_entry("user or membership table: copied into AUTH")
            } else if let Some(path) = paths.get(name) {
                Classified {
                    class: Class::Tenant,
                    overridden: false,
                    reason: format!("reaches {societe} through {}", describe(name, path)),
                    path: path.clone(),
                }
            } else {
                Classified {
                    class: Class::Skip,
                    overridden: false,
                    path: Vec::new(),
                    reason: "reaches no société and no tenant table refers to it".to_owned(),
                }
            };
            tables.insert(name.clone(), classified);
        }
        mark_shared(schema, &mut tables);
        let tenant_order = topological(schema, &tables, Class::Tenant);
        let shared_order = topological(schema, &tables, Class::Shared);
        Self {
            tables,
            tenant_order,
            shared_order,
        }
    }

    /// The class of `table`.
    pub fn class(&self, table: &str) -> Option<Class> {
        self.tables.get(table).map(|c| c.class)
    }

    /// The path of a tenant table.
    pub fn path(&self, table: &str) -> &[Hop] {
        self.tables.get(table).map_or(&[], |c| &c.path)
    }
}

fn auth_entry(reason: &str) -> Classified {
    Classified {
        class: Class::Auth,
        overridden: false,
        path: Vec::new(),
        reason: reason.to_owned(),
    }
}

/// `orders.client_id → clients.societe_id → societes`
pub fn describe(table: &str, path: &[Hop]) -> String {
    let mut text = table.to_owned();
    for hop in path {
        text.push_str(&format!(".{} → {}", hop.column, hop.parent));
    }
    text
}

/// Cheapest single-column foreign-key path of every table to the société table.
fn tenant_paths(
    schema: &Schema,
    societe: &str,
    may_cross: impl Fn(&str) -> bool,
) -> BTreeMap<String, Vec<Hop>> {
    let mut best: BTreeMap<String, (u32, Vec<Hop>)> = BTreeMap::new();
    best.insert(societe.to_owned(), (0, Vec::new()));
    loop {
        let mut changed = false;
        for fk in schema.foreign_keys.iter().filter(|f| f.columns.len() == 1) {
            if fk.table == societe || !may_cross(&fk.table) {
                continue;
            }
            let Some((cost, rest)) = best.get(&fk.parent).cloned() else {
                continue;
            };
            let step = if fk.not_null { 1 } else { NULLABLE_COST };
            let cost = cost + step;
            if best.get(&fk.table).is_none_or(|(c, _)| cost < *c) {
                let mut path = vec![hop(fk)];
                path.extend(rest);
                best.insert(fk.table.clone(), (cost, path));
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    best.remove(societe);
    best.into_iter().map(|(t, (_, p))| (t, p)).collect()
}

fn hop(fk: &ForeignKey) -> Hop {
    Hop {
        column: fk.columns[0].clone(),
        parent: fk.parent.clone(),
        parent_column: fk.parent_columns[0].clone(),
    }
}

/// Skipped tables referenced by tenant or shared tables become shared.
fn mark_shared(schema: &Schema, tables: &mut BTreeMap<String, Classified>) {
    loop {
        let mut changed = false;
        for fk in &schema.foreign_keys {
            let from = tables.get(&fk.table).map(|c| c.class);
            let to = tables.get(&fk.parent);
            if matches!(from, Some(Class::Tenant | Class::Shared))
                && to.is_some_and(|c| c.class == Class::Skip && !c.overridden)
                && let Some(entry) = tables.get_mut(&fk.parent)
            {
                entry.class = Class::Shared;
                entry.reason = format!(
                    "reference data: referenced by {}.{}",
                    fk.table,
                    fk.columns.join(",")
                );
                changed = true;
            }
        }
        changed |= mark_shared_children(schema, tables);
        if !changed {
            break;
        }
    }
}

/// Skipped tables with a foreign key to a shared table and none to tenant or
/// auth tables (link tables of reference data, e.g. material ↔ standard)
/// become shared.
fn mark_shared_children(schema: &Schema, tables: &mut BTreeMap<String, Classified>) -> bool {
    let mut changed = false;
    let candidates: Vec<String> = tables
        .iter()
        .filter(|(_, c)| c.class == Class::Skip && !c.overridden)
        .map(|(n, _)| n.clone())
        .collect();
    for name in candidates {
        let mut fks = schema.foreign_keys_of(&name).peekable();
        if fks.peek().is_none() {
            continue;
        }
        let classes: Vec<Option<Class>> = fks
            .map(|fk| tables.get(&fk.parent).map(|c| c.class))
            .collect();
        let links_shared = classes.contains(&Some(Class::Shared))
            && !classes
                .iter()
                .any(|c| matches!(c, Some(Class::Tenant | Class::Auth)));
        if links_shared && let Some(entry) = tables.get_mut(&name) {
            entry.class = Class::Shared;
            entry.reason = "reference data: its foreign keys lead to shared tables only".to_owned();
            changed = true;
        }
    }
    changed
}

/// Tables of `class`, every parent (within the class) before its children.
fn topological(
    schema: &Schema,
    tables: &BTreeMap<String, Classified>,
    class: Class,
) -> Vec<String> {
    let members: BTreeSet<&String> = tables
        .iter()
        .filter(|(_, c)| c.class == class)
        .map(|(n, _)| n)
        .collect();
    let mut done: Vec<String> = Vec::new();
    let mut left: BTreeSet<&String> = members.clone();
    while !left.is_empty() {
        let ready: Vec<&String> = left
            .iter()
            .filter(|t| {
                schema.foreign_keys_of(t).all(|fk| {
                    fk.parent.as_str() == t.as_str()
                        || !members.contains(&fk.parent)
                        || done.contains(&fk.parent)
                })
            })
            .copied()
            .collect();
        // A cycle: take the rest in name order (the copy will report the FK it breaks).
        let ready = if ready.is_empty() {
            left.iter().copied().collect()
        } else {
            ready
        };
        for t in ready {
            left.remove(t);
            done.push(t.clone());
        }
    }
    done
}

/// `FROM t AS t0 LEFT JOIN p AS t1 ON … ` and the expression giving the
/// owning société key (`NULL` for rows owned by none) of a tenant table.
pub fn owner_from(table: &str, path: &[Hop], alias: &str) -> (String, String) {
    let mut from = format!("{} AS {alias}0", quote_ident(table));
    let mut current = format!("{alias}0");
    let Some((last, inner)) = path.split_last() else {
        return (from, "NULL".to_owned());
    };
    for (i, hop) in inner.iter().enumerate() {
        let next = format!("{alias}{}", i + 1);
        from.push_str(&format!(
            " LEFT JOIN {} AS {next} ON {next}.{} = {current}.{}",
            quote_ident(&hop.parent),
            quote_ident(&hop.parent_column),
            quote_ident(&hop.column)
        ));
        current = next;
    }
    (from, format!("{current}.{}", quote_ident(&last.column)))
}

/// The condition selecting one société's rows: `owner = 'key'`, plus the
/// rows owned by none when this société is the default one.
pub fn owner_condition(owner: &str, key: Option<&str>, takes_orphans: bool) -> String {
    match (key, takes_orphans) {
        (Some(k), true) => format!("({owner} = {} OR {owner} IS NULL)", quote_literal(k)),
        (Some(k), false) => format!("{owner} = {}", quote_literal(k)),
        (None, _) => format!("{owner} IS NULL"),
    }
}
