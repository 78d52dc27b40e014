"""The driver's agenda: /today, /tomorrow, /week (a child of MainWorkflow) and the morning agenda (started
by the driver's Temporal Schedule). Plus the flows that keep those Schedules in line with the whitelist."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import ActivityError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.access import AccessNoticeActivities
    from activities.agenda import AgendaActivities
    from activities.schedules import ScheduleActivities
    from autodispatch import texts
    from schemas.access import StartAccessNoticesInput
    from schemas.agenda import (
        AGENDA_RANGES,
        AgendaInput,
        AgendaItem,
        AgendaResult,
        ListEventsInput,
        ReconcileInput,
        ReconcileResult,
        SyncAgendaInput,
        SyncAgendaResult,
        day_window,
    )
    from schemas.audit import AuditEntry
    from schemas.telegram import SendReplyInput
    from workflows import policies, steps

# A driver asking for /today waits for the answer: a calendar that does not answer within minutes gets
# "try later", not a reply hours afterwards. The morning agenda may wait longer, but not past the morning.
AGENDA_CALENDAR_GIVE_UP = {"morning": timedelta(hours=1)}
AGENDA_CALENDAR_GIVE_UP_DEFAULT = timedelta(minutes=3)
# Schedules live in Temporal itself: if this activity runs, the server is up; retry briefly.
SCHEDULE_TIMEOUT = timedelta(seconds=30)
SCHEDULE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=30)
)
SCHEDULE_GIVE_UP = timedelta(minutes=10)
# The reconciler's own Schedule: drivers changed outside a workflow (CLI, API, SQL) get theirs within this.
RECONCILE_EVERY = timedelta(minutes=10)
RECONCILE_SCHEDULE_ID = "agenda-reconcile"


async def start_access_notices(req: StartAccessNoticesInput) -> int:
    """Start DriverApprovedWorkflow for each pending "access open" message (all, or one driver's)."""
    return await workflow.execute_activity_method(
        AccessNoticeActivities.start_access_notices,
        req,
        start_to_close_timeout=SCHEDULE_TIMEOUT,
        schedule_to_close_timeout=SCHEDULE_GIVE_UP,
        retry_policy=SCHEDULE_RETRY,
    )


async def sync_schedule(tenant_id: str, chat_id: int, task_queue: str | None = None) -> SyncAgendaResult:
    """Run from a workflow: make the driver's agenda Schedule match their row (settings just saved)."""
    return await workflow.execute_activity_method(
        ScheduleActivities.sync_agenda_schedule,
        SyncAgendaInput(tenant_id=tenant_id, chat_id=chat_id),
        task_queue=task_queue,
        start_to_close_timeout=SCHEDULE_TIMEOUT,
        schedule_to_close_timeout=SCHEDULE_GIVE_UP,
        retry_policy=SCHEDULE_RETRY,
        priority=Priority(fairness_key=tenant_id),
    )


@workflow.defn(name="AgendaWorkflow")
class AgendaWorkflow:
    def __init__(self) -> None:
        self._audit: list[AuditEntry] = []

    def _record(self, req: AgendaInput, step: str, action: str, outcome: str = "ok", **details: Any) -> None:
        self._audit.append(
            AuditEntry(
                tenant_id=req.tenant_id, workflow_id=workflow.info().workflow_id, step=step, action=action,
                chat_id=req.chat_id, outcome=outcome, details=details,
            )
        )  # fmt: skip

    async def _finish(self, req: AgendaInput, result: AgendaResult) -> AgendaResult:
        self._record(req, "outcome", f"agenda_{result.outcome}", kind=req.kind, items=result.items)
        await steps.write_audit(self._audit)
        return result

    @workflow.run
    async def run(self, req: AgendaInput) -> AgendaResult:
        lookup = await steps.lookup_driver(req.chat_id)
        driver = lookup.driver
        # Re-read at run time: a driver disabled, removed or moved since the Schedule was synced gets
        # nothing, and neither does one who turned the morning agenda off.
        if driver is None or driver.tenant_id != req.tenant_id:
            return AgendaResult(outcome="skipped", reason="driver_gone")  # no tenant left to audit under
        if driver.status != "active":
            return await self._finish(req, AgendaResult(outcome="skipped", reason="driver_not_active"))
        if not driver.calendar_proven:  # nobody reads a calendar its driver has not proven theirs
            return await self._finish(req, AgendaResult(outcome="skipped", reason="calendar_unproven"))
        if req.kind == "morning" and not driver.settings.agenda_enabled:
            return await self._finish(req, AgendaResult(outcome="skipped", reason="agenda_off"))

        lang = driver.settings.language or req.language or "ru"
        first_offset, days = AGENDA_RANGES[req.kind]
        first_day, start, end = day_window(req.now or workflow.now(), driver.time_zone, first_offset, days)
        try:
            items: list[AgendaItem] = await workflow.execute_activity_method(
                AgendaActivities.list_agenda_events,
                ListEventsInput(
                    calendar_id=driver.calendar_id,
                    time_min=start,
                    time_max=end,
                    time_zone=driver.time_zone,
                    only_ours=driver.settings.agenda_scope == "ours",
                    tenant_id=driver.tenant_id,
                    chat_id=driver.chat_id,
                ),  # fmt: skip
                task_queue=driver.task_queue or workflow.info().task_queue,
                start_to_close_timeout=policies.CALENDAR_TIMEOUT,
                schedule_to_close_timeout=AGENDA_CALENDAR_GIVE_UP.get(
                    req.kind, AGENDA_CALENDAR_GIVE_UP_DEFAULT
                ),
                retry_policy=policies.CALENDAR_RETRY,
                priority=Priority(fairness_key=driver.tenant_id),
            )
        except ActivityError as err:
            kind, message = steps.error_type(err)
            self._record(
                req, "calendar", "agenda_calendar_failed", outcome="error", error=kind, message=message
            )
            text = texts.t(lang, "agenda_failed", reason=kind or "error")
            message_id = await self._send(req, text)
            return await self._finish(
                req, AgendaResult(outcome="calendar_failed", message_id=message_id, reason=kind or "error")
            )
        text = texts.agenda_text(
            items, lang=lang, kind=req.kind, time_zone=driver.time_zone, first_day=first_day, days=days
        )
        message_id = await self._send(req, text)
        return await self._finish(req, AgendaResult(outcome="sent", message_id=message_id, items=len(items)))

    async def _send(self, req: AgendaInput, text: str) -> int | None:
        try:
            sent = await steps.send_reply(
                SendReplyInput(
                    tenant_id=req.tenant_id,
                    workflow_id=workflow.info().workflow_id,
                    step="agenda",
                    chat_id=req.chat_id,
                    text=text,
                    reply_to_message_id=req.reply_to_message_id,
                ),  # fmt: skip
                # The bot's outbound queue, rate-limited by the server (Telegram's 30 messages/s).
                req.reply_task_queue,
            )
        except FailureError as err:
            kind, message = steps.error_type(err)
            self._record(req, "agenda:failed", "reply_failed", outcome="error", error=kind, message=message)
            return None
        self._record(req, "agenda", "reply_sent", message_id=sent.message_id, already_sent=sent.already_sent)
        return sent.message_id


@workflow.defn(name="AgendaSyncWorkflow")
class AgendaSyncWorkflow:
    """One driver's Schedule synced now: what the admin path (CLI) starts after changing a driver."""

    @workflow.run
    async def run(self, req: SyncAgendaInput) -> SyncAgendaResult:
        result = await sync_schedule(req.tenant_id, req.chat_id)
        if workflow.patched("access-notice"):
            # An approval's "access open" message goes out now rather than at the next reconcile.
            await start_access_notices(StartAccessNoticesInput(tenant_id=req.tenant_id, chat_id=req.chat_id))
        return result


@workflow.defn(name="AgendaReconcileWorkflow")
class AgendaReconcileWorkflow:
    """Every driver whose Schedule is missing or out of date (changed by any path) synced; run by its own
    Schedule every few minutes and at worker start."""

    @workflow.run
    async def run(self, req: ReconcileInput) -> ReconcileResult:
        todo: list[SyncAgendaInput] = await workflow.execute_activity_method(
            ScheduleActivities.agenda_drivers_out_of_sync,
            req,
            start_to_close_timeout=policies.DB_TIMEOUT,
            schedule_to_close_timeout=SCHEDULE_GIVE_UP,
            retry_policy=policies.DB_RETRY,
        )
        result = ReconcileResult()
        for item in todo:
            try:
                await sync_schedule(item.tenant_id, item.chat_id)
                result.synced += 1
            except ActivityError as err:  # one driver's failure does not stop the others
                workflow.logger.warning(
                    "agenda schedule of %s/%s not synced: %s", item.tenant_id, item.chat_id, err
                )
                result.failed += 1
        if workflow.patched("access-notice"):
            # Approvals whose message could not be started at the time (Temporal was unreachable).
            try:
                await start_access_notices(StartAccessNoticesInput())
            except ActivityError as err:
                workflow.logger.warning("access notices not started: %s", err)
        return result
