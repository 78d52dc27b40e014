"""Postgres activities: the whitelist, the audit log, orders and open questions."""

from __future__ import annotations

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.calendar_proof import CalendarOwnership
from autodispatch import metrics, tenants
from autodispatch.db import system_tx, tenant_tx
from schemas.driver import Driver, DriverLookup, DriverSettings, LookupDriverInput
from schemas.store import (
    AuthorizeOrderInput,
    FindOrderInput,
    FinishStepInput,
    FoundOrders,
    OrderRef,
    OrderStatusInput,
    QuestionInput,
)


def _order_ref(row: asyncpg.Record | dict) -> OrderRef:
    return OrderRef(
        tenant_id=row["tenant_id"], order_id=row["order_id"], chat_id=row["chat_id"], status=row["status"],
        calendar_id=row["calendar_id"], event_id=row["event_id"], order_workflow_id=row["order_workflow_id"],
        pickup_at=row["pickup_at"], card_message_id=row["card_message_id"], order_index=row["order_index"],
        pickup_address=row["pickup_address"], dropoff_address=row["dropoff_address"],
    )  # fmt: skip


class StoreActivities:
    def __init__(self, pool: asyncpg.Pool, ownership: CalendarOwnership | None = None) -> None:
        self.pool = pool
        # Looks for the proof of an unproven calendar (None: such a calendar stays unproven).
        self.ownership = ownership

    @activity.defn(name="lookup_driver")
    async def lookup_driver(self, req: LookupDriverInput) -> DriverLookup:
        # The chat is all we know: resolving it crosses tenants, so it runs in the system context.
        async with system_tx(self.pool) as conn:
            row = await conn.fetchrow(
                """SELECT d.tenant_id, d.chat_id, d.driver_name, d.calendar_id, d.time_zone, d.status,
                          d.settings, d.calendar_proof, d.calendar_code, t.currency, t.task_queue, t.status AS tenant_status, q.workflow_id AS question
                     FROM drivers d JOIN tenants t USING (tenant_id)
                     LEFT JOIN open_questions q ON q.tenant_id = d.tenant_id AND q.chat_id = d.chat_id
                    WHERE d.chat_id = $1
                      AND NOT EXISTS (SELECT 1 FROM tenant_bots b WHERE b.bot_id = $2 AND b.tenant_id <> d.tenant_id)""",
                req.chat_id, req.bot_id,
            )  # fmt: skip
        if row is None:
            if req.bot_id is None:
                return DriverLookup()
            async with system_tx(self.pool) as conn:
                owner = await conn.fetchval("SELECT tenant_id FROM tenant_bots WHERE bot_id = $1", req.bot_id)
            return DriverLookup(bot_tenant_id=owner)
        status = row["status"] if row["tenant_status"] == "active" else "disabled"
        proven = row["calendar_proof"] is not None
        if not proven and status != "disabled" and self.ownership is not None:
            proven = await self._prove(row)
        driver = Driver(
            tenant_id=row["tenant_id"],
            chat_id=row["chat_id"],
            driver_name=row["driver_name"],
            calendar_id=row["calendar_id"],
            time_zone=row["time_zone"],
            status=status,
            currency=row["currency"],
            task_queue=row["task_queue"],
            settings=DriverSettings.model_validate(row["settings"] or {}),
            calendar_proven=proven,
            calendar_code=None if proven else row["calendar_code"],
        )
        return DriverLookup(driver=driver, pending_question_workflow_id=row["question"])

    async def _prove(self, row: asyncpg.Record) -> bool:
        """The driver may have put the code into the calendar since their last message: look again."""
        assert self.ownership is not None
        key = (row["tenant_id"], row["chat_id"], row["calendar_id"])
        proof = await self.ownership.find_proof(*key, row["calendar_code"])
        if proof is None:
            return False
        async with system_tx(self.pool) as conn:
            return await self.ownership.record(conn, *key, proof)

    @activity.defn(name="finish_step")
    async def finish_step(self, req: FinishStepInput) -> int:
        """Write audit rows (once per workflow step) and upsert the order, in one transaction per tenant."""
        written = 0
        tenants = {e.tenant_id for e in req.audit} | ({req.order.tenant_id} if req.order else set())
        for tenant_id in sorted(tenants):
            async with tenant_tx(self.pool, tenant_id) as conn:
                rows = [e for e in req.audit if e.tenant_id == tenant_id]
                if rows:
                    # No RETURNING and no conflict target: either would need the audit log to be
                    # readable, and it is readable only in the system context.
                    status = await conn.execute(
                        """INSERT INTO audit_log
                               (tenant_id, workflow_id, step, action, chat_id, order_id, outcome, details)
                           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                                                $5::bigint[], $6::text[], $7::text[], $8::jsonb[])
                           ON CONFLICT DO NOTHING""",
                        [e.tenant_id for e in rows],
                        [e.workflow_id for e in rows],
                        [e.step for e in rows],
                        [e.action for e in rows],
                        [e.chat_id for e in rows],
                        [e.order_id for e in rows],
                        [e.outcome for e in rows],
                        [e.details for e in rows],
                    )
                    if (new := int(status.split()[-1])) > 0:
                        metrics.observe_audit(rows)  # a retried step wrote nothing new: not counted again
                    written += new
                if req.order and req.order.tenant_id == tenant_id:
                    o, p = req.order, req.order.order
                    await conn.execute(
                        """INSERT INTO orders (tenant_id, order_id, chat_id, workflow_id, status, pickup_at,
                               pickup_address, dropoff_address, price_amount, price_currency, client_name,
                               client_phone, flight_number, calendar_id, event_id, html_link, original_text,
                               source_message_id, order_index, card_message_id, order_workflow_id)
                           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21)
                           ON CONFLICT (tenant_id, order_id) DO UPDATE SET
                               status = EXCLUDED.status, pickup_at = EXCLUDED.pickup_at,
                               pickup_address = EXCLUDED.pickup_address,
                               dropoff_address = EXCLUDED.dropoff_address,
                               price_amount = EXCLUDED.price_amount,
                               price_currency = EXCLUDED.price_currency,
                               client_name = EXCLUDED.client_name, client_phone = EXCLUDED.client_phone,
                               flight_number = EXCLUDED.flight_number, event_id = EXCLUDED.event_id,
                               html_link = EXCLUDED.html_link, original_text = EXCLUDED.original_text,
                               source_message_id = coalesce(EXCLUDED.source_message_id, orders.source_message_id),
                               card_message_id = coalesce(EXCLUDED.card_message_id, orders.card_message_id),
                               order_workflow_id = coalesce(EXCLUDED.order_workflow_id, orders.order_workflow_id),
                               updated_at = now()""",
                        o.tenant_id, o.order_id, o.chat_id, o.workflow_id, o.status, p.pickup_at,
                        p.pickup_address, p.dropoff_address, p.price_amount, p.price_currency,
                        p.client_name, p.client_phone, p.flight_number, o.calendar_id, o.event_id,
                        o.html_link, o.original_text, o.source_message_id, o.order_index,
                        o.card_message_id, o.order_workflow_id,
                    )  # fmt: skip
        return written

    @activity.defn(name="set_open_question")
    async def set_open_question(self, req: QuestionInput) -> None:
        async with tenant_tx(self.pool, req.tenant_id) as conn:
            if req.open:
                # A newer question replaces an older one: the driver answers the latest.
                await conn.execute(
                    """INSERT INTO open_questions (tenant_id, chat_id, workflow_id) VALUES ($1, $2, $3)
                       ON CONFLICT (tenant_id, chat_id) DO UPDATE
                       SET workflow_id = EXCLUDED.workflow_id, asked_at = now()""",
                    req.tenant_id, req.chat_id, req.workflow_id,
                )  # fmt: skip
            else:
                await conn.execute(
                    "DELETE FROM open_questions WHERE tenant_id = $1 AND chat_id = $2 AND workflow_id = $3",
                    req.tenant_id, req.chat_id, req.workflow_id,
                )  # fmt: skip

    @activity.defn(name="authorize_order")
    async def authorize_order(self, req: AuthorizeOrderInput) -> OrderRef:
        """The order named by a button press, only if it is the pressing chat's own (else audited, denied)."""
        try:
            row = await tenants.order_for_chat(
                self.pool, chat_id=req.chat_id, order_id=req.order_id, workflow_id=req.workflow_id
            )
        except tenants.Forbidden as exc:
            raise ApplicationError(str(exc), type="OrderForbidden", non_retryable=True) from exc
        return _order_ref(row)

    @activity.defn(name="find_orders")
    async def find_orders(self, req: FindOrderInput) -> FoundOrders:
        """The chat's existing order(s) a new message or an edit refers to; cancelled ones never match."""
        base = "SELECT * FROM orders WHERE tenant_id = $1 AND chat_id = $2 AND status <> 'cancelled'"
        async with tenant_tx(self.pool, req.tenant_id) as conn:
            if req.card_message_id is not None:
                rows = await conn.fetch(base + " AND card_message_id = $3", req.tenant_id, req.chat_id,
                                        req.card_message_id)  # fmt: skip
                if rows:
                    return FoundOrders(orders=[_order_ref(r) for r in rows], matched_by="card")
            if req.source_message_id is not None:
                rows = await conn.fetch(
                    base + " AND source_message_id = $3 ORDER BY order_index",
                    req.tenant_id, req.chat_id, req.source_message_id,
                )  # fmt: skip
                if rows:
                    return FoundOrders(orders=[_order_ref(r) for r in rows], matched_by="source")
            if req.client_phone and req.day_start and req.day_end:
                rows = await conn.fetch(
                    base + " AND client_phone = $3 AND pickup_at >= $4 AND pickup_at < $5 ORDER BY pickup_at",
                    req.tenant_id, req.chat_id, req.client_phone, req.day_start, req.day_end,
                )  # fmt: skip
                if rows:  # the workflow decides which one, if any, the message means
                    return FoundOrders(orders=[_order_ref(r) for r in rows], matched_by="phone_day")
            if req.client_phone and req.after:
                rows = await conn.fetch(
                    base + " AND client_phone = $3 AND pickup_at >= $4 ORDER BY pickup_at LIMIT 2",
                    req.tenant_id, req.chat_id, req.client_phone, req.after,
                )  # fmt: skip
                if rows:
                    return FoundOrders(orders=[_order_ref(r) for r in rows], matched_by="phone_next")
        return FoundOrders()

    @activity.defn(name="set_order_status")
    async def set_order_status(self, req: OrderStatusInput) -> None:
        async with tenant_tx(self.pool, req.tenant_id) as conn:
            await conn.execute(
                "UPDATE orders SET status = $3, updated_at = now() WHERE tenant_id = $1 AND order_id = $2",
                req.tenant_id, req.order_id, req.status,
            )  # fmt: skip
