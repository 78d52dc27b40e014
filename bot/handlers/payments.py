"""Telegram Payments, the in-chat alternative to the payment provider's checkout.

* `/subscribe` is handed to Temporal like every update (InvoiceWorkflow sends the invoice).
* `pre_checkout_query` is answered here, at the edge: Telegram cancels the payment unless it is
  answered within 10 seconds, too short to go through a workflow. It checks the invoice is ours and
  names a whitelisted driver.
* `successful_payment` signals the driver's SubscriptionWorkflow (recorded once by its charge id);
  the update is acknowledged only after Temporal accepted the signal.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import asyncpg
from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.types import Message, PreCheckoutQuery, Update

from autodispatch import texts
from autodispatch.db import SYSTEM_TENANT, system_tx
from autodispatch.texts import bt
from bot.billing import BillingEdge, Decision
from bot.edge import TemporalEdge
from bot.handlers.convert import received_from
from schemas.billing import BillingSettings, PaymentReceived, parse_invoice_payload
from schemas.telegram import outbound_task_queue

log = logging.getLogger(__name__)

# Telegram allows 10 s for the answer; the check gets 7 so the answer itself still fits.
PRE_CHECKOUT_BUDGET = 7.0


async def on_subscribe(message: Message, event_update: Update, bot: Bot, edge: TemporalEdge) -> None:
    # A redelivered /subscribe is the same update, so the same workflow id: one invoice.
    received = received_from(bot.id, event_update, message, "command", message.text or "")
    await edge.hand_over(received, workflow="InvoiceWorkflow")


async def check_pre_checkout(
    pool: asyncpg.Pool, payload: str, billing: BillingSettings, amount: int, currency: str
) -> tuple[str | None, str | None]:
    """(tenant the invoice names, refusal text key or None). An invoice of an old price (the setting
    changed since it was sent) is refused before any money moves."""
    parsed = parse_invoice_payload(payload)
    if parsed is None or billing.payment_problem(amount, currency) is not None:
        return None, "checkout_invalid"
    sub, _ = parsed
    async with system_tx(pool) as conn:
        known = await conn.fetchval(
            "SELECT true FROM drivers WHERE tenant_id = $1 AND chat_id = $2", sub.tenant_id, sub.chat_id
        )
    return (sub.tenant_id, None) if known else (None, "checkout_unknown_chat")


async def on_pre_checkout(
    query: PreCheckoutQuery, bot: Bot, edge: TemporalEdge, billing: BillingSettings
) -> None:
    lang = texts.language_for(query.from_user.language_code if query.from_user else None)
    pool = edge.routing.pool
    tenant_id: str | None = None
    try:
        if pool is None:
            raise OSError("no database")
        async with asyncio.timeout(PRE_CHECKOUT_BUDGET):
            tenant_id, refusal = await check_pre_checkout(
                pool, query.invoice_payload, billing, query.total_amount, query.currency
            )
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        # No answer means a failed payment after 10 s anyway; a clear "try again" is better.
        log.warning("pre-checkout %s not checked (%s); refusing for now", query.id, exc)
        refusal = "checkout_unavailable"
    await bot.answer_pre_checkout_query(
        pre_checkout_query_id=query.id,
        ok=refusal is None,
        error_message=bt(lang, refusal) if refusal else None,
    )
    # Audited after the answer (the answer is the time-critical part); a failure here must not make
    # Telegram deliver the query again, it is answered already.
    if pool is not None:
        try:
            async with system_tx(pool) as conn:
                await conn.execute(
                    """INSERT INTO audit_log (tenant_id, workflow_id, step, action, chat_id, outcome, details)
                       VALUES ($1, 'billing', 'billing-' || gen_random_uuid()::text, $2, $3, $4, $5)""",
                    tenant_id or SYSTEM_TENANT,
                    "pre_checkout_approved" if refusal is None else "pre_checkout_refused",
                    query.from_user.id if query.from_user else None,
                    "ok" if refusal is None else "refused",
                    {"query_id": query.id, "payload": query.invoice_payload, "amount": query.total_amount,
                     "currency": query.currency, "refusal": refusal},
                )  # fmt: skip
        except (OSError, asyncpg.PostgresError):
            log.exception("could not audit pre-checkout %s", query.id)


async def on_successful_payment(
    message: Message, bot: Bot, edge: TemporalEdge, billing: BillingSettings
) -> None:
    paid = message.successful_payment
    assert paid is not None  # the filter guarantees it
    if edge.routing.pool is None:
        raise RuntimeError("no database: the payment cannot be recorded; not acknowledging the update")
    parsed = parse_invoice_payload(paid.invoice_payload)
    decision = Decision(customer_problem=f"invoice payload {paid.invoice_payload!r} is not one of ours")
    problem = billing.payment_problem(paid.total_amount, paid.currency)
    if parsed is not None and problem is not None:
        decision = Decision(ignored=f"not a payment for our subscription: {problem}")
    elif parsed is not None:
        subscriber, days = parsed
        payment = PaymentReceived(
            payment_id=f"telegram:{paid.telegram_payment_charge_id}",
            provider="telegram",
            paid_at=message.date or datetime.now(UTC),
            period_days=days,
            amount=paid.total_amount,
            currency=paid.currency,
            language=message.from_user.language_code if message.from_user else None,
            reply_task_queue=outbound_task_queue(bot.id),
        )
        decision = Decision(subscriber=subscriber, payment=payment)
    billing = BillingEdge(
        edge.client, edge.routing.pool, edge.task_queue, reply_task_queue=outbound_task_queue(bot.id)
    )
    applied = await billing.apply(
        provider="telegram",
        event_id=paid.telegram_payment_charge_id,
        event_type="successful_payment",
        payload=message.model_dump(mode="json", exclude_none=True),
        decision=decision,
    )
    if applied.outcome == "unknown_customer":
        # The money is taken but names nobody (the driver was removed after paying): the audit row
        # carries the charge id for the admin's refund.
        log.error(
            "Telegram payment %s names no known driver: %s", paid.telegram_payment_charge_id, applied.reason
        )


def build_router() -> Router:
    # Before the orders router: `/subscribe` is text, and a successful_payment message has none.
    router = Router(name="payments")
    router.message.register(on_subscribe, Command("subscribe"))
    router.message.register(on_successful_payment, F.successful_payment)
    router.pre_checkout_query.register(on_pre_checkout)
    return router
