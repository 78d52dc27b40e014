"""The driver's day (#5) on the worker: the agenda and settings flows, their activities, and the
reconciler's Schedule that keeps every driver's morning agenda in line with the whitelist."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import asyncpg
from aiogram import Bot
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

from activities.access import AccessNoticeActivities
from activities.agenda import AgendaActivities
from activities.calendar import CalendarService
from activities.driver_settings import SettingsActivities
from activities.schedules import ScheduleActivities
from autodispatch.settings import Settings
from schemas.agenda import ReconcileInput
from schemas.telegram import outbound_task_queue
from workflows.agenda import (
    RECONCILE_EVERY,
    RECONCILE_SCHEDULE_ID,
    AgendaReconcileWorkflow,
    AgendaSyncWorkflow,
    AgendaWorkflow,
)
from workflows.driver_access import DriverApprovedWorkflow
from workflows.driver_settings import SettingsWorkflow

log = logging.getLogger(__name__)

DAY_WORKFLOWS: Sequence[type] = (
    AgendaWorkflow,
    SettingsWorkflow,
    AgendaSyncWorkflow,
    AgendaReconcileWorkflow,
    DriverApprovedWorkflow,
)


def day_activities(
    client: Client, pool: asyncpg.Pool, bot: Bot, calendar: CalendarService, settings: Settings
) -> list:
    agenda = AgendaActivities(calendar)
    schedules = ScheduleActivities(
        client, pool, settings.temporal_task_queue, reply_task_queue=outbound_task_queue(bot.id)
    )
    driver_settings = SettingsActivities(pool)
    access = AccessNoticeActivities(
        client, pool, settings.temporal_task_queue, reply_task_queue=outbound_task_queue(bot.id)
    )
    return [
        access.start_access_notices,
        access.clear_access_notice,
        agenda.list_agenda_events,
        schedules.sync_agenda_schedule,
        schedules.agenda_drivers_out_of_sync,
        driver_settings.save_driver_settings,
    ]


async def start_agenda_reconciler(client: Client, task_queue: str) -> None:
    """The reconciler's Schedule (every few minutes) and one run now, so a driver added while no worker
    ran gets a morning agenda at once. Never fails the caller: the next start or run catches up."""
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            AgendaReconcileWorkflow.run, ReconcileInput(), id="agenda-reconcile-run", task_queue=task_queue
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=RECONCILE_EVERY)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        try:
            await client.create_schedule(RECONCILE_SCHEDULE_ID, schedule)
        except ScheduleAlreadyRunningError:
            # Every worker start makes it point at the running deployment's queue.
            await client.get_schedule_handle(RECONCILE_SCHEDULE_ID).update(
                lambda _: ScheduleUpdate(schedule=schedule)
            )
        # Syncing is idempotent: a run left over from a previous start is simply replaced.
        await client.start_workflow(
            AgendaReconcileWorkflow.run,
            ReconcileInput(),
            id="agenda-reconcile-start",
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,
        )
    except RPCError as exc:
        log.warning("agenda reconciler not started: %s", exc)
