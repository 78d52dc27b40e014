"""After a driver connected their Google Calendar (#6 phase 4): tell them, then write the orders that
were paused while their grant was revoked, each exactly once.

Started by the OAuth callback (bot/oauth.py) with id `oauth-connected-<tenant>-<chat>-<nonce>`. Paused
orders are claimed for this workflow first, so two connects in a row never resume one order twice; the
event id is the order id, so even a repeated write finds its event (409) instead of adding one.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import Priority
from temporalio.exceptions import ChildWorkflowError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.oauth import OAuthActivities
    from activities.orders import OrderStarter
    from autodispatch import texts
    from schemas.audit import AuditEntry
    from schemas.calendar import CalendarEvent
    from schemas.lifecycle import OrderLifecycleInput, StartOrderWorkflowInput
    from schemas.oauth import (
        CalendarConnected,
        ClaimPausedInput,
        ConnectedResult,
        PausedOrder,
        PausedOrders,
        ReleasePausedInput,
    )
    from schemas.store import OrderRecord
    from schemas.telegram import SendReplyInput
    from workflows import policies, steps
    from workflows.calendar2auto import Calendar2AutoWorkflow
    from workflows.ids import calendar_workflow_id


def connected_workflow_id(tenant_id: str, chat_id: int, nonce: str) -> str:
    return f"oauth-connected-{tenant_id}-{chat_id}-{nonce}"


@workflow.defn(name="CalendarConnectedWorkflow")
class CalendarConnectedWorkflow:
    def __init__(self) -> None:
        self._audit: list[AuditEntry] = []

    def _record(self, req: CalendarConnected, step: str, action: str, outcome: str = "ok",
                order_id: str | None = None, **details: Any) -> None:  # fmt: skip
        self._audit.append(
            AuditEntry(
                tenant_id=req.tenant_id,
                workflow_id=workflow.info().workflow_id,
                step=step,
                action=action,
                chat_id=req.chat_id,
                order_id=order_id,
                outcome=outcome,
                details=details,
            )  # fmt: skip
        )

    async def _flush(self, order: OrderRecord | None = None) -> None:
        rows, self._audit = self._audit, []
        await steps.write_audit(rows, order)

    async def _say(
        self,
        req: CalendarConnected,
        step: str,
        text: str,
        reply_to: int | None = None,
        buttons: list[list[dict[str, str]]] | None = None,
        task_queue: str | None = None,
    ) -> int | None:
        try:
            sent = await steps.send_reply(
                SendReplyInput(
                    tenant_id=req.tenant_id,
                    workflow_id=workflow.info().workflow_id,
                    step=step,
                    chat_id=req.chat_id,
                    text=text,
                    reply_to_message_id=reply_to,
                    buttons=buttons,
                ),  # fmt: skip
                task_queue or req.reply_task_queue,
            )
        except FailureError as err:
            kind, message = steps.error_type(err)
            self._record(req, f"{step}:failed", "reply_failed", outcome="error", error=kind, message=message)
            return None
        self._record(req, step, "reply_sent", message_id=sent.message_id, already_sent=sent.already_sent)
        return sent.message_id

    async def _release(self, req: CalendarConnected, order_id: str, done: bool) -> None:
        await workflow.execute_local_activity_method(
            OAuthActivities.release_paused_order,
            ReleasePausedInput(
                tenant_id=req.tenant_id, order_id=order_id, workflow_id=workflow.info().workflow_id, done=done
            ),
            start_to_close_timeout=policies.DB_TIMEOUT,
            retry_policy=policies.DB_RETRY,
        )

    @workflow.run
    async def run(self, req: CalendarConnected) -> ConnectedResult:
        lang = req.language
        self._record(req, "connected", "calendar_connected", account=req.account_email, nonce=req.nonce)
        await self._say(req, "connected-reply", texts.t(lang, "calendar_connected"))
        await self._flush()

        claimed: PausedOrders = await workflow.execute_local_activity_method(
            OAuthActivities.claim_paused_orders,
            ClaimPausedInput(
                tenant_id=req.tenant_id, chat_id=req.chat_id, workflow_id=workflow.info().workflow_id
            ),
            start_to_close_timeout=policies.DB_TIMEOUT,
            retry_policy=policies.DB_RETRY,
        )
        result = ConnectedResult()
        for i, paused in enumerate(claimed.orders):
            outcome = await self._resume(req, paused)
            if outcome == "revoked":
                # Revoked again already: this and the rest wait for the next /connect.
                for rest in claimed.orders[i:]:
                    await self._release(req, rest.order_id, done=False)
                    result.still_paused.append(rest.order_id)
                break
            (result.resumed if outcome == "resumed" else result.failed).append(paused.order_id)
        self._record(
            req, "outcome", "resume_finished",
            resumed=result.resumed, failed=result.failed, still_paused=result.still_paused,
        )  # fmt: skip
        await self._flush()
        return result

    async def _start_order_workflow(
        self, req: CalendarConnected, paused: PausedOrder, event: CalendarEvent, card_id: int | None
    ) -> str | None:
        lookup = await steps.lookup_driver(req.chat_id)
        if lookup.driver is None:
            return None  # left the whitelist meanwhile: the event is written, nothing to watch
        cal = paused.calendar
        return await workflow.execute_local_activity_method(
            OrderStarter.start_order_workflow,
            StartOrderWorkflowInput(
                order=OrderLifecycleInput(
                    driver=lookup.driver,
                    order_id=paused.order_id,
                    order=cal.order,
                    event_id=event.event_id,
                    original_text=cal.original_text,
                    source_message_id=paused.reply_to_message_id,
                    card_message_id=card_id,
                    html_link=event.html_link,
                    conflicts=event.conflicts,
                    language=cal.language,
                    reply_task_queue=paused.reply_task_queue,
                    touched_at=workflow.now(),
                ),
                task_queue=req.calendar_task_queue or workflow.info().task_queue,
            ),  # fmt: skip
            start_to_close_timeout=policies.START_WORKFLOW_TIMEOUT,
            retry_policy=policies.START_WORKFLOW_RETRY,
        )

    async def _resume(self, req: CalendarConnected, paused: PausedOrder) -> str:
        """Write one paused order with the new grant: "resumed", "failed" (told and kept) or "revoked"."""
        cal = paused.calendar
        lang = cal.language  # the order's own conversation language
        step = f"resume-{paused.order_id}"
        record = OrderRecord(
            tenant_id=req.tenant_id, order_id=paused.order_id, chat_id=req.chat_id,
            workflow_id=paused.workflow_id, status="awaiting_calendar", order=cal.order,
            calendar_id=cal.calendar_id, original_text=cal.original_text,
        )  # fmt: skip
        try:
            event: CalendarEvent = await workflow.execute_child_workflow(
                Calendar2AutoWorkflow.run,
                cal,
                # Its own id: the paused attempt's child (calendar-<order>) may still be in retention.
                id=f"{calendar_workflow_id(paused.order_id)}-{workflow.info().workflow_id}",
                task_queue=req.calendar_task_queue or workflow.info().task_queue,
                priority=Priority(fairness_key=req.tenant_id),
                execution_timeout=policies.CALENDAR_GIVE_UP + timedelta(hours=1),
            )
        except ChildWorkflowError as err:
            kind, message = steps.error_type(err)
            self._record(req, f"{step}:calendar", "calendar_failed", outcome="error", order_id=paused.order_id,
                         error=kind, message=message)  # fmt: skip
            if kind == "CalendarGrantRevoked":
                await self._flush()
                return "revoked"
            key = {"CalendarNotFound": "calendar_not_found", "CalendarReadOnly": "calendar_read_only"}.get(
                kind, "calendar_failed"
            )
            await self._say(
                req, f"{step}:reply", texts.t(lang, key, calendar_id=cal.calendar_id, reason=kind or "error"),
                reply_to=paused.reply_to_message_id, task_queue=paused.reply_task_queue,
            )  # fmt: skip
            record.status = "calendar_failed"
            await self._flush(record)
            await self._release(req, paused.order_id, done=True)
            return "failed"
        record.status, record.event_id, record.html_link = "in_calendar", event.event_id, event.html_link
        self._record(
            req, f"{step}:calendar", "event_created" if event.created else "event_existed",
            order_id=paused.order_id, event_id=event.event_id, calendar_id=cal.calendar_id, resumed=True,
        )  # fmt: skip
        if workflow.patched("resumed-order-lifecycle"):
            # The same card and order workflow (buttons, changes, reminder) as an order written at once.
            card = texts.order_card(
                cal.order, cal.time_zone, lang, event.html_link, conflicts=event.conflicts
            )
            buttons = texts.card_buttons(paused.order_id, lang, "in_calendar")
        else:
            card = texts.confirmation(cal.order, cal.time_zone, lang, event.html_link)
            buttons = [
                [{"text": texts.t(lang, "cancel_button"), "callback_data": f"cancel:{paused.order_id}"}]
            ]
        card_id = await self._say(
            req, f"{step}:reply", card, reply_to=paused.reply_to_message_id, buttons=buttons,
            task_queue=paused.reply_task_queue,
        )  # fmt: skip
        if workflow.patched("resumed-order-lifecycle"):
            record.card_message_id = card_id
            record.source_message_id = paused.reply_to_message_id
            record.order_workflow_id = await self._start_order_workflow(req, paused, event, card_id)
        await self._flush(record)
        await self._release(req, paused.order_id, done=True)
        return "resumed"
