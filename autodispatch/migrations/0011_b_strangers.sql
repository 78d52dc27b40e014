-- Strangers at the edge (bot/strangers.py). A chat nobody whitelisted is answered at most once per a
-- few hours: `answered_at` is when its last message was let through to a flow; `dialogue_until` keeps
-- the onboarding dialogue a /start opened reachable meanwhile. Not a tenant's data: the system context.
CREATE TABLE stranger_chats (
    tenant_id       text NOT NULL DEFAULT 'system',  -- a stranger belongs to nobody: always 'system'
    bot_id          bigint NOT NULL,
    chat_id         bigint NOT NULL,
    answered_at     timestamptz NOT NULL DEFAULT now(),
    dialogue_until  timestamptz,
    PRIMARY KEY (tenant_id, bot_id, chat_id)
);
CREATE INDEX stranger_chats_by_time ON stranger_chats (tenant_id, answered_at);

ALTER TABLE stranger_chats ENABLE ROW LEVEL SECURITY;
ALTER TABLE stranger_chats FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON stranger_chats USING (app_is_system() OR tenant_id = app_tenant())
    WITH CHECK (app_is_system() OR tenant_id = app_tenant());

-- Groups and channels are refused unless the tenant enables them for its whitelisted chats.
ALTER TABLE tenants ADD COLUMN allow_groups boolean NOT NULL DEFAULT false;

-- Retention deletes old rows by time: the outbox gets the index the audit log has.
CREATE INDEX outbox_by_time ON outbox (tenant_id, created_at);

-- The audit log is append-only for the app role; retention deletes through this one door, which
-- refuses to touch anything younger than a day, in batches (one short transaction each).
CREATE FUNCTION app_purge_audit(keep_days integer, batch integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    gone integer;
BEGIN
    IF keep_days < 1 THEN
        RAISE EXCEPTION 'audit retention keeps at least one day (asked: %)', keep_days;
    END IF;
    DELETE FROM audit_log WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM audit_log WHERE at < now() - make_interval(days => keep_days) LIMIT batch));
    GET DIAGNOSTICS gone = ROW_COUNT;
    RETURN gone;
END $$;
REVOKE ALL ON FUNCTION app_purge_audit(integer, integer) FROM PUBLIC;
-- Under FORCE ROW LEVEL SECURITY the owner running that function needs a policy of its own.
DO $$
BEGIN
    EXECUTE format('CREATE POLICY audit_purge ON audit_log FOR ALL TO %I USING (true)', current_user);
END $$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'autodispatch_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON stranger_chats TO autodispatch_app;
    END IF;
    -- Only the system context trims the log (0010_a): an app session cannot purge any tenant's rows.
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'autodispatch_system') THEN
        GRANT EXECUTE ON FUNCTION app_purge_audit(integer, integer) TO autodispatch_system;
    END IF;
END $$;
