"""CALENDAR 2 AUTO: write one order into one driver's calendar. The calendar id is its argument."""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import Priority

with workflow.unsafe.imports_passed_through():
    from activities.calendar import CalendarActivities
    from schemas.calendar import Calendar2AutoInput, CalendarEvent, CreateEventInput
    from workflows.policies import CALENDAR_GIVE_UP, CALENDAR_RETRY, CALENDAR_TIMEOUT


@workflow.defn(name="Calendar2AutoWorkflow")
class Calendar2AutoWorkflow:
    @workflow.run
    async def run(self, req: Calendar2AutoInput) -> CalendarEvent:
        write = CreateEventInput(
            calendar_id=req.calendar_id,
            # The order id is already in Google's base32hex alphabet: it is the event id.
            event_id=req.order_id,
            time_zone=req.time_zone,
            order_id=req.order_id,
            tenant_id=req.tenant_id,
            chat_id=req.chat_id,
            order=req.order,
            original_text=req.original_text,
            duration_minutes=req.duration_minutes,
            language=req.language,
            conflict_window=req.conflict_window,
        )
        # Retried with the same policy for as long either way (local activities back off on timers past
        # the first minute), so a Google outage still loses nothing.
        retried = {
            "summary": f"event {req.order_id} in {req.calendar_id}",
            "start_to_close_timeout": CALENDAR_TIMEOUT,
            "schedule_to_close_timeout": CALENDAR_GIVE_UP,
            "retry_policy": CALENDAR_RETRY,
        }
        if req.local_write:
            return await workflow.execute_local_activity_method(
                CalendarActivities.create_event, write, **retried
            )
        return await workflow.execute_activity_method(
            CalendarActivities.create_event,
            write,
            priority=Priority(fairness_key=req.tenant_id),
            **retried,
        )
