-- Onboarding (#6 phase 2): how a new driver finds their fleet, and what activates them afterwards.
--
-- invite_code: the payload of the tenant's deep link https://t.me/<bot>?start=<code>. Random (122
--   bits), so knowing one tenant's link says nothing about another's; NULL closes invitations. There
--   is deliberately no unique index: every index of a tenant table leads with tenant_id (the catalog
--   guard in tests/test_isolation.py), the lookup by code runs over the small tenants table, and one
--   that ever matched two tenants would be refused, not guessed.
-- onboarding_activation: a driver who finished the dialogue is `pending` until an admin approves them
--   ('approval') or their payment activates them ('payment', the billing path of phase 3).
--
-- Both are columns of `tenants`, which already carries tenant_id NOT NULL as its key and forced RLS.

ALTER TABLE tenants ADD COLUMN onboarding_activation text NOT NULL DEFAULT 'approval'
    CHECK (onboarding_activation IN ('payment', 'approval'));
ALTER TABLE tenants ADD COLUMN invite_code text DEFAULT replace(gen_random_uuid()::text, '-', '')
    CHECK (invite_code ~ '^[A-Za-z0-9_-]{16,64}$');

-- The reserved tenant is nobody's fleet. RLS is forced on tenants, for the owner too: say we are the
-- system context for this one update (a transaction-local setting, gone at commit).
SELECT set_config('app.system', 'on', true);
UPDATE tenants SET invite_code = NULL WHERE tenant_id = 'system';

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'autodispatch_app') THEN
        -- Covered by the table-wide grant of 0001 already; named here so the columns' use is explicit.
        GRANT SELECT, UPDATE (onboarding_activation, invite_code) ON tenants TO autodispatch_app;
    END IF;
END $$;
