-- Naming a calendar is not owning it. A driver's calendar is used only once its row carries a proof of
-- control for that very calendar id:
--   description  the driver put the row's one-time code into the calendar's description (read back
--                with calendars.get by the service account);
--   oauth        the driver's own Google account (their /connect grant) is that calendar (its primary);
--   owner        the system owner vouched for it (`driver add --no-verify`, audited);
--   legacy       whitelisted before proofs existed (rows present when this migration ran).
-- Any change of calendar_id, by any path (CLI, API PATCH, onboarding, plain SQL), drops the proof and
-- issues a fresh code, unless the same statement records a proof for the new calendar.

ALTER TABLE drivers
    ADD COLUMN calendar_proof text CHECK (calendar_proof IN ('description', 'oauth', 'owner', 'legacy')),
    ADD COLUMN calendar_proven_id text,
    ADD COLUMN calendar_proven_at timestamptz,
    ADD COLUMN calendar_code text;

UPDATE drivers SET calendar_proof = 'legacy', calendar_proven_id = calendar_id, calendar_proven_at = now();
-- Except where one calendar is named in several tenants: that is what this closes, so all of them prove
-- it again (each row gets its code below, through the trigger).
UPDATE drivers SET calendar_proof = NULL, calendar_proven_id = NULL, calendar_proven_at = NULL
 WHERE calendar_id IN (SELECT calendar_id FROM drivers GROUP BY calendar_id HAVING count(DISTINCT tenant_id) > 1);

CREATE FUNCTION drivers_calendar_proof() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.calendar_id IS DISTINCT FROM OLD.calendar_id THEN
        NEW.calendar_code := NULL;
        IF NEW.calendar_proven_id IS NOT DISTINCT FROM OLD.calendar_proven_id THEN
            NEW.calendar_proof := NULL;
        END IF;
    END IF;
    IF NEW.calendar_proof IS NULL OR NEW.calendar_proven_id IS DISTINCT FROM NEW.calendar_id THEN
        NEW.calendar_proof := NULL;
        NEW.calendar_proven_id := NULL;
        NEW.calendar_proven_at := NULL;
        IF NEW.calendar_code IS NULL THEN
            -- 40 random bits: the code proves nothing unless someone who can edit the calendar writes it
            -- there, so it need not be secret, only unguessable before it is issued.
            NEW.calendar_code := 'AD-' || upper(substr(md5(gen_random_uuid()::text), 1, 10));
        END IF;
    ELSE
        NEW.calendar_code := NULL;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER drivers_calendar_proof BEFORE INSERT OR UPDATE ON drivers
    FOR EACH ROW EXECUTE FUNCTION drivers_calendar_proof();
UPDATE drivers SET calendar_code = NULL WHERE calendar_proof IS NULL;  -- the trigger issues the codes
