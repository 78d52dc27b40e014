-- A driver approved by an admin is told so in Telegram (#6). The approval and the pending notice are
-- written in one transaction, so the notice survives Temporal being down at that moment: the worker's
-- agenda sync sends it at once, the reconciler within minutes. The token names the notice's workflow
-- (one message per approval) and is cleared once the message went out.

ALTER TABLE drivers ADD COLUMN access_notice text;
CREATE INDEX drivers_access_notice ON drivers (tenant_id, chat_id) WHERE access_notice IS NOT NULL;
