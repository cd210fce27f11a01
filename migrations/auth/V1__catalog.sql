-- AUTH database: tenantd's tenant catalog and the ERP's identity tables.
-- Only the admin role can connect to this database.

CREATE TABLE tenants (
    id              uuid PRIMARY KEY,
    code            text NOT NULL CHECK (code ~ '^[a-z][a-z0-9_]{1,39}$'),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    region          text NOT NULL CHECK (region IN ('DZ', 'CH', 'FR', 'BE', 'CA')),
    plan            text NOT NULL CHECK (plan IN ('free', 'pro', 'enterprise')),
    status          text NOT NULL CHECK (status IN
                        ('provisioning', 'active', 'suspended', 'deleting', 'deleted', 'failed')),
    status_reason   text,
    admin_email     text,
    settings        jsonb NOT NULL DEFAULT '{}'::jsonb,
    database_name   text NOT NULL,
    schema_version  integer,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- A code names one live tenant at a time; deleted (and failed) rows stay for the
-- audit trail and do not block a new tenant with the same code.
CREATE UNIQUE INDEX tenants_code_live ON tenants (code)
    WHERE status NOT IN ('deleted', 'failed');
CREATE INDEX tenants_status ON tenants (status);
CREATE INDEX tenants_region_plan ON tenants (region, plan);

CREATE TABLE users (
    id              uuid PRIMARY KEY,
    email           text NOT NULL,
    display_name    text,
    password_hash   text,
    is_active       boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email ON users (lower(email));

CREATE TABLE memberships (
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    role        text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, tenant_id)
);
CREATE INDEX memberships_tenant ON memberships (tenant_id);

CREATE TABLE api_keys (
    id              uuid PRIMARY KEY,
    name            text NOT NULL,
    key_prefix      text NOT NULL,
    key_hash        bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    scope           text NOT NULL CHECK (scope IN ('admin', 'tenant')),
    tenant_id       uuid REFERENCES tenants (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz,
    revoked_at      timestamptz,
    CHECK ((scope = 'tenant') = (tenant_id IS NOT NULL))
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- Audit log: one row per life-cycle action, kept forever.
CREATE TABLE operations (
    id          uuid PRIMARY KEY,
    tenant_id   uuid REFERENCES tenants (id),
    tenant_code text,
    kind        text NOT NULL,
    status      text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    actor       text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb,
    error       text,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX operations_tenant ON operations (tenant_id, started_at);
CREATE INDEX operations_running ON operations (status) WHERE status = 'running';
