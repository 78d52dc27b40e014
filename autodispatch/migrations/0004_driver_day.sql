-- The driver's day: per-driver settings, and what an order needs to be changed after it was written
-- (the message it came from, its card, the workflow that owns it).

ALTER TABLE drivers ADD COLUMN settings jsonb NOT NULL DEFAULT '{}'::jsonb;

ALTER TABLE orders ADD COLUMN source_message_id bigint;
ALTER TABLE orders ADD COLUMN order_index integer NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN card_message_id bigint;
ALTER TABLE orders ADD COLUMN order_workflow_id text;
CREATE INDEX orders_by_card ON orders (tenant_id, chat_id, card_message_id);
CREATE INDEX orders_by_source ON orders (tenant_id, chat_id, source_message_id);
CREATE INDEX orders_by_phone ON orders (tenant_id, chat_id, client_phone);
