-- Billing: the payment provider's events (deduplicated by event id) and each driver's (or tenant's)
-- subscription. Both carry tenant_id NOT NULL leading their keys, under the same row level security
-- as every other table.

-- One row per provider event. The webhook learns the tenant from the event itself, so it records the
-- row in the system context: under the tenant it names, or `system` when it names nobody we know.
CREATE TABLE billing_events (
    tenant_id    text NOT NULL REFERENCES tenants (tenant_id),
    provider     text NOT NULL CHECK (provider IN ('stripe', 'telegram')),
    event_id     text NOT NULL,
    type         text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    chat_id      bigint,
    payload      jsonb NOT NULL,
    -- `pending` exists only inside the transaction that hands the payment to Temporal.
    outcome      text NOT NULL CHECK (outcome IN ('pending', 'signalled', 'ignored')),
    reason       text,
    workflow_id  text,
    PRIMARY KEY (tenant_id, provider, event_id),
    -- An event id is the provider's, across tenants: a redelivery is recognised whoever it names.
    UNIQUE (provider, event_id)
);
CREATE INDEX billing_events_by_time ON billing_events (tenant_id, received_at);

-- The paid period of a driver (chat_id) or of a whole tenant (chat_id NULL).
CREATE TABLE subscriptions (
    tenant_id        text NOT NULL REFERENCES tenants (tenant_id),
    chat_id          bigint,
    subject          text GENERATED ALWAYS AS (coalesce(chat_id::text, 'tenant')) STORED,
    status           text NOT NULL CHECK (status IN ('active', 'expired')),
    paid_until       timestamptz NOT NULL,
    warned_at        timestamptz,
    -- True while the driver (or tenant) is disabled because the period ran out: a payment re-activates
    -- only what billing disabled, never what an admin disabled.
    suspended        boolean NOT NULL DEFAULT false,
    last_payment_id  text,
    workflow_id      text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, subject)
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['billing_events', 'subscriptions'] LOOP
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
        -- Events are never deleted: they are the record of what the provider told us.
        GRANT SELECT, INSERT, UPDATE ON billing_events TO autodispatch_app;
        GRANT SELECT, INSERT, UPDATE, DELETE ON subscriptions TO autodispatch_app;
    END IF;
END $$;
