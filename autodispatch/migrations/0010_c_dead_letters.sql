-- Updates that could never be handed over (a poison input): kept here, out of the way, instead of
-- holding the polling offset, a webhook redelivery loop or the inbox relay forever. An operator looks at
-- them and retries them (`autodispatch deadletter list | show ID | retry ID`).
--
-- source: 'polling' / 'webhook' rows keep the raw Telegram update, retried by the running edge;
-- 'inbox' rows keep the stored inbox row, retried by putting it back into telegram_inbox.
-- tenant_id: the inbox row's tenant; 'system' for a raw update (its chat was never resolved).

CREATE TABLE dead_letters (
    tenant_id    text NOT NULL,
    id           bigserial,
    source       text NOT NULL CHECK (source IN ('polling', 'webhook', 'inbox')),
    bot_id       bigint NOT NULL,
    update_id    bigint NOT NULL,
    payload      jsonb NOT NULL,
    attempts     integer NOT NULL,
    last_error   text NOT NULL,
    status       text NOT NULL DEFAULT 'dead' CHECK (status IN ('dead', 'retry', 'retried')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    -- One row per update and source: dead again after a retry is the same row.
    UNIQUE (tenant_id, source, bot_id, update_id)
);
CREATE INDEX dead_letters_to_retry ON dead_letters (tenant_id, status, bot_id);

ALTER TABLE dead_letters ENABLE ROW LEVEL SECURITY;
ALTER TABLE dead_letters FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON dead_letters USING (app_is_system() OR tenant_id = app_tenant())
    WITH CHECK (app_is_system() OR tenant_id = app_tenant());

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'autodispatch_app') THEN
        -- Kept for the record: retried rows are marked, never deleted.
        GRANT SELECT, INSERT, UPDATE ON dead_letters TO autodispatch_app;
        GRANT USAGE ON SEQUENCE dead_letters_id_seq TO autodispatch_app;
    END IF;
END $$;
