-- Revoking admin API JWTs before they expire: one token by its jti (the deny-list), or every token of
-- a tenant at once (its token_version goes up; a token carries the version it was issued under).

ALTER TABLE tenants ADD COLUMN token_version integer NOT NULL DEFAULT 0;

CREATE TABLE revoked_tokens (
    tenant_id   text NOT NULL REFERENCES tenants (tenant_id),
    jti         text NOT NULL,
    revoked_at  timestamptz NOT NULL DEFAULT now(),
    -- After this the token is refused for its age anyway: the row may go.
    expires_at  timestamptz NOT NULL,
    actor       text NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, jti)
);

ALTER TABLE revoked_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE revoked_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON revoked_tokens USING (app_is_system() OR tenant_id = app_tenant())
    WITH CHECK (app_is_system() OR tenant_id = app_tenant());

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'autodispatch_app') THEN
        -- A revocation is never taken back.
        GRANT SELECT, INSERT ON revoked_tokens TO autodispatch_app;
    END IF;
END $$;
