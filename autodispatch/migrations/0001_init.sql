-- Tenants, the whitelist of drivers, the audit log, the reply outbox, orders and open questions.
-- Every tenant table carries tenant_id NOT NULL, leading its keys, and is isolated by row level
-- security on a per-transaction setting (set_config('app.tenant_id', ..., true)).

CREATE OR REPLACE FUNCTION app_tenant() RETURNS text
LANGUAGE sql STABLE AS $$ SELECT nullif(current_setting('app.tenant_id', true), '') $$;

-- The system context (the owner's view: all tenants, the audit log) is a per-transaction setting too.
CREATE OR REPLACE FUNCTION app_is_system() RETURNS boolean
LANGUAGE sql STABLE AS $$ SELECT coalesce(current_setting('app.system', true), '') = 'on' $$;

CREATE TABLE tenants (
    tenant_id   text PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    time_zone   text NOT NULL DEFAULT 'Europe/Moscow',
    currency    text,
    dedicated   boolean NOT NULL DEFAULT false,
    task_queue  text,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Reserved tenant for what belongs to nobody yet: unknown chats' refusals and their audit rows.
INSERT INTO tenants (tenant_id, name) VALUES ('system', 'system');

CREATE TABLE drivers (
    tenant_id    text NOT NULL REFERENCES tenants (tenant_id),
    chat_id      bigint NOT NULL,
    driver_name  text NOT NULL,
    calendar_id  text NOT NULL,
    time_zone    text NOT NULL,
    status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'pending', 'disabled')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, chat_id),
    -- One chat is one driver in one tenant: the whitelist must answer unambiguously.
    UNIQUE (chat_id)
);

CREATE TABLE orders (
    tenant_id        text NOT NULL,
    order_id         text NOT NULL,
    chat_id          bigint NOT NULL,
    workflow_id      text NOT NULL,
    status           text NOT NULL,
    pickup_at        timestamptz,
    pickup_address   text,
    dropoff_address  text,
    price_amount     numeric,
    price_currency   text,
    client_name      text,
    client_phone     text,
    flight_number    text,
    calendar_id      text,
    event_id         text,
    html_link        text,
    original_text    text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, order_id)
);
CREATE INDEX orders_by_chat ON orders (tenant_id, chat_id, pickup_at);

CREATE TABLE audit_log (
    tenant_id    text NOT NULL,
    id           bigserial,
    at           timestamptz NOT NULL DEFAULT now(),
    workflow_id  text NOT NULL,
    step         text NOT NULL,
    action       text NOT NULL,
    chat_id      bigint,
    order_id     text,
    outcome      text NOT NULL DEFAULT 'ok',
    details      jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (tenant_id, id),
    -- A retried or replayed step writes its row once.
    UNIQUE (tenant_id, workflow_id, step)
);
CREATE INDEX audit_log_by_time ON audit_log (tenant_id, at);

CREATE TABLE outbox (
    tenant_id            text NOT NULL,
    workflow_id          text NOT NULL,
    step                 text NOT NULL,
    chat_id              bigint NOT NULL,
    text                 text NOT NULL,
    status               text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent')),
    telegram_message_id  bigint,
    created_at           timestamptz NOT NULL DEFAULT now(),
    sent_at              timestamptz,
    PRIMARY KEY (tenant_id, workflow_id, step)
);

-- A MainWorkflow waiting for the driver's answer (a missing time or pickup): one per chat.
CREATE TABLE open_questions (
    tenant_id    text NOT NULL,
    chat_id      bigint NOT NULL,
    workflow_id  text NOT NULL,
    asked_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, chat_id)
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenants', 'drivers', 'orders', 'audit_log', 'outbox', 'open_questions'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['tenants', 'drivers', 'orders', 'outbox', 'open_questions'] LOOP
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I USING (app_is_system() OR tenant_id = app_tenant()) '
            'WITH CHECK (app_is_system() OR tenant_id = app_tenant())', t);
    END LOOP;
END $$;

-- The audit log: any context may append its own tenant's rows; only the system context reads.
CREATE POLICY audit_append ON audit_log FOR INSERT
    WITH CHECK (app_is_system() OR tenant_id = app_tenant());
CREATE POLICY audit_read ON audit_log FOR SELECT USING (app_is_system());

-- The application role: neither owner, superuser nor BYPASSRLS. Creating it needs CREATEROLE; on a
-- managed database without it, create the role by hand (README) and this block only grants.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'autodispatch_app') THEN
        BEGIN
            CREATE ROLE autodispatch_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'cannot create role autodispatch_app; create it by hand';
        END;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'autodispatch_app') THEN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO autodispatch_app', current_database());
        GRANT USAGE ON SCHEMA public TO autodispatch_app;
        GRANT SELECT, INSERT, UPDATE, DELETE ON tenants, drivers, orders, outbox, open_questions
            TO autodispatch_app;
        -- Append-only for the application.
        GRANT SELECT, INSERT ON audit_log TO autodispatch_app;
        GRANT USAGE ON SEQUENCE audit_log_id_seq TO autodispatch_app;
        GRANT EXECUTE ON FUNCTION app_tenant(), app_is_system() TO autodispatch_app;
    END IF;
END $$;
