-- The morning agenda: which state of each driver its Temporal Schedule was last synced to. The
-- reconciler syncs every driver whose row differs (added, enabled, disabled, settings changed by any
-- path: CLI, API, onboarding, SQL) and deletes the schedules of drivers that are gone.

CREATE TABLE agenda_schedules (
    tenant_id   text NOT NULL,
    chat_id     bigint NOT NULL,
    schedule_id text NOT NULL,
    synced      jsonb NOT NULL,
    synced_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, chat_id)
);

ALTER TABLE agenda_schedules ENABLE ROW LEVEL SECURITY;
ALTER TABLE agenda_schedules FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON agenda_schedules USING (app_is_system() OR tenant_id = app_tenant())
    WITH CHECK (app_is_system() OR tenant_id = app_tenant());

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'autodispatch_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON agenda_schedules TO autodispatch_app;
    END IF;
END $$;
