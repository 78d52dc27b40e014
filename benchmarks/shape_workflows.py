"""Candidate shapes of the order path, measured by `benchmarks.shapes` with the real activities.

Each shape does the same work for one order — whitelist lookup, parse, Calendar write, reply through
the outbox, audit and order rows — and differs only in how it is laid out in Temporal:

* `today`: a workflow per update, the Calendar write in a child workflow, the reply as a remote
  activity, and a per-order lifecycle workflow started afterwards (the production path's executions).
* `per-order`: a workflow per update, every step a local activity in its one workflow task.
* `per-chat`: one long-lived workflow per chat; each update is a signal (signal-with-start), its steps
  local activities; the order's reminder is a timer inside it.
* `chat+calendar`: a long-lived workflow per chat (lookup, parse) that signals a long-lived workflow
  per calendar (write, reply, rows).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.calendar import CalendarActivities
    from activities.parsing import ParseActivities
    from activities.store import StoreActivities
    from activities.telegram import TelegramActivities
    from schemas.audit import AuditEntry
    from schemas.calendar import CalendarEvent, CreateEventInput
    from schemas.driver import Driver, LookupDriverInput
    from schemas.order import ParsedOrder
    from schemas.store import FinishStepInput, OrderRecord, ParseOrderInput
    from schemas.telegram import SendReplyInput
    from workflows.ids import order_id_for

LOCAL = {"start_to_close_timeout": timedelta(seconds=30), "retry_policy": RetryPolicy(maximum_attempts=5)}


class ShapeOrder(BaseModel):
    chat_id: int
    message_id: int
    text: str
    received_at: datetime
    reply_task_queue: str | None = None


class CalendarWrite(BaseModel):
    driver: Driver
    order: ShapeOrder
    parsed: ParsedOrder
    order_id: str
    workflow_id: str


async def _read(order: ShapeOrder) -> tuple[Driver, ParsedOrder]:
    lookup = await workflow.execute_local_activity_method(
        StoreActivities.lookup_driver, LookupDriverInput(chat_id=order.chat_id), **LOCAL
    )
    driver = lookup.driver
    assert driver is not None
    parsed = await workflow.execute_local_activity_method(
        ParseActivities.parse_order,
        ParseOrderInput(text=order.text, now=order.received_at, tz=driver.time_zone),
        **LOCAL,
    )
    return driver, parsed


def _event_input(w: CalendarWrite) -> CreateEventInput:
    return CreateEventInput(
        calendar_id=w.driver.calendar_id, event_id=w.order_id, time_zone=w.driver.time_zone,
        order_id=w.order_id, tenant_id=w.driver.tenant_id, chat_id=w.driver.chat_id, order=w.parsed,
        original_text=w.order.text,
    )  # fmt: skip


async def _reply_and_rows(w: CalendarWrite, event: CalendarEvent, *, remote_reply: bool) -> None:
    reply = SendReplyInput(
        tenant_id=w.driver.tenant_id, workflow_id=w.workflow_id, step=f"reply-{w.order_id}",
        chat_id=w.driver.chat_id, text=f"✅ {w.parsed.pickup_address}", reply_to_message_id=w.order.message_id,
    )  # fmt: skip
    if remote_reply:
        await workflow.execute_activity_method(
            TelegramActivities.send_reply, reply, task_queue=w.order.reply_task_queue, **LOCAL
        )
    else:
        await workflow.execute_local_activity_method(TelegramActivities.send_reply, reply, **LOCAL)
    row = {"tenant_id": w.driver.tenant_id, "workflow_id": w.workflow_id, "chat_id": w.driver.chat_id}
    audit = [
        AuditEntry(**row, step=f"{step}-{w.order_id}", action=action, order_id=w.order_id)
        for step, action in (
            ("received", "update_received"),
            ("calendar", "event_created"),
            ("reply", "reply_sent"),
        )
    ]
    record = OrderRecord(
        tenant_id=w.driver.tenant_id, order_id=w.order_id, chat_id=w.driver.chat_id, workflow_id=w.workflow_id,
        status="in_calendar", order=w.parsed, calendar_id=w.driver.calendar_id, event_id=event.event_id,
    )  # fmt: skip
    await workflow.execute_local_activity_method(
        StoreActivities.finish_step, FinishStepInput(audit=audit, order=record), **LOCAL
    )


def _write(driver: Driver, order: ShapeOrder, parsed: ParsedOrder) -> CalendarWrite:
    order_id = order_id_for(driver.tenant_id, driver.chat_id, order.message_id)
    return CalendarWrite(
        driver=driver, order=order, parsed=parsed, order_id=order_id, workflow_id=workflow.info().workflow_id
    )


@workflow.defn(name="ShapeCalendarChild")
class ShapeCalendarChild:
    @workflow.run
    async def run(self, w: CalendarWrite) -> CalendarEvent:
        return await workflow.execute_local_activity_method(
            CalendarActivities.create_event, _event_input(w), **LOCAL
        )


@workflow.defn(name="ShapeOrderLife")
class ShapeOrderLife:
    """Stands in for the order's lifecycle workflow: waits for the reminder, then for the order's end."""

    @workflow.run
    async def run(self, order_id: str) -> None:
        await workflow.sleep(timedelta(hours=6))


@workflow.defn(name="ShapeToday")
class ShapeToday:
    @workflow.run
    async def run(self, order: ShapeOrder) -> None:
        driver, parsed = await _read(order)
        w = _write(driver, order, parsed)
        event = await workflow.execute_child_workflow(ShapeCalendarChild.run, w, id=f"calendar-{w.order_id}")
        await _reply_and_rows(w, event, remote_reply=True)
        await workflow.start_child_workflow(
            ShapeOrderLife.run,
            w.order_id,
            id=f"life-{w.order_id}",
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
        )


@workflow.defn(name="ShapePerOrder")
class ShapePerOrder:
    @workflow.run
    async def run(self, order: ShapeOrder) -> None:
        driver, parsed = await _read(order)
        w = _write(driver, order, parsed)
        event = await workflow.execute_local_activity_method(
            CalendarActivities.create_event, _event_input(w), **LOCAL
        )
        await _reply_and_rows(w, event, remote_reply=False)


class _Inbox:
    """A long-lived workflow's queue of signalled orders, handled one at a time, in arrival order."""

    def __init__(self) -> None:
        self.pending: list[ShapeOrder | CalendarWrite] = []
        self.reminders: dict[str, datetime] = {}

    async def serve(self, handle) -> None:  # type: ignore[no-untyped-def]
        handled = 0
        while True:
            wake = min(self.reminders.values(), default=None)
            timeout = (wake - workflow.now()) if wake else None
            try:
                await workflow.wait_condition(lambda: bool(self.pending), timeout=timeout)
            except TimeoutError:
                now = workflow.now()
                self.reminders = {k: v for k, v in self.reminders.items() if v > now}
                continue
            while self.pending:
                await handle(self.pending.pop(0))
                handled += 1
            if handled >= 500 or workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(args=[])


@workflow.defn(name="ShapePerChat")
class ShapePerChat:
    def __init__(self) -> None:
        self.inbox = _Inbox()

    @workflow.signal
    def order(self, order: ShapeOrder) -> None:
        self.inbox.pending.append(order)

    @workflow.run
    async def run(self) -> None:
        await self.inbox.serve(self._handle)

    async def _handle(self, order: ShapeOrder) -> None:  # type: ignore[override]
        driver, parsed = await _read(order)
        w = _write(driver, order, parsed)
        event = await workflow.execute_local_activity_method(
            CalendarActivities.create_event, _event_input(w), **LOCAL
        )
        await _reply_and_rows(w, event, remote_reply=False)
        if parsed.pickup_at is not None:
            self.inbox.reminders[w.order_id] = parsed.pickup_at - timedelta(minutes=30)


@workflow.defn(name="ShapeChatOfCalendar")
class ShapeChatOfCalendar:
    """The chat's long-lived workflow of `chat+calendar`: reads the order, hands it to the calendar's."""

    def __init__(self) -> None:
        self.inbox = _Inbox()

    @workflow.signal
    def order(self, order: ShapeOrder) -> None:
        self.inbox.pending.append(order)

    @workflow.run
    async def run(self) -> None:
        await self.inbox.serve(self._handle)

    async def _handle(self, order: ShapeOrder) -> None:  # type: ignore[override]
        driver, parsed = await _read(order)
        w = _write(driver, order, parsed)
        # The calendar's workflow is started by the harness for each driver before the run.
        await workflow.get_external_workflow_handle(f"shape-calendar-{driver.calendar_id}").signal(
            ShapeCalendar.write, w
        )


@workflow.defn(name="ShapeCalendar")
class ShapeCalendar:
    def __init__(self) -> None:
        self.inbox = _Inbox()

    @workflow.signal
    def write(self, w: CalendarWrite) -> None:
        self.inbox.pending.append(w)

    @workflow.run
    async def run(self) -> None:
        await self.inbox.serve(self._handle)

    async def _handle(self, w: CalendarWrite) -> None:  # type: ignore[override]
        event = await workflow.execute_local_activity_method(
            CalendarActivities.create_event, _event_input(w), **LOCAL
        )
        await _reply_and_rows(w, event, remote_reply=False)
        if w.parsed.pickup_at is not None:
            self.inbox.reminders[w.order_id] = w.parsed.pickup_at - timedelta(minutes=30)


SHAPE_WORKFLOWS = (
    ShapeCalendarChild, ShapeOrderLife, ShapeToday, ShapePerOrder, ShapePerChat, ShapeChatOfCalendar, ShapeCalendar,
)  # fmt: skip
