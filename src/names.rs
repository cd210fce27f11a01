//! Names of the databases and roles tenantd creates on the server.
//!
//! Tenant databases and their roles are `<prefix>_<code>`. tenantd's private
//! objects use a double underscore (`<prefix>__…`): a tenant code starts with
//! a letter, so no tenant can ever be given one of these names.

use crate::tenant::TenantCode;

/// The naming scheme of one tenantd deployment.
#[derive(Debug, Clone)]
pub struct Names {
    prefix: String,
    auth_db: String,
    shared_db: String,
}

impl Names {
    /// Names for a deployment with this prefix and these AUTH/SHARED databases
    /// (all validated by [`crate::config::Settings`]).
    pub fn new(prefix: &str, auth_db: &str, shared_db: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            auth_db: auth_db.to_owned(),
            shared_db: shared_db.to_owned(),
        }
    }

    /// The prefix of tenant names.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The AUTH database.
    pub fn auth_db(&self) -> &str {
        &self.auth_db
    }

    /// The SHARED database.
    pub fn shared_db(&self) -> &str {
        &self.shared_db
    }

    /// The database (and role) of a tenant.
    pub fn tenant_db(&self, code: &TenantCode) -> String {
        format!("{}_{}", self.prefix, code)
    }

    /// The role every tenant role is a member of, with read access to SHARED.
    pub fn shared_reader(&self) -> String {
        format!("{}__shared_reader", self.prefix)
    }

    /// The NOLOGIN role that owns every object of the template database; a
    /// clone hands them to its tenant's role (`REASSIGN OWNED`).
    pub fn template_owner(&self) -> String {
        format!("{}__template_owner", self.prefix)
    }

    /// The sealed template of the tenant migration set with this fingerprint.
    pub fn template(&self, fingerprint: &str) -> String {
        format!("{}{}", self.template_scheme_prefix(), fingerprint)
    }

    /// Common prefix of every template name, of any ownership scheme (what
    /// upkeep drops when stale).
    pub fn template_prefix(&self) -> String {
        format!("{}__tpl_", self.prefix)
    }

    /// Common prefix of the templates of the current ownership scheme (objects
    /// owned by [`Names::template_owner`]): only these may be cloned or built
    /// upon. Templates of the former scheme (`<prefix>__tpl_<fp>`, objects
    /// owned by `pg_database_owner`) are rebuilt, then dropped as stale.
    pub fn template_scheme_prefix(&self) -> String {
        format!("{}__tpl_o2_", self.prefix)
    }

    /// The private name a template is built under before it is sealed.
    pub fn template_build(&self, fingerprint: &str) -> String {
        format!("{}{}", self.template_build_prefix(), fingerprint)
    }

    /// Common prefix of templates being built.
    pub fn template_build_prefix(&self) -> String {
        format!("{}__build_", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_names_cannot_be_tenant_names() {
        let names = Names::new("tenantd", "tenantd_auth", "tenantd_shared");
        let code = TenantCode::parse("acme").unwrap();
        assert_eq!(names.tenant_db(&code), "tenantd_acme");
        for private in [
            names.shared_reader(),
            names.template_owner(),
            names.template_build("0123456789abcdef"),
            names.template("0123456789abcdef"),
        ] {
            let suffix = private.strip_prefix("tenantd_").unwrap();
            assert!(TenantCode::parse(suffix).is_err(), "{private}");
            assert!(private.len() <= 63);
        }
        let template = names.template("0123456789abcdef");
        assert!(template.starts_with(&names.template_scheme_prefix()));
        assert!(template.starts_with(&names.template_prefix()));
    }
}
