//! The legacy split's configuration file (TOML): where the monolith is, how
//! its sociétés and users are found, overrides of the inferred table
//! classification, test-data rules and where backups and reports go.
//!
//! It only parses and validates; it opens no connection. The commented
//! example is `legacy.example.toml` at the repository root.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ident::is_plain_identifier;
use crate::tenant::TenantCode;

/// The configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read the legacy config {}: {source}; pass an existing file with --config", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid legacy config {}: {message}; see legacy.example.toml", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A value is not acceptable.
    #[error("legacy config: {field}: {problem}")]
    Invalid {
        /// The key at fault.
        field: String,
        /// What is wrong and what is expected.
        problem: String,
    },
}

/// How a table of the monolith is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Identity data: goes to AUTH.
    Auth,
    /// Reference data read by every société: goes to SHARED.
    Shared,
    /// One société's business data: goes to its tenant database.
    Tenant,
    /// Left behind.
    Skip,
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyConfig {
    /// The monolith.
    pub source: Source,
    /// The table listing the sociétés.
    #[serde(default)]
    pub societe: SocieteTable,
    /// The société that receives rows owned by no société.
    #[serde(default)]
    pub default_societe: DefaultSociete,
    /// The user table copied into AUTH.
    #[serde(default)]
    pub users: UserTable,
    /// The user ↔ société table copied into AUTH memberships.
    #[serde(default)]
    pub memberships: MembershipTable,
    /// Overrides of the inferred classification, by table name.
    #[serde(default)]
    pub classification: BTreeMap<String, Class>,
    /// Rules matching test data (deleted by `clean --execute`).
    #[serde(default)]
    pub test_data: Vec<TestDataRule>,
    /// Where files go.
    #[serde(default)]
    pub output: Output,
    /// How the copy runs.
    #[serde(default)]
    pub run: RunOptions,
}

/// `[source]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Connection URL of the monolith (a role that can read every table).
    pub url: String,
}

/// `[societe]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocieteTable {
    /// Table name.
    pub table: String,
    /// Key column (referenced by the tenant tables' foreign keys).
    pub key: String,
    /// Column holding the société's code (normalised into a tenant code).
    pub code_column: String,
    /// Column holding its display name.
    pub name_column: String,
}

impl Default for SocieteTable {
    fn default() -> Self {
        Self {
            table: "societes".to_owned(),
            key: "id".to_owned(),
            code_column: "code".to_owned(),
            name_column: "name".to_owned(),
        }
    }
}

/// `[default_societe]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DefaultSociete {
    /// Tenant code; may be one of the sources' sociétés (after normalisation).
    pub code: String,
    /// Display name when it is a new tenant.
    pub name: String,
}

impl Default for DefaultSociete {
    fn default() -> Self {
        Self {
            code: "default_societe".to_owned(),
            name: "Rows owned by no société".to_owned(),
        }
    }
}

/// `[users]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UserTable {
    /// Table name.
    pub table: String,
    /// Key column.
    pub id: String,
    /// E-mail column.
    pub email: String,
    /// Display-name column.
    pub display_name: String,
    /// Password-hash column (copied as is).
    pub password_hash: String,
    /// Active flag column.
    pub is_active: String,
}

impl Default for UserTable {
    fn default() -> Self {
        Self {
            table: "users".to_owned(),
            id: "id".to_owned(),
            email: "email".to_owned(),
            display_name: "display_name".to_owned(),
            password_hash: "password_hash".to_owned(),
            is_active: "is_active".to_owned(),
        }
    }
}

/// `[memberships]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MembershipTable {
    /// Table name.
    pub table: String,
    /// Column referencing the user.
    pub user_column: String,
    /// Column referencing the société.
    pub societe_column: String,
    /// Column with the role (owner, admin, member, viewer; others become member).
    pub role_column: String,
}

impl Default for MembershipTable {
    fn default() -> Self {
        Self {
            table: "user_societes".to_owned(),
            user_column: "user_id".to_owned(),
            societe_column: "societe_id".to_owned(),
            role_column: "role".to_owned(),
        }
    }
}

/// `[[test_data]]`: rows of `table` matching the SQL condition `where`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TestDataRule {
    /// Table name.
    pub table: String,
    /// A SQL boolean expression over the table's columns (trusted: it comes
    /// from the operator's config file, like a migration).
    #[serde(rename = "where")]
    pub condition: String,
}

/// `[output]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Output {
    /// Backups go to `<backups>/pre-migration/`.
    pub backups: PathBuf,
    /// Reports, clean archives and baseline files go here.
    pub reports: PathBuf,
}

impl Default for Output {
    fn default() -> Self {
        Self {
            backups: PathBuf::from("backups"),
            reports: PathBuf::from("legacy-reports"),
        }
    }
}

/// `[run]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunOptions {
    /// Tenants copied at the same time.
    pub parallel: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self { parallel: 4 }
    }
}

impl LegacyConfig {
    /// Reads and validates a config file; relative output paths are taken
    /// relative to the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::parse(&text).map_err(|e| match e {
            ConfigFileError::Parse { message, .. } => ConfigFileError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for dir in [&mut config.output.backups, &mut config.output.reports] {
            if dir.is_relative() {
                *dir = base.join(&*dir);
            }
        }
        Ok(config)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Self, ConfigFileError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigFileError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The source's connection settings.
    pub fn source_config(&self) -> Result<tokio_postgres::Config, ConfigFileError> {
        self.source
            .url
            .parse()
            .map_err(|e| ConfigFileError::Invalid {
                field: "source.url".to_owned(),
                problem: format!("not a PostgreSQL URL ({e}); expected postgres://user@host/db"),
            })
    }

    /// The source database's name.
    pub fn source_db(&self) -> Result<String, ConfigFileError> {
        Ok(self
            .source_config()?
            .get_dbname()
            .unwrap_or("postgres")
            .to_owned())
    }

    /// The default société's tenant code.
    pub fn default_code(&self) -> Result<TenantCode, ConfigFileError> {
        TenantCode::parse(&self.default_societe.code).map_err(|e| ConfigFileError::Invalid {
            field: "default_societe.code".to_owned(),
            problem: e.to_string(),
        })
    }

    fn validate(&self) -> Result<(), ConfigFileError> {
        self.source_config()?;
        self.default_code()?;
        let names = [
            ("societe.table", &self.societe.table),
            ("societe.key", &self.societe.key),
            ("societe.code_column", &self.societe.code_column),
            ("societe.name_column", &self.societe.name_column),
            ("users.table", &self.users.table),
            ("users.id", &self.users.id),
            ("users.email", &self.users.email),
            ("users.display_name", &self.users.display_name),
            ("users.password_hash", &self.users.password_hash),
            ("users.is_active", &self.users.is_active),
            ("memberships.table", &self.memberships.table),
            ("memberships.user_column", &self.memberships.user_column),
            (
                "memberships.societe_column",
                &self.memberships.societe_column,
            ),
            ("memberships.role_column", &self.memberships.role_column),
        ];
        for (field, name) in names {
            check_ident(field, name)?;
        }
        for table in self.classification.keys() {
            check_ident("classification", table)?;
        }
        for rule in &self.test_data {
            check_ident("test_data.table", &rule.table)?;
            if rule.condition.contains(';') || rule.condition.trim().is_empty() {
                return Err(ConfigFileError::Invalid {
                    field: "test_data.where".to_owned(),
                    problem: "must be one non-empty SQL condition without ';'".to_owned(),
                });
            }
        }
        if self.run.parallel == 0 {
            return Err(ConfigFileError::Invalid {
                field: "run.parallel".to_owned(),
                problem: "must be at least 1".to_owned(),
            });
        }
        Ok(())
    }
}

fn check_ident(field: &str, name: &str) -> Result<(), ConfigFileError> {
    if is_plain_identifier(name) {
        Ok(())
    } else {
        Err(ConfigFileError::Invalid {
            field: field.to_owned(),
            problem: format!(
                "{name:?} is not a plain lower-case identifier ([a-z_][a-z0-9_]*, at most 63 bytes)"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_takes_defaults() {
        let config = LegacyConfig::parse("[source]\nurl = \"postgres://u@h/erp\"\n").unwrap();
        assert_eq!(config.societe.table, "societes");
        assert_eq!(config.source_db().unwrap(), "erp");
        assert_eq!(config.run.parallel, 4);
    }

    #[test]
    fn the_example_config_is_valid() {
        let config = LegacyConfig::parse(include_str!("../../legacy.example.toml")).unwrap();
        assert_eq!(config.test_data.len(), 3);
        assert_eq!(config.classification.get("app_log"), Some(&Class::Skip));
    }

    #[test]
    fn rejects_bad_identifiers_and_conditions() {
        let bad = "[source]\nurl = \"postgres://u@h/erp\"\n[societe]\ntable = \"a;b\"\n";
        assert!(LegacyConfig::parse(bad).is_err());
        let bad = "[source]\nurl = \"postgres://u@h/erp\"\n[[test_data]]\ntable = \"users\"\nwhere = \"true; drop table x\"\n";
        assert!(LegacyConfig::parse(bad).is_err());
    }
}
