-- A tenant role's password is derived from TENANTD_SECRET, the tenant's id and
-- this generation (0: the password tenants always had); `tenantd tenant
-- rotate-password` bumps it, so a leaked password can be retired.
ALTER TABLE tenants
    ADD COLUMN password_generation integer NOT NULL DEFAULT 0
        CHECK (password_generation >= 0);
