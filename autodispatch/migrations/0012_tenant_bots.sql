-- Each fleet its own bot: a tenant's own Telegram bot, served by the stack next to the default one.
-- The token is a Fernet token under AUTODISPATCH_OAUTH_TOKEN_KEYS (the refresh tokens' key rotation),
-- and so is the webhook secret Telegram sends back with every update. A bot whose token Telegram
-- stops accepting (401) is paused, not removed: registering the new token resumes it.

CREATE TABLE tenant_bots (
    bot_id          bigint NOT NULL UNIQUE,  -- Telegram's id of the bot (the token's prefix): one tenant's
    tenant_id       text NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    username        text NOT NULL,
    token           text NOT NULL,
    webhook_secret  text NOT NULL,
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused')),
    paused_reason   text,
    paused_at       timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, bot_id)
);

ALTER TABLE tenant_bots ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_bots FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_bots USING (app_is_system() OR tenant_id = app_tenant())
    WITH CHECK (app_is_system() OR tenant_id = app_tenant());

-- Every process serving bots listens: a bot added, removed, paused or given a new token is picked up
-- at once (and by the periodic reload should a notification be missed).
CREATE FUNCTION tenant_bots_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tenant_bots', COALESCE(NEW.bot_id, OLD.bot_id)::text);
    RETURN NULL;
END $$;
CREATE TRIGGER tenant_bots_changed AFTER INSERT OR UPDATE OR DELETE ON tenant_bots
    FOR EACH ROW EXECUTE FUNCTION tenant_bots_notify();

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'autodispatch_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_bots TO autodispatch_app;
    END IF;
END $$;
