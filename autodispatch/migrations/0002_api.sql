-- Per-tenant API keys for the admin HTTP API (/api/v1).
--
-- A key is `adk.<tenant_id>.<secret>`: it names its tenant, so the lookup by hash runs on an index
-- led by tenant_id like every other. Only the SHA-256 of the whole key is stored, never the key; it is
-- shown once when created. Revoking sets revoked_at (the row stays, for the audit trail).

CREATE TABLE api_keys (
    tenant_id     text NOT NULL REFERENCES tenants (tenant_id),
    key_id        text NOT NULL,
    prefix        text NOT NULL,
    key_hash      text NOT NULL CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    role          text NOT NULL CHECK (role IN ('user', 'viewer', 'admin', 'system')),
    name          text NOT NULL DEFAULT '',
    -- A `user` key acts as one driver of the tenant (their own orders and settings only).
    chat_id       bigint,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    PRIMARY KEY (tenant_id, key_id),
    UNIQUE (tenant_id, key_hash),
    CHECK ((role = 'user') = (chat_id IS NOT NULL)),
    -- The owner's keys live in the reserved `system` tenant, and only there.
    CHECK ((role = 'system') = (tenant_id = 'system'))
);

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys USING (app_is_system() OR tenant_id = app_tenant())
    WITH CHECK (app_is_system() OR tenant_id = app_tenant());

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'autodispatch_app') THEN
        GRANT SELECT, INSERT ON api_keys TO autodispatch_app;
        -- The application may mark use and revocation, never rewrite a key's hash, role or tenant.
        GRANT UPDATE (last_used_at, revoked_at, name) ON api_keys TO autodispatch_app;
    END IF;
END $$;
