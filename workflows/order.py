"""OrderWorkflow: one order's life after it was written, until a few hours after its pickup.

It owns the order's card (✅ / ✏️ / ❌, edited in place), every change (an edited message, a reply to
the card, "перенос на 10:30", a field sent after ✏️), the cancellation, and the reminder before the
pickup. Its timers and state live in Temporal: a worker or server restart loses nothing, and a button
pressed after a restart reaches the same workflow (MainWorkflow signals it by the order's id).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import Priority
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.calendar import CalendarActivities
    from activities.parsing import ParseActivities
    from activities.store import StoreActivities
    from activities.telegram import TelegramActivities
    from autodispatch import texts
    from schemas.audit import AuditEntry
    from schemas.calendar import CalendarEvent, CancelEventInput, ConflictWindow, UpdateEventInput
    from schemas.driver import DriverSettings
    from schemas.lifecycle import OrderAction, OrderLifecycleInput, OrderState, order_workflow_id
    from schemas.order import ORDER_DETAIL_FIELDS, ParsedOrder
    from schemas.store import OrderRecord, ParseOrderInput, QuestionInput
    from schemas.telegram import AnswerCallbackInput, DriverAnswer, EditCardInput, SendReplyInput
    from workflows import policies, steps

# Fields a change may set; the rest (is_order, ambiguous, ...) belong to the parse.
CHANGEABLE_FIELDS = ORDER_DETAIL_FIELDS


def conflict_window(s: DriverSettings) -> ConflictWindow:
    """The buffer on both sides of an order, plus the driver's travel time before it."""
    return ConflictWindow(before_minutes=s.buffer_minutes + s.travel_minutes, after_minutes=s.buffer_minutes)


def merge_change(old: ParsedOrder, new: ParsedOrder, *, replace_day: bool) -> ParsedOrder:
    """The order with what a change names. A time without a day ("на 10:30") keeps the order's day."""
    update: dict[str, Any] = {f: getattr(new, f) for f in CHANGEABLE_FIELDS if getattr(new, f) is not None}
    if new.pickup_at is not None and old.pickup_at is not None and not (replace_day or new.date_stated):
        day = old.pickup_at.astimezone(new.pickup_at.tzinfo)
        update["pickup_at"] = new.pickup_at.replace(year=day.year, month=day.month, day=day.day)
    if "price_amount" in update and new.price_currency is None:
        update.pop("price_currency", None)
    return old.model_copy(update=update)


def changed_fields(old: ParsedOrder, new: ParsedOrder) -> list[str]:
    return [f for f in CHANGEABLE_FIELDS if getattr(old, f) != getattr(new, f)]


@workflow.defn(name="OrderWorkflow")
class OrderWorkflow:
    def __init__(self) -> None:
        self._inbox: list[OrderAction | DriverAnswer] = []
        self._s: OrderLifecycleInput | None = None
        self._editing: str | None = None
        self._editing_until: datetime | None = None
        self._audit: list[AuditEntry] = []
        self._flushed = 0

    @workflow.signal(name="order_action")
    def order_action(self, action: OrderAction) -> None:
        self._inbox.append(action)

    @workflow.signal(name="driver_answer")
    def driver_answer(self, answer: DriverAnswer) -> None:
        # The chat's next message after ✏️ → a field (MainWorkflow forwards it, like any question's answer).
        self._inbox.append(answer)

    @workflow.query(name="order_state")
    def order_state(self) -> OrderState:
        s = self._state
        return OrderState(
            order_id=s.order_id, status=s.status, pickup_at=s.order.pickup_at, reminder_at=self._reminder_at(),
            reminded_for=s.reminded_for, editing_field=self._editing, conflicts=s.conflicts, steps=s.steps,
        )  # fmt: skip

    @property
    def _state(self) -> OrderLifecycleInput:
        assert self._s is not None
        return self._s

    # -- the loop ----------------------------------------------------------------------
    @workflow.run
    async def run(self, req: OrderLifecycleInput) -> str:
        self._s = req
        if req.touched_at is None:
            req.touched_at = workflow.now()
        while True:
            s = self._state
            if s.status == "cancelled":
                await self._flush()
                return "cancelled"
            wake = min(t for t in (self._reminder_at(), self._editing_until, self._end_at()) if t is not None)
            wait = wake - workflow.now()
            if wait > timedelta(0) and not self._inbox:
                try:
                    await workflow.wait_condition(lambda: bool(self._inbox), timeout=wait)
                except TimeoutError:
                    pass
            while self._inbox and self._state.status != "cancelled":
                await self._handle(self._inbox.pop(0))
            now = workflow.now()
            if self._editing_until is not None and now >= self._editing_until and self._editing:
                await self._stop_editing("edit_expired")
            reminder_at = self._reminder_at()
            if reminder_at is not None and now >= reminder_at:
                await self._remind()
            await self._flush()
            if now >= self._end_at() and not self._inbox and self._editing is None:
                return s.status
            if workflow.info().is_continue_as_new_suggested() and self._editing is None:
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._state)

    def _end_at(self) -> datetime:
        s = self._state
        base = s.order.pickup_at or (s.touched_at or workflow.now())
        return base + policies.ORDER_WATCH_AFTER

    def _reminder_at(self) -> datetime | None:
        s = self._state
        lead = s.driver.settings.reminder_lead_minutes
        at = s.order.pickup_at
        if s.status == "cancelled" or lead <= 0 or at is None or s.reminded_for == at:
            return None
        when = at - timedelta(minutes=lead)
        # A reminder the driver would get right after touching the order tells them nothing new.
        if s.touched_at is not None and when < s.touched_at:
            return None
        return when

    # -- actions -----------------------------------------------------------------------
    async def _handle(self, item: OrderAction | DriverAnswer) -> None:
        s = self._state
        s.steps += 1
        if isinstance(item, DriverAnswer):
            await self._on_field_answer(item)
            return
        if item.action == "confirm":
            await self._confirm(item)
        elif item.action == "cancel":
            await self._cancel(item)
        elif item.action in ("edit", "back"):
            await self._answer(item, "")
            await self._edit_card(choosing_field=item.action == "edit")
            self._record("card", "edit_menu" if item.action == "edit" else "edit_menu_closed", item)
        elif item.action == "field" and item.field:
            await self._start_editing(item)
        elif item.action == "change" and item.order is not None:
            replace_day = item.source == "message_edit"
            await self._apply_change(merge_change(s.order, item.order, replace_day=replace_day), item)
        else:
            await self._answer(item, texts.t(s.language, "unknown_button"))

    async def _confirm(self, item: OrderAction) -> None:
        s = self._state
        if s.status != "confirmed":
            s.status = "confirmed"
            await self._save()
            await self._edit_card()
        await self._answer(item, texts.t(s.language, "order_confirmed"))
        self._record("confirm", "order_confirmed", item)

    async def _cancel(self, item: OrderAction) -> None:
        s = self._state
        try:
            removed = await workflow.execute_activity_method(
                CalendarActivities.cancel_event,
                CancelEventInput(
                    calendar_id=s.driver.calendar_id,
                    event_id=s.event_id,
                    tenant_id=s.driver.tenant_id,
                    chat_id=s.driver.chat_id,
                ),  # fmt: skip
                task_queue=s.driver.task_queue or workflow.info().task_queue,
                start_to_close_timeout=policies.CALENDAR_TIMEOUT,
                schedule_to_close_timeout=policies.CALENDAR_GIVE_UP,
                retry_policy=policies.CALENDAR_RETRY,
                priority=Priority(fairness_key=s.driver.tenant_id),
            )
        except ActivityError as err:
            kind = steps.error_type(err)[0]
            await self._answer(
                item, texts.t(s.language, "calendar_failed", reason=kind or "error"), alert=True
            )
            self._record("cancel", "cancel_failed", item, outcome="error", error=kind)
            return
        s.status = "cancelled"
        if self._editing:
            await self._set_question(False)
            self._editing = self._editing_until = None
        await self._save()
        await self._edit_card()
        await self._answer(item, texts.t(s.language, "order_cancelled"))
        if item.source != "button":
            what = texts.short_order(s.order, s.driver.time_zone)
            await self._send(
                item.message_id, "cancelled", texts.t(s.language, "order_cancelled_reply", what=what)
            )
        self._record("cancel", "order_cancelled", item, event_id=s.event_id, was_there=removed)

    async def _start_editing(self, item: OrderAction) -> None:
        s = self._state
        assert item.field is not None
        self._editing = item.field
        self._editing_until = workflow.now() + policies.FIELD_ANSWER_WAIT
        await self._set_question(True)
        await self._answer(item, "")
        label = texts.t(s.language, f"field_{item.field}")
        await self._send(s.card_message_id, "ask", texts.t(s.language, "ask_field", field=label))
        self._record("edit", "field_asked", item, field=item.field)

    async def _on_field_answer(self, answer: DriverAnswer) -> None:
        s = self._state
        field = self._editing
        if field is None:  # the edit had already ended: say so rather than drop the message silently
            await self._send(answer.message_id, "late-answer", texts.t(s.language, "edit_expired"))
            self._record("edit", "late_answer", OrderAction(action="change", text=answer.text[:256]))
            return
        source = OrderAction(
            action="change", source="field_answer", text=answer.text, message_id=answer.message_id
        )
        if texts.is_cancel(answer.text):
            await self._stop_editing("edit_dropped", reply_to=answer.message_id)
            self._record("edit", "edit_dropped", source, field=field)
            return
        value = await self._field_value(field, answer.text)
        if value is None:
            label = texts.t(s.language, f"field_{field}")
            await self._send(
                answer.message_id, "not-understood", texts.t(s.language, "field_not_understood", field=label)
            )
            self._record("edit", "field_not_understood", source, field=field, text=answer.text[:256])
            return
        await self._stop_editing(None)
        await self._apply_change(merge_change(s.order, value, replace_day=False), source)

    async def _field_value(self, field: str, text: str) -> ParsedOrder | None:
        """The answer to "send the new <field>" as a partial order, or None if it does not read as one."""
        s = self._state
        value = text.strip()
        if field in ("pickup_at", "price_amount", "client_phone", "flight_number"):
            parsed: ParsedOrder = await workflow.execute_local_activity_method(
                ParseActivities.parse_order,
                ParseOrderInput(
                    text=value,
                    now=workflow.now(),
                    tz=s.driver.time_zone,
                    region=s.driver.region,
                    currency=s.driver.currency,
                    mode="fields",
                ),  # fmt: skip
                start_to_close_timeout=policies.PARSE_TIMEOUT,
                retry_policy=policies.PARSE_RETRY,
            )
            if field == "pickup_at" and parsed.pickup_at is not None:
                return ParsedOrder(pickup_at=parsed.pickup_at, date_stated=parsed.date_stated)
            if field == "price_amount" and parsed.price_amount is not None:
                return ParsedOrder(price_amount=parsed.price_amount, price_currency=parsed.price_currency)
            if field == "client_phone" and parsed.client_phone:
                return ParsedOrder(client_phone=parsed.client_phone)
            if field == "flight_number":
                return ParsedOrder(flight_number=parsed.flight_number or value.upper()) if value else None
            return None
        return ParsedOrder(**{field: value}) if value else None

    async def _stop_editing(self, say: str | None, reply_to: int | None = None) -> None:
        s = self._state
        self._editing = self._editing_until = None
        await self._set_question(False)
        await self._edit_card()
        if say:
            await self._send(reply_to or s.card_message_id, say, texts.t(s.language, say))

    async def _apply_change(self, new: ParsedOrder, item: OrderAction) -> None:
        s = self._state
        fields = changed_fields(s.order, new)
        if not fields:
            if item.source != "message_edit":  # a resent or repeated order: say it is already there
                what = texts.short_order(s.order, s.driver.time_zone)
                await self._send(
                    item.message_id, "unchanged", texts.t(s.language, "order_unchanged", what=what)
                )
            self._record("change", "change_without_effect", item, source=item.source)
            return
        try:
            event: CalendarEvent = await workflow.execute_activity_method(
                CalendarActivities.update_event,
                UpdateEventInput(
                    calendar_id=s.driver.calendar_id,
                    event_id=s.event_id,
                    time_zone=s.driver.time_zone,
                    order_id=s.order_id,
                    tenant_id=s.driver.tenant_id,
                    chat_id=s.driver.chat_id,
                    order=new,
                    original_text=s.original_text if item.source != "message_edit" else item.text,
                    duration_minutes=s.driver.settings.event_duration_minutes,
                    language=s.language,
                    conflict_window=conflict_window(s.driver.settings),
                ),  # fmt: skip
                task_queue=s.driver.task_queue or workflow.info().task_queue,
                start_to_close_timeout=policies.CALENDAR_TIMEOUT,
                schedule_to_close_timeout=policies.CALENDAR_GIVE_UP,
                retry_policy=policies.CALENDAR_RETRY,
                priority=Priority(fairness_key=s.driver.tenant_id),
            )
        except ActivityError as err:
            kind = steps.error_type(err)[0]
            reason = texts.t(s.language, "calendar_failed", reason=kind or "error")
            await self._send(item.message_id or s.card_message_id, "change-failed", reason)
            self._record("change", "change_failed", item, outcome="error", error=kind, fields=fields)
            return
        before = s.order
        s.order, s.conflicts, s.changed = new, event.conflicts, True
        s.html_link = event.html_link or s.html_link
        if item.source == "message_edit":
            s.original_text = item.text
        s.touched_at = workflow.now()
        if s.reminded_for is not None and s.reminded_for != new.pickup_at:
            s.reminded_for = None  # moved: the reminder goes out again for the new time
        await self._save()
        await self._edit_card()
        if item.source != "message_edit":  # an edited message's card changes in place; that says it all
            what = texts.short_order(new, s.driver.time_zone)
            await self._send(item.message_id, "changed", texts.t(s.language, "order_changed", what=what))
        self._record(
            "change", "order_changed", item, source=item.source, fields=fields,
            before={f: _plain(getattr(before, f)) for f in fields},
            after={f: _plain(getattr(new, f)) for f in fields},
            conflicts=[c.event_id for c in event.conflicts],
        )  # fmt: skip

    async def _remind(self) -> None:
        s = self._state
        at = s.order.pickup_at
        assert at is not None
        s.reminded_for = at
        lead = s.driver.settings.reminder_lead_minutes
        text = texts.reminder(s.order, s.driver.time_zone, s.language, lead)
        # One outbox step per pickup moment: a replayed or retried reminder for the same time is sent once.
        await self._send(s.card_message_id, f"reminder-{at.isoformat()}", text, numbered=False)
        self._audit.append(
            self._entry(f"reminder-{at.isoformat()}", "reminder_sent", pickup_at=at.isoformat())
        )

    # -- outside world -----------------------------------------------------------------
    async def _save(self) -> None:
        s = self._state
        await steps.write_audit(
            self._take_audit(),
            OrderRecord(
                tenant_id=s.driver.tenant_id,
                order_id=s.order_id,
                chat_id=s.driver.chat_id,
                workflow_id=workflow.info().workflow_id,
                status=s.status,
                order=s.order,
                calendar_id=s.driver.calendar_id,
                event_id=s.event_id,
                html_link=s.html_link,
                original_text=s.original_text,
                source_message_id=s.source_message_id,
                order_index=s.order_index,
                card_message_id=s.card_message_id,
                order_workflow_id=order_workflow_id(s.order_id),
            ),
        )

    async def _flush(self) -> None:
        rows = self._take_audit()
        if rows:
            await steps.write_audit(rows)

    def _take_audit(self) -> list[AuditEntry]:
        rows = self._audit[self._flushed :]
        self._flushed = len(self._audit)
        return rows

    async def _set_question(self, open_: bool) -> None:
        s = self._state
        await workflow.execute_local_activity_method(
            StoreActivities.set_open_question,
            QuestionInput(
                tenant_id=s.driver.tenant_id,
                chat_id=s.driver.chat_id,
                workflow_id=workflow.info().workflow_id,
                open=open_,
            ),  # fmt: skip
            start_to_close_timeout=policies.DB_TIMEOUT,
            retry_policy=policies.DB_RETRY,
        )

    async def _edit_card(self, choosing_field: bool = False) -> None:
        s = self._state
        if s.card_message_id is None:
            return
        text = texts.order_card(
            s.order, s.driver.time_zone, s.language, s.html_link, status=s.status, conflicts=s.conflicts,
            changed=s.changed,
        )  # fmt: skip
        try:
            await workflow.execute_activity_method(
                TelegramActivities.edit_card,
                EditCardInput(
                    chat_id=s.driver.chat_id,
                    message_id=s.card_message_id,
                    text=text,
                    buttons=texts.card_buttons(s.order_id, s.language, s.status, choosing_field),
                ),  # fmt: skip
                task_queue=s.reply_task_queue or workflow.info().task_queue,
                start_to_close_timeout=policies.TELEGRAM_TIMEOUT,
                schedule_to_close_timeout=policies.TELEGRAM_GIVE_UP,
                retry_policy=policies.TELEGRAM_RETRY,
                priority=Priority(fairness_key=s.driver.tenant_id),
            )
        except ActivityError as err:
            self._audit.append(self._entry(f"{s.steps}:card:failed", "card_edit_failed", outcome="error",
                                           error=steps.error_type(err)[0]))  # fmt: skip

    async def _send(self, reply_to: int | None, step: str, text: str, numbered: bool = True) -> None:
        s = self._state
        step = f"{s.steps}:{step}" if numbered else step
        try:
            await steps.send_reply(
                SendReplyInput(
                    tenant_id=s.driver.tenant_id,
                    workflow_id=workflow.info().workflow_id,
                    step=step,
                    chat_id=s.driver.chat_id,
                    text=text,
                    reply_to_message_id=reply_to,
                ),  # fmt: skip
                s.reply_task_queue or workflow.info().task_queue,
            )
        except ActivityError as err:
            self._audit.append(
                self._entry(f"{step}:failed", "reply_failed", outcome="error", error=steps.error_type(err)[0])
            )

    async def _answer(self, item: OrderAction, text: str, alert: bool = False) -> None:
        s = self._state
        if not item.callback_query_id:
            return
        try:
            await workflow.execute_activity_method(
                TelegramActivities.answer_callback,
                AnswerCallbackInput(callback_query_id=item.callback_query_id, text=text, show_alert=alert),
                task_queue=s.reply_task_queue or workflow.info().task_queue,
                start_to_close_timeout=policies.TELEGRAM_TIMEOUT,
                schedule_to_close_timeout=policies.CALLBACK_GIVE_UP,
                retry_policy=policies.TELEGRAM_RETRY,
            )
        except ActivityError as err:
            self._audit.append(
                self._entry(f"{s.steps}:answer:failed", "callback_answer_failed", outcome="error",
                            error=steps.error_type(err)[0])
            )  # fmt: skip

    # -- audit -------------------------------------------------------------------------
    def _entry(self, step: str, action: str, outcome: str = "ok", **details: Any) -> AuditEntry:
        s = self._state
        return AuditEntry(
            tenant_id=s.driver.tenant_id, workflow_id=workflow.info().workflow_id, step=step, action=action,
            chat_id=s.driver.chat_id, order_id=s.order_id, outcome=outcome, details=details,
        )  # fmt: skip

    def _record(self, step: str, action: str, item: OrderAction, outcome: str = "ok", **details: Any) -> None:
        details.setdefault("by", item.update_workflow_id or item.source)
        self._audit.append(self._entry(f"{self._state.steps}:{step}", action, outcome, **details))


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
