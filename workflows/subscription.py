"""Subscriptions: one long-lived SubscriptionWorkflow per driver (or tenant), and the small InvoiceWorkflow
behind the driver's /subscribe.

SubscriptionWorkflow (id `subscription-<tenant>-<chat>`) is started with signal-with-start
`payment_received`. Each payment activates the whitelist entry and moves the end of the paid period;
a durable timer then warns the driver 3 days before the end and deactivates at the end, unless a
renewal arrived first. Each period ends with continue-as-new, so the history stays small however many
years a driver pays.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.billing import BillingActivities
    from autodispatch import texts
    from autodispatch.db import SYSTEM_TENANT
    from autodispatch.texts import bt, format_until
    from schemas.audit import AuditEntry
    from schemas.billing import (
        BillingAuditInput,
        ChangeAction,
        InvoiceSent,
        PaymentReceived,
        SendInvoiceInput,
        SubscriptionChange,
        SubscriptionChangeResult,
        SubscriptionInput,
    )
    from schemas.telegram import SendReplyInput, TelegramUpdateReceived
    from workflows import policies, steps

WARN_BEFORE = timedelta(days=3)
# Payment ids remembered across continue-as-new: enough to recognise any redelivery.
MAX_SEEN_PAYMENTS = 50
# A Stripe subscription's first period may arrive twice, as its checkout and as its invoice (in either
# order, a day or two apart in length): a payment that ends within this slack of the paid period is
# the same period, recorded without a second "payment received" message.
SAME_PERIOD_SLACK = timedelta(days=3)


async def _audit(entries: list[AuditEntry]) -> None:
    await workflow.execute_activity_method(
        BillingActivities.record_audit,
        BillingAuditInput(entries=entries),
        start_to_close_timeout=policies.DB_TIMEOUT,
        retry_policy=policies.DB_RETRY,
    )


async def _send(tenant_id: str, chat_id: int, step: str, text: str, task_queue: str | None) -> str | None:
    """A reply through the outbox; returns the error type if it could not be sent (never raises)."""
    try:
        await steps.send_reply(
            SendReplyInput(
                tenant_id=tenant_id,
                workflow_id=workflow.info().workflow_id,
                step=step,
                chat_id=chat_id,
                text=text,
            ),
            task_queue,
        )
    except ActivityError as err:
        return steps.error_type(err)[0] or "error"
    return None


@workflow.defn(name="SubscriptionWorkflow")
class SubscriptionWorkflow:
    def __init__(self) -> None:
        self._inbox: list[PaymentReceived] = []
        self._s = SubscriptionInput(tenant_id=SYSTEM_TENANT)

    @workflow.signal(name="payment_received")
    def payment_received(self, payment: PaymentReceived) -> None:
        self._inbox.append(payment)

    @workflow.query(name="subscription_state")
    def subscription_state(self) -> SubscriptionInput:
        return self._s

    @workflow.run
    async def run(self, state: SubscriptionInput) -> None:
        self._s = state
        # New or lapsed: wait for a payment, as long as it takes.
        await workflow.wait_condition(lambda: bool(self._inbox) or self._s.status == "active")
        await self._apply_payments()
        end = self._s.paid_until
        if self._s.status != "active" or end is None:
            await self._roll_over()
            return
        if self._s.warned_for != end:
            if await self._payment_before(end - WARN_BEFORE):
                await self._roll_over()  # renewed before the warning: a new period
                return
            await self._warn(end)
        if await self._payment_before(end):
            await self._roll_over()
            return
        await self._expire(end)
        await self._roll_over()

    # -- the period ----------------------------------------------------------------------
    async def _payment_before(self, at: datetime) -> bool:
        """Durable wait until `at`; True as soon as a payment arrives."""
        delay = at - workflow.now()
        if delay <= timedelta(0):
            return bool(self._inbox)
        try:
            await workflow.wait_condition(lambda: bool(self._inbox), timeout=delay)
        except TimeoutError:
            return False
        return True

    async def _roll_over(self) -> None:
        # Nothing may stay in the inbox: continue-as-new keeps only the state we pass on.
        while self._inbox:
            await self._apply_payments()
        workflow.continue_as_new(self._s)

    async def _apply_payments(self) -> None:
        payments, self._inbox = self._inbox, []
        for payment in payments:
            await self._apply(payment)

    async def _apply(self, p: PaymentReceived) -> None:
        s = self._s
        if p.payment_id in s.seen_payments:
            workflow.logger.info("payment %s was already applied", p.payment_id)
            return
        s.seen_payments = [*s.seen_payments, p.payment_id][-MAX_SEEN_PAYMENTS:]
        if p.language:
            s.language = texts.language_for(p.language)
        if p.reply_task_queue:
            s.reply_task_queue = p.reply_task_queue
        now = workflow.now()
        running = s.status == "active" and s.paid_until is not None and s.paid_until > now
        base = s.paid_until if running and s.paid_until else now
        until = max(base, p.period_end) if p.period_end else base + timedelta(days=p.period_days)
        details: dict[str, Any] = {"provider": p.provider, "amount": p.amount, "currency": p.currency}
        if until <= now:
            # An invoice for a period that is already over (delivered very late): recorded, nothing to open.
            await _audit([self._entry(f"payment:{p.payment_id}", "payment_for_past_period", **details)])
            return
        same_period = (
            running
            and p.period_end is not None
            and s.paid_until
            and until <= s.paid_until + SAME_PERIOD_SLACK
        )
        s.paid_until, s.status = until, "active"
        result = await self._change(
            "activate", f"payment:{p.payment_id}", until, payment_id=p.payment_id, same_period=bool(same_period),
            **details,
        )  # fmt: skip
        if result.missing:
            s.status = "expired"  # the driver left the whitelist: nothing to keep open
            return
        if same_period and not (result.blocked_by_admin or result.awaiting_approval):
            return
        key = (
            "paid_blocked" if result.blocked_by_admin
            else "paid_awaiting_approval" if result.awaiting_approval else "paid"
        )  # fmt: skip
        await self._notify(result, f"paid-{p.payment_id}", key, until)

    async def _warn(self, end: datetime) -> None:
        result = await self._change("warn", f"warn:{end.isoformat()}", end)
        self._s.warned_for = end
        await self._notify(result, f"warn-{end.isoformat()}", "warning", end)

    async def _expire(self, end: datetime) -> None:
        result = await self._change("expire", f"expire:{end.isoformat()}", end)
        self._s.status = "expired"
        await self._notify(result, f"expired-{end.isoformat()}", "expired", end)

    # -- effects -------------------------------------------------------------------------
    def _entry(self, step: str, action: str, outcome: str = "ok", **details: Any) -> AuditEntry:
        return AuditEntry(
            tenant_id=self._s.tenant_id, workflow_id=workflow.info().workflow_id, step=step, action=action,
            chat_id=self._s.chat_id, outcome=outcome, details=details,
        )  # fmt: skip

    async def _change(
        self, action: ChangeAction, step: str, until: datetime, payment_id: str | None = None, **details: Any
    ) -> SubscriptionChangeResult:
        return await workflow.execute_activity_method(
            BillingActivities.apply_change,
            SubscriptionChange(
                tenant_id=self._s.tenant_id,
                chat_id=self._s.chat_id,
                workflow_id=workflow.info().workflow_id,
                step=step,
                action=action,
                paid_until=until,
                payment_id=payment_id,
                details=details,
            ),  # fmt: skip
            start_to_close_timeout=policies.DB_TIMEOUT,
            retry_policy=policies.DB_RETRY,
        )

    async def _notify(self, result: SubscriptionChangeResult, step: str, key: str, until: datetime) -> None:
        if result.missing:
            return
        s = self._s
        text = bt(s.language, key, until=format_until(until, result.time_zone))
        per_chat = s.chat_id is None  # a tenant's subscription tells each of its drivers
        failed: list[AuditEntry] = []
        for chat_id in result.notify_chat_ids:
            chat_step = f"{step}:{chat_id}" if per_chat else step
            error = await _send(s.tenant_id, chat_id, chat_step, text, s.reply_task_queue)
            if error is not None:
                failed.append(
                    self._entry(
                        f"{chat_step}:failed", "notice_failed", "error", error=error, notice=key, chat=chat_id
                    )
                )
        if failed:
            await _audit(failed)


@workflow.defn(name="InvoiceWorkflow")
class InvoiceWorkflow:
    """/subscribe: a Telegram invoice for one period (id tg-<bot>-<update>, like every update)."""

    @workflow.run
    async def run(self, update: TelegramUpdateReceived) -> str:
        lang = texts.language_for(update.language_code)
        wf = workflow.info().workflow_id
        lookup = await steps.lookup_driver(update.chat_id, update.bot_id)
        driver = lookup.driver

        def entry(tenant_id: str, step: str, action: str, outcome: str = "ok", **details: Any) -> AuditEntry:
            return AuditEntry(
                tenant_id=tenant_id, workflow_id=wf, step=step, action=action, chat_id=update.chat_id,
                outcome=outcome, details=details,
            )  # fmt: skip

        if driver is None:
            error = await _send(
                SYSTEM_TENANT, update.chat_id, "refusal", texts.t(lang, "unknown_chat", chat_id=update.chat_id),
                update.reply_task_queue,
            )  # fmt: skip
            await _audit([entry(SYSTEM_TENANT, "outcome", "unknown_chat", reply_error=error)])
            return "unknown_chat"
        tenant_id = driver.tenant_id
        try:
            # On the flow's queue: the outbound worker serves only send_reply, and invoices are rare.
            sent: InvoiceSent = await workflow.execute_activity_method(
                BillingActivities.send_invoice,
                SendInvoiceInput(
                    tenant_id=tenant_id,
                    workflow_id=wf,
                    step="invoice",
                    chat_id=update.chat_id,
                    language=lang,
                    bot_id=update.bot_id,
                ),  # fmt: skip
                start_to_close_timeout=policies.TELEGRAM_TIMEOUT,
                schedule_to_close_timeout=policies.TELEGRAM_GIVE_UP,
                retry_policy=policies.TELEGRAM_RETRY,
            )
        except ActivityError as err:
            kind, message = steps.error_type(err)
            key = "payments_unavailable" if kind == "PaymentsNotConfigured" else "invoice_failed"
            error = await _send(
                tenant_id,
                update.chat_id,
                "reply",
                bt(lang, key, reason=kind or "error"),
                update.reply_task_queue,
            )
            await _audit(
                [
                    entry(
                        tenant_id,
                        "outcome",
                        "invoice_failed",
                        "error",
                        error=kind,
                        message=message,
                        reply_error=error,
                    )
                ]
            )
            return "invoice_failed"
        await _audit(
            [
                entry(
                    tenant_id,
                    "outcome",
                    "invoice_sent",
                    message_id=sent.message_id,
                    amount=sent.amount,
                    currency=sent.currency,
                    already_sent=sent.already_sent,
                )  # fmt: skip
            ]
        )
        return "invoice_sent"
