-- One-button Google OAuth2 (#6 phase 4): the links /connect hands out, the drivers' grants (refresh
-- tokens encrypted with Fernet, never in plaintext), and orders paused while a grant is revoked.
-- Every table carries tenant_id NOT NULL leading its keys, under the same row level security as the rest.

-- One row per /connect link: the nonce of its signed state. The callback consumes it once (used_at).
CREATE TABLE oauth_states (
    tenant_id    text NOT NULL REFERENCES tenants (tenant_id),
    nonce        text NOT NULL,
    chat_id      bigint NOT NULL,
    workflow_id  text NOT NULL,  -- the MainWorkflow that answered /connect
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    outcome      text CHECK (outcome IN ('connected', 'denied', 'failed')),
    PRIMARY KEY (tenant_id, nonce)
);

-- A driver's own Google grant: when active, their calendar is written with it instead of the
-- service account. `refresh_token` is a Fernet token (AUTODISPATCH_OAUTH_TOKEN_KEYS); it is cleared when
-- Google says the grant is gone (invalid_grant) or the driver disconnects.
CREATE TABLE oauth_grants (
    tenant_id       text NOT NULL,
    chat_id         bigint NOT NULL,
    provider        text NOT NULL DEFAULT 'google' CHECK (provider = 'google'),
    status          text NOT NULL CHECK (status IN ('active', 'revoked', 'disconnected')),
    refresh_token   text,
    account_email   text,
    scope           text NOT NULL DEFAULT '',
    connected_at    timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz,
    revoked_reason  text,
    PRIMARY KEY (tenant_id, chat_id),
    FOREIGN KEY (tenant_id, chat_id) REFERENCES drivers (tenant_id, chat_id) ON DELETE CASCADE,
    CHECK ((status = 'active') = (refresh_token IS NOT NULL))
);

-- Orders that could not be written because the driver's grant was revoked: the calendar write's whole
-- input is kept, and written when the driver connects again (claimed by one resuming workflow, so a
-- double connect never sends two cards; the event id is the order id, so never two events either).
CREATE TABLE calendar_paused_orders (
    tenant_id            text NOT NULL,
    order_id             text NOT NULL,
    chat_id              bigint NOT NULL,
    workflow_id          text NOT NULL,  -- the MainWorkflow that paused it
    input                jsonb NOT NULL,  -- Calendar2AutoInput
    reply_to_message_id  bigint,
    reply_task_queue     text,
    status               text NOT NULL DEFAULT 'paused' CHECK (status IN ('paused', 'resuming', 'resumed')),
    claimed_by           text,
    paused_at            timestamptz NOT NULL DEFAULT now(),
    resumed_at           timestamptz,
    PRIMARY KEY (tenant_id, order_id)
);
CREATE INDEX calendar_paused_orders_by_chat ON calendar_paused_orders (tenant_id, chat_id, status);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['oauth_states', 'oauth_grants', 'calendar_paused_orders'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I USING (app_is_system() OR tenant_id = app_tenant()) '
            'WITH CHECK (app_is_system() OR tenant_id = app_tenant())', t);
    END LOOP;
END $$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'autodispatch_app') THEN
        GRANT SELECT, INSERT, UPDATE ON oauth_states, oauth_grants, calendar_paused_orders TO autodispatch_app;
    END IF;
END $$;
