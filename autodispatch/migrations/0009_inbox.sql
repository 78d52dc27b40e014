-- The edge's durable inbox. A Telegram update is committed here and only then acknowledged; the relay
-- hands it to Temporal (serving tenants in turn) and deletes it. A crash between the commit and the
-- hand-over loses nothing: the relay of the next process finds the row.
--
-- tenant_id is the chat's tenant by the whitelist when the update arrived ('system' for a chat nobody
-- knows); the flow re-reads the whitelist itself, so the row's tenant only decides whose turn it is.

CREATE TABLE telegram_inbox (
    tenant_id        text NOT NULL,
    bot_id           bigint NOT NULL,
    update_id        bigint NOT NULL,
    workflow         text NOT NULL,
    task_queue       text,
    received         jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    PRIMARY KEY (tenant_id, bot_id, update_id)
);
CREATE INDEX telegram_inbox_due ON telegram_inbox (tenant_id, next_attempt_at);

ALTER TABLE telegram_inbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE telegram_inbox FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON telegram_inbox USING (app_is_system() OR tenant_id = app_tenant())
    WITH CHECK (app_is_system() OR tenant_id = app_tenant());

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'autodispatch_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON telegram_inbox TO autodispatch_app;
    END IF;
END $$;
