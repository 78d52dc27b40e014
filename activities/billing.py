"""Billing activities: subscription transitions on the whitelist (with their audit rows), billing audit,
and Telegram invoices through the outbox."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.types import LabeledPrice
from temporalio import activity
from temporalio.exceptions import ApplicationError

from autodispatch import metrics
from autodispatch.bots import BotDirectory
from autodispatch.db import tenant_tx
from autodispatch.texts import bt
from schemas.billing import (
    BillingAuditInput,
    BillingSettings,
    InvoiceSent,
    SendInvoiceInput,
    SubscriptionChange,
    SubscriptionChangeResult,
    invoice_payload,
)

_AUDIT_ACTIONS = {
    "activate": "subscription_activated",
    "warn": "subscription_warned",
    "expire": "subscription_expired",
}


class BillingActivities:
    def __init__(
        self,
        pool: asyncpg.Pool,
        bot: Bot | None = None,
        billing: BillingSettings | None = None,
        bots: BotDirectory | None = None,
    ) -> None:
        self.pool = pool
        self.bot = bot
        self.billing = billing or BillingSettings()
        self.bots = bots  # tenants' own bots: an invoice comes from the bot the driver asked

    async def _bot_for(self, bot_id: int | None) -> Bot | None:
        if self.bot is not None and self.bots is not None and bot_id is not None and bot_id != self.bot.id:
            return await self.bots.get(bot_id) or self.bot
        return self.bot

    @activity.defn(name="billing_apply_change")
    async def apply_change(self, req: SubscriptionChange) -> SubscriptionChangeResult:
        """Activate / warn / expire in one transaction with the audit row. Idempotent: a retry finds the
        status already changed and the audit row already written (unique per workflow step)."""
        subject = str(req.chat_id) if req.chat_id is not None else "tenant"
        async with tenant_tx(self.pool, req.tenant_id) as conn:
            if req.chat_id is not None:
                target = await conn.fetchrow(
                    "SELECT status, time_zone FROM drivers WHERE tenant_id = $1 AND chat_id = $2 FOR UPDATE",
                    req.tenant_id, req.chat_id,
                )  # fmt: skip
            else:
                target = await conn.fetchrow(
                    "SELECT status, time_zone FROM tenants WHERE tenant_id = $1 FOR UPDATE", req.tenant_id
                )
            if target is None:
                await self._audit(conn, req, "subscription_subject_missing", "error", {})
                return SubscriptionChangeResult(missing=True)
            sub = await conn.fetchrow(
                "SELECT status, suspended FROM subscriptions WHERE tenant_id = $1 AND subject = $2 FOR UPDATE",
                req.tenant_id, subject,
            )  # fmt: skip
            current = new = target["status"]
            suspended = bool(sub and sub["suspended"])
            blocked = awaiting = False
            if req.action == "activate":
                if current == "pending" and req.chat_id is not None and await self._needs_approval(conn, req):
                    awaiting = True  # the fleet approves new drivers itself; the payment is recorded
                elif current == "pending" or (current == "disabled" and suspended):
                    new, suspended = "active", False
                elif current == "disabled":
                    blocked = True  # an admin disabled it: paying does not override that
            elif req.action == "expire" and current == "active":
                new, suspended = "disabled", True
            if new != current:
                if req.chat_id is not None:
                    await conn.execute(
                        "UPDATE drivers SET status = $3, updated_at = now() WHERE tenant_id = $1 AND chat_id = $2",
                        req.tenant_id, req.chat_id, new,
                    )  # fmt: skip
                else:
                    await conn.execute(
                        "UPDATE tenants SET status = $2 WHERE tenant_id = $1", req.tenant_id, new
                    )
            await conn.execute(
                """INSERT INTO subscriptions (tenant_id, chat_id, status, paid_until, suspended, last_payment_id,
                                              workflow_id, warned_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $8 THEN now() END)
                   ON CONFLICT (tenant_id, subject) DO UPDATE SET status = EXCLUDED.status,
                       paid_until = EXCLUDED.paid_until, suspended = EXCLUDED.suspended,
                       last_payment_id = coalesce(EXCLUDED.last_payment_id, subscriptions.last_payment_id),
                       workflow_id = EXCLUDED.workflow_id,
                       warned_at = coalesce(EXCLUDED.warned_at, subscriptions.warned_at), updated_at = now()""",
                req.tenant_id, req.chat_id, "expired" if req.action == "expire" else "active", req.paid_until,
                suspended, req.payment_id, req.workflow_id, req.action == "warn",
            )  # fmt: skip
            action = (
                "payment_blocked_by_admin" if blocked
                else "payment_awaiting_approval" if awaiting else _AUDIT_ACTIONS[req.action]
            )  # fmt: skip
            details = {"from": current, "to": new, "paid_until": req.paid_until.isoformat(), **req.details}
            if req.payment_id:
                details["payment_id"] = req.payment_id
            await self._audit(conn, req, action, "refused" if blocked else "ok", details)
            if req.chat_id is not None:
                notify = [req.chat_id]
            else:
                rows = await conn.fetch(
                    "SELECT chat_id FROM drivers WHERE tenant_id = $1 AND status = 'active' ORDER BY chat_id",
                    req.tenant_id,
                )
                notify = [r["chat_id"] for r in rows]
        return SubscriptionChangeResult(
            status=new, blocked_by_admin=blocked, awaiting_approval=awaiting, notify_chat_ids=notify,
            time_zone=target["time_zone"],
        )  # fmt: skip

    @staticmethod
    async def _needs_approval(conn: asyncpg.Connection, req: SubscriptionChange) -> bool:
        """A pending driver of a fleet that approves new drivers itself (tenants.onboarding_activation =
        'approval') is not activated by paying; a lapsed one (disabled by billing) is, as before."""
        mode = await conn.fetchval(
            "SELECT onboarding_activation FROM tenants WHERE tenant_id = $1", req.tenant_id
        )
        return mode == "approval"

    @staticmethod
    async def _audit(
        conn: asyncpg.Connection, req: SubscriptionChange, action: str, outcome: str, details: dict
    ) -> None:
        # No conflict target and no RETURNING: the audit log is not readable outside the system context.
        await conn.execute(
            """INSERT INTO audit_log (tenant_id, workflow_id, step, action, chat_id, outcome, details)
               VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING""",
            req.tenant_id, req.workflow_id, req.step, action, req.chat_id, outcome, details,
        )  # fmt: skip

    @activity.defn(name="billing_audit")
    async def record_audit(self, req: BillingAuditInput) -> int:
        """Audit rows of the billing flows, once per (workflow, step)."""
        written = 0
        for tenant_id in sorted({e.tenant_id for e in req.entries}):
            async with tenant_tx(self.pool, tenant_id) as conn:
                for e in (e for e in req.entries if e.tenant_id == tenant_id):
                    status = await conn.execute(
                        """INSERT INTO audit_log (tenant_id, workflow_id, step, action, chat_id, outcome, details)
                           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING""",
                        e.tenant_id, e.workflow_id, e.step, e.action, e.chat_id, e.outcome, e.details,
                    )  # fmt: skip
                    if (new := int(status.split()[-1])) > 0:
                        metrics.observe_audit([e], billing=True)
                    written += new
        return written

    @activity.defn(name="send_invoice")
    async def send_invoice(self, req: SendInvoiceInput) -> InvoiceSent:
        """A Telegram invoice for one period, sent at most once per (workflow, step) through the outbox."""
        cfg = self.billing
        bot = await self._bot_for(req.bot_id)
        if bot is None or not cfg.invoices_enabled or cfg.price_minor is None:
            raise ApplicationError(
                "Telegram payments are not configured (AUTODISPATCH_BILLING_PRICE_MINOR and "
                "AUTODISPATCH_TELEGRAM_PAYMENTS_PROVIDER_TOKEN, or AUTODISPATCH_BILLING_CURRENCY=XTR)",
                type="PaymentsNotConfigured",
                non_retryable=True,
            )
        days, lang = cfg.period_days, req.language
        async with tenant_tx(self.pool, req.tenant_id) as conn:
            await conn.execute(
                """INSERT INTO outbox (tenant_id, workflow_id, step, chat_id, text) VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (tenant_id, workflow_id, step) DO NOTHING""",
                req.tenant_id, req.workflow_id, req.step, req.chat_id,
                f"[invoice] {cfg.price_minor} {cfg.currency} for {days} days",
            )  # fmt: skip
            row = await conn.fetchrow(
                """SELECT status, telegram_message_id FROM outbox
                    WHERE tenant_id = $1 AND workflow_id = $2 AND step = $3 FOR UPDATE""",
                req.tenant_id, req.workflow_id, req.step,
            )  # fmt: skip
            assert row is not None
            if row["status"] == "sent":
                return InvoiceSent(
                    message_id=row["telegram_message_id"], already_sent=True,
                    amount=cfg.price_minor, currency=cfg.currency,
                )  # fmt: skip
            try:
                msg = await bot.send_invoice(
                    chat_id=req.chat_id,
                    title=bt(lang, "invoice_title"),
                    description=bt(lang, "invoice_description", days=days),
                    payload=invoice_payload(req.tenant_id, req.chat_id, days),
                    currency=cfg.currency,
                    prices=[LabeledPrice(label=bt(lang, "invoice_label", days=days), amount=cfg.price_minor)],
                    provider_token=cfg.provider_token.get_secret_value() if cfg.provider_token else None,
                )
            except TelegramRetryAfter as exc:
                raise ApplicationError(
                    f"Telegram rate limit, retry after {exc.retry_after}s",
                    type="TelegramRetryAfter",
                    next_retry_delay=timedelta(seconds=exc.retry_after),
                ) from exc
            except TelegramForbiddenError as exc:
                raise ApplicationError(
                    f"the driver blocked the bot: {exc.message}", type="TelegramForbidden", non_retryable=True
                ) from exc
            except (TelegramBadRequest, TelegramNotFound) as exc:
                raise ApplicationError(
                    f"Telegram rejected the invoice: {exc.message}",
                    type="TelegramBadRequest",
                    non_retryable=True,
                ) from exc
            except TelegramUnauthorizedError as exc:
                raise ApplicationError(
                    "Telegram does not accept the bot token", type="TelegramUnauthorized", non_retryable=True
                ) from exc
            await conn.execute(
                """UPDATE outbox SET status = 'sent', telegram_message_id = $4, sent_at = now()
                    WHERE tenant_id = $1 AND workflow_id = $2 AND step = $3""",
                req.tenant_id, req.workflow_id, req.step, msg.message_id,
            )  # fmt: skip
        return InvoiceSent(message_id=msg.message_id, amount=cfg.price_minor, currency=cfg.currency)
