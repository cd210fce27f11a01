-- Legacy split (`tenantd legacy run`): what a run created and how far its
-- copy got, so that a killed run can be resumed and rolled back exactly.

-- One row per split source (a monolith database).
CREATE TABLE legacy_runs (
    source          text PRIMARY KEY,
    -- Objects this run created on the server, which rollback may drop:
    -- {"databases": [...], "roles": [...]}; tenants are in legacy_tenants.
    created         jsonb NOT NULL DEFAULT '{"databases": [], "roles": []}'::jsonb,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);

-- Tenants the run provisions (recorded before the tenant is created).
CREATE TABLE legacy_tenants (
    source          text NOT NULL REFERENCES legacy_runs (source) ON DELETE CASCADE,
    tenant_code     text NOT NULL,
    -- The société key in the source (as text); NULL for a new default société.
    societe_key     text,
    takes_orphans   boolean NOT NULL DEFAULT false,
    PRIMARY KEY (source, tenant_code)
);

-- One row per copied unit: a tenant's table, a shared table, the users...
-- A unit without a row (or not done) is truncated and copied again.
CREATE TABLE legacy_progress (
    source          text NOT NULL REFERENCES legacy_runs (source) ON DELETE CASCADE,
    target          text NOT NULL,          -- tenant code, 'shared' or 'auth'
    table_name      text NOT NULL,
    rows_copied     bigint NOT NULL,
    -- count and content checksum recorded by verify; rollback compares them.
    checksum        bigint,
    finished_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, target, table_name)
);
