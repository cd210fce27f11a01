//! The registry of the advisory locks tenantd takes in AUTH, each id written
//! once: every tenantd process sharing a catalog must use the same ids, so
//! changing one here is a breaking change between versions.
//!
//! A lock is a pair of `int4` keys: a class, then an object. Per-tenant
//! life-cycle work uses [`TENANT_LOCK_CLASS`] with a hash of the tenant's
//! code; catalog-wide work uses [`GLOBAL_LOCK_CLASS`] with a [`GlobalLock`].
//! (Class `0x7E4A_0002` is the migration lock that [`crate::migrate`] takes
//! in the migrated database itself, not in AUTH.)

/// Advisory-lock class of per-tenant life-cycle work (second key: `hashtext` of the code).
pub(super) const TENANT_LOCK_CLASS: i32 = 0x7E4A_0001;
/// Advisory-lock class of catalog-wide work (second key: [`GlobalLock::id`]).
pub(super) const GLOBAL_LOCK_CLASS: i32 = 0x7E4A_0003;

/// A catalog-wide advisory lock: at most one holder across every process
/// sharing the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalLock {
    /// Template upkeep: building, sealing and retiring tenant templates.
    Template,
    /// A fleet migration run (one run at a time).
    FleetRun,
    /// Issuing the bootstrap admin key when a server starts on an empty catalog.
    BootstrapKey,
}

impl GlobalLock {
    /// The lock's second key (its class is the catalog-wide one, `0x7E4A_0003`).
    pub const fn id(self) -> i32 {
        match self {
            Self::Template => 1,
            Self::FleetRun => 2,
            Self::BootstrapKey => 0x4B45,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_global_lock_has_its_own_id() {
        let ids = [
            GlobalLock::Template,
            GlobalLock::FleetRun,
            GlobalLock::BootstrapKey,
        ]
        .map(GlobalLock::id);
        let unique: std::collections::HashSet<i32> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len());
        assert_ne!(TENANT_LOCK_CLASS, GLOBAL_LOCK_CLASS);
    }
}
