"""The retention Schedule: RetentionWorkflow once a day, on the shared worker's queue."""

from __future__ import annotations

import logging

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
from temporalio.service import RPCError

from schemas.retention import RetentionInput
from workflows.retention import RETENTION_EVERY, RETENTION_SCHEDULE_ID, RetentionWorkflow

log = logging.getLogger(__name__)


async def start_retention_schedule(client: Client, task_queue: str) -> None:
    """Create the Schedule, or point it at this deployment's queue. Never fails the caller: the next
    start catches up (and nothing is urgent about a day's retention)."""
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            RetentionWorkflow.run, RetentionInput(), id="retention-run", task_queue=task_queue
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=RETENTION_EVERY)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        try:
            await client.create_schedule(RETENTION_SCHEDULE_ID, schedule)
        except ScheduleAlreadyRunningError:
            await client.get_schedule_handle(RETENTION_SCHEDULE_ID).update(
                lambda _: ScheduleUpdate(schedule=schedule)
            )
    except RPCError as exc:
        log.warning("retention schedule not started: %s", exc)
