-- AUTH database: fleet migrations (`tenantd migrate run`).
--
-- A tenant whose migration failed stays at its previous schema version and is
-- quarantined: the router refuses it ("under maintenance") until a later run
-- migrates it, because application code of the new release would break on
-- its old schema.

ALTER TABLE tenants
    ADD COLUMN quarantined     boolean NOT NULL DEFAULT false,
    ADD COLUMN migration_error text,
    ADD COLUMN migrated_at     timestamptz;
CREATE INDEX tenants_quarantined ON tenants (code) WHERE quarantined;

-- One row per tenant a fleet run worked on (migrated, failed or skipped); the
-- run itself is an `operations` row of kind 'migrate_run' whose detail holds
-- the plan and, once finished, the summary.
CREATE TABLE fleet_run_tenants (
    operation_id    uuid NOT NULL REFERENCES operations (id),
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    tenant_code     text NOT NULL,
    outcome         text NOT NULL CHECK (outcome IN ('migrated', 'current', 'failed', 'skipped')),
    from_version    integer,
    to_version      integer,
    applied         integer[] NOT NULL DEFAULT '{}',
    error           text,
    elapsed_ms      integer NOT NULL DEFAULT 0,
    finished_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (operation_id, tenant_id)
);
CREATE INDEX fleet_run_tenants_tenant ON fleet_run_tenants (tenant_id, finished_at);
