//! The tenant (société) as a domain value: its code, region, plan, life-cycle
//! status and catalog record.
//!
//! Types here parse rather than validate: holding a [`TenantCode`] means the
//! code is valid and safe to use in a database name. Nothing here talks to a
//! database.

use crate::error_kind::{Classify, ErrorKind};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

mod fields;

pub use fields::{check_document, check_email, check_name, check_reason, check_settings};

/// Why a tenant code, region, plan or status was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TenantError {
    /// The code does not match `^[a-z][a-z0-9_]{1,39}$`.
    #[error(
        "invalid tenant code {0:?}: expected 2 to 40 characters, a lower-case letter \
         followed by lower-case letters, digits or '_' (e.g. 'acme_steel')"
    )]
    InvalidCode(String),
    /// The code is reserved for tenantd's own databases and roles.
    #[error("tenant code {0:?} is reserved; choose another code")]
    ReservedCode(String),
    /// Not one of the supported regions.
    #[error("invalid region {0:?}: expected one of DZ, CH, FR, BE, CA")]
    InvalidRegion(String),
    /// Not one of the plans.
    #[error("invalid plan {0:?}: expected one of free, pro, enterprise")]
    InvalidPlan(String),
    /// Not a life-cycle status.
    #[error(
        "invalid status {0:?}: expected provisioning, active, suspended, deleting, deleted or failed"
    )]
    InvalidStatus(String),
    /// A free-text or JSON field the catalog cannot store as given (see
    /// `check_name`, `check_settings`, …).
    #[error("{field}: {reason}")]
    InvalidField {
        /// The field (`name`, `settings`, …).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl Classify for TenantError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }
}

/// Codes that would shadow tenantd's own objects or confuse operators.
const RESERVED_CODES: &[&str] = &[
    "auth",
    "shared",
    "template",
    "template0",
    "template1",
    "postgres",
    "admin",
    "public",
    "tenantd",
    "system",
    "catalog",
    "default",
    "root",
    "pg",
    "information_schema",
];

/// A société's stable, human name: `^[a-z][a-z0-9_]{1,39}$`, not reserved.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TenantCode(String);

impl TenantCode {
    /// Parses a code, refusing anything that is not a safe identifier part.
    pub fn parse(raw: &str) -> Result<Self, TenantError> {
        let valid_len = (2..=40).contains(&raw.len());
        let mut chars = raw.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !(valid_len && first_ok && rest_ok) {
            return Err(TenantError::InvalidCode(raw.to_owned()));
        }
        if RESERVED_CODES.contains(&raw) || raw.starts_with("pg_") {
            return Err(TenantError::ReservedCode(raw.to_owned()));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl FromStr for TenantCode {
    type Err = TenantError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for TenantCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Declares a closed set of text values with parsing, display and serde.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident, $err:ident, { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(
                #[doc = concat!("`", $text, "`")]
                #[serde(rename = $text)]
                $variant,
            )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as stored in the catalog.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = TenantError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(TenantError::$err(other.to_owned())),
                }
            }
        }
    };
}

text_enum!(
    /// Where the société operates (drives data residency and defaults).
    Region, InvalidRegion, { Dz => "DZ", Ch => "CH", Fr => "FR", Be => "BE", Ca => "CA" }
);

text_enum!(
    /// The commercial plan (drives limits).
    Plan, InvalidPlan, { Free => "free", Pro => "pro", Enterprise => "enterprise" }
);

text_enum!(
    /// The life-cycle state persisted in the catalog:
    /// `provisioning → active ⇄ suspended → deleting → deleted`, or `failed`.
    TenantStatus, InvalidStatus, {
        Provisioning => "provisioning",
        Active => "active",
        Suspended => "suspended",
        Deleting => "deleting",
        Deleted => "deleted",
        Failed => "failed",
    }
);

impl TenantStatus {
    /// Whether a tenant in this status still exists: every status but
    /// `deleted` and `failed` (a gone tenant's code can be reused). The
    /// catalog's SQL says the same with `crate::catalog`'s `GONE_STATUSES`.
    pub fn is_live(self) -> bool {
        !matches!(self, Self::Deleted | Self::Failed)
    }
}

/// What an admin supplies to create a tenant.
#[derive(Debug, Clone)]
pub struct NewTenant {
    /// The stable code (database name suffix, URL segment).
    pub code: TenantCode,
    /// Display name of the société.
    pub name: String,
    /// Region; defaults to FR.
    pub region: Region,
    /// Plan; defaults to free.
    pub plan: Plan,
    /// Optional administrator e-mail.
    pub admin_email: Option<String>,
}

impl NewTenant {
    /// A tenant with the default region (FR) and plan (free).
    pub fn new(code: TenantCode, name: impl Into<String>) -> Self {
        Self {
            code,
            name: name.into(),
            region: Region::Fr,
            plan: Plan::Free,
            admin_email: None,
        }
    }

    /// Checks the free-text fields before they are stored: the name
    /// (`check_name`) and the e-mail (`check_email`).
    pub fn validate(&self) -> Result<(), TenantError> {
        check_name(&self.name)?;
        self.admin_email.as_deref().map_or(Ok(()), check_email)
    }
}

/// A tenant as recorded in the catalog.
#[derive(Debug, Clone, Serialize)]
pub struct Tenant {
    /// Stable identifier (also the input of the role password derivation).
    pub id: Uuid,
    /// Human code.
    pub code: TenantCode,
    /// Display name.
    pub name: String,
    /// Region.
    pub region: Region,
    /// Plan.
    pub plan: Plan,
    /// Life-cycle status.
    pub status: TenantStatus,
    /// Why the tenant is in its status (suspension reason, failure).
    pub status_reason: Option<String>,
    /// Administrator e-mail.
    pub admin_email: Option<String>,
    /// Free-form settings.
    pub settings: serde_json::Value,
    /// Name of the tenant's database (also the name of its role).
    pub database_name: String,
    /// Newest tenant migration applied to its database.
    pub schema_version: Option<i32>,
    /// A fleet migration failed on this tenant: it is refused ("under
    /// maintenance") until a later `migrate run` succeeds.
    pub quarantined: bool,
    /// The last fleet migration error, cleared by a successful run.
    pub migration_error: Option<String>,
    /// The generation of the role's derived password (bumped by each
    /// password rotation).
    pub password_generation: i32,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl Tenant {
    /// The tenant's PostgreSQL role (it owns the tenant's objects; the
    /// database itself is tenantd's admin role's).
    pub fn role_name(&self) -> &str {
        &self.database_name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert!(TenantCode::parse("acme").is_ok());
        assert!(TenantCode::parse("a1_b2").is_ok());
        assert!(TenantCode::parse(&"a".repeat(40)).is_ok());
        for bad in [
            "Acme",
            "a",
            "1abc",
            "a b",
            "a;drop database x",
            "é",
            "_a",
            "",
        ] {
            assert_eq!(
                TenantCode::parse(bad),
                Err(TenantError::InvalidCode(bad.to_owned())),
                "{bad}"
            );
        }
        assert!(TenantCode::parse(&"a".repeat(41)).is_err());
        for reserved in ["auth", "shared", "template", "pg_x"] {
            assert_eq!(
                TenantCode::parse(reserved),
                Err(TenantError::ReservedCode(reserved.to_owned()))
            );
        }
    }

    #[test]
    fn enums_round_trip() {
        for r in Region::ALL {
            assert_eq!(r.as_str().parse::<Region>(), Ok(*r));
        }
        assert!("de".parse::<Region>().is_err());
        assert_eq!("pro".parse::<Plan>(), Ok(Plan::Pro));
        assert_eq!(
            serde_json::to_string(&TenantStatus::Active).unwrap(),
            "\"active\""
        );
    }

    #[test]
    fn only_deleted_and_failed_tenants_are_gone() {
        let gone: Vec<TenantStatus> = TenantStatus::ALL
            .iter()
            .copied()
            .filter(|s| !s.is_live())
            .collect();
        assert_eq!(gone, [TenantStatus::Deleted, TenantStatus::Failed]);
    }
}
