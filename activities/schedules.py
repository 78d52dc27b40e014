"""The morning agenda's Temporal Schedule per driver, kept in line with the whitelist row.

`sync_agenda_schedule` reads the driver at the moment it runs (so the last of several quick changes
wins), builds the Schedule the row calls for and creates or updates it: paused when the driver turned
the agenda off or is not active, deleted when the driver is gone. What it synced is recorded in
`agenda_schedules`, so the reconciler finds drivers changed by any path (CLI, API, onboarding, SQL).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import Priority, SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from autodispatch.db import system_tx
from schemas.agenda import (
    AgendaInput,
    ReconcileInput,
    SyncAgendaInput,
    SyncAgendaResult,
    agenda_run_id,
    agenda_schedule_id,
)
from schemas.driver import DriverSettings
from schemas.telegram import outbound_task_queue
from workflows.ids import CHAT_ID, TENANT_ID

log = logging.getLogger(__name__)

AGENDA_WORKFLOW = "AgendaWorkflow"
# A morning agenda that could not start on time (server or workers down) is still worth sending within
# this window; later the day has begun and the next one comes tomorrow.
CATCHUP_WINDOW = timedelta(hours=1)
RUN_TIMEOUT = timedelta(hours=3)


def desired_state(row: Any) -> dict[str, Any]:
    """What the driver's schedule depends on (compared with what was last synced)."""
    settings = DriverSettings.model_validate(row["settings"] or {})
    state = {
        "active": row["status"] == "active" and row["tenant_status"] == "active",
        "enabled": settings.agenda_enabled,
        "time": settings.agenda_time,
        "tz": row["time_zone"],
    }
    if row.get("own_bot") is not None:  # the fleet's own bot sends its agendas (docs/bots.md)
        state["bot"] = row["own_bot"]
    return state


# The fleet's own active bot, if it has one: the stack's messages to its drivers come from it.
OWN_BOT = """(SELECT b.bot_id FROM tenant_bots b WHERE b.tenant_id = d.tenant_id AND b.status = 'active'
              ORDER BY b.created_at, b.bot_id LIMIT 1) AS own_bot"""


def reply_queue(row: Any, default: str | None) -> str | None:
    own = row.get("own_bot")
    return outbound_task_queue(own) if own is not None else default


def agenda_schedule(
    tenant_id: str, chat_id: int, state: dict[str, Any], *, task_queue: str, reply_task_queue: str | None
) -> Schedule:
    """The Schedule for one driver: every day at the driver's local HH:MM in the driver's zone."""
    hour, minute = (int(x) for x in str(state["time"]).split(":"))
    on = bool(state["active"] and state["enabled"])
    return Schedule(
        action=ScheduleActionStartWorkflow(
            AGENDA_WORKFLOW,
            AgendaInput(
                tenant_id=tenant_id, chat_id=chat_id, kind="morning", reply_task_queue=reply_task_queue
            ),
            id=agenda_run_id(tenant_id, chat_id),
            task_queue=task_queue,
            execution_timeout=RUN_TIMEOUT,
            typed_search_attributes=TypedSearchAttributes(
                [SearchAttributePair(TENANT_ID, tenant_id), SearchAttributePair(CHAT_ID, str(chat_id))]
            ),
            priority=Priority(fairness_key=tenant_id),
        ),
        spec=ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(
                    hour=[ScheduleRange(hour)], minute=[ScheduleRange(minute)], comment="morning agenda"
                )
            ],
            # The server evaluates the calendar in this zone (DST included): 07:00 stays 07:00 local.
            time_zone_name=str(state["tz"]),
        ),
        # A slow run (Telegram backing off) must not be joined by the next day's.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=CATCHUP_WINDOW),
        state=ScheduleState(
            paused=not on,
            note=None if on else ("driver not active" if not state["active"] else "turned off by the driver"),
        ),
    )


async def sync_agenda(
    client: Client,
    pool: asyncpg.Pool,
    tenant_id: str,
    chat_id: int,
    *,
    default_task_queue: str,
    reply_task_queue: str | None,
) -> SyncAgendaResult:
    """Make the driver's Schedule match their whitelist row now. Idempotent."""
    schedule_id = agenda_schedule_id(tenant_id, chat_id)
    async with system_tx(pool) as conn:
        row = await conn.fetchrow(
            f"""SELECT d.status, d.time_zone, d.settings, t.status AS tenant_status, t.task_queue, {OWN_BOT}
                 FROM drivers d JOIN tenants t USING (tenant_id)
                WHERE d.tenant_id = $1 AND d.chat_id = $2""",
            tenant_id, chat_id,
        )  # fmt: skip
    handle = client.get_schedule_handle(schedule_id)
    if row is None:
        try:
            await handle.delete()
            action = "deleted"
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            action = "absent"
        async with system_tx(pool) as conn:
            await conn.execute(
                "DELETE FROM agenda_schedules WHERE tenant_id = $1 AND chat_id = $2", tenant_id, chat_id
            )
        return SyncAgendaResult(schedule_id=schedule_id, action=action)  # type: ignore[arg-type]

    state = desired_state(row)
    schedule = agenda_schedule(
        tenant_id, chat_id, state, task_queue=row["task_queue"] or default_task_queue,
        reply_task_queue=reply_queue(row, reply_task_queue),
    )  # fmt: skip

    def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
        return ScheduleUpdate(schedule=schedule)

    try:
        await handle.update(replace)
        action = "updated"
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        try:
            await client.create_schedule(schedule_id, schedule)
            action = "created"
        except ScheduleAlreadyRunningError:  # created concurrently (another sync): make it ours
            await handle.update(replace)
            action = "updated"
    async with system_tx(pool) as conn:
        await conn.execute(
            """INSERT INTO agenda_schedules (tenant_id, chat_id, schedule_id, synced) VALUES ($1, $2, $3, $4)
               ON CONFLICT (tenant_id, chat_id) DO UPDATE
               SET schedule_id = EXCLUDED.schedule_id, synced = EXCLUDED.synced, synced_at = now()""",
            tenant_id, chat_id, schedule_id, state,
        )  # fmt: skip
    return SyncAgendaResult(
        schedule_id=schedule_id, action=action, paused=bool(schedule.state.paused),  # type: ignore[arg-type]
        agenda_time=state["time"], time_zone=state["tz"],
    )  # fmt: skip


async def drivers_out_of_sync(pool: asyncpg.Pool, limit: int = 500) -> list[tuple[str, int]]:
    """Drivers whose schedule was never synced or was synced to another state, and schedules of drivers
    that are gone."""
    async with system_tx(pool) as conn:
        rows = await conn.fetch(
            f"""SELECT d.tenant_id, d.chat_id, d.status, d.time_zone, d.settings, t.status AS tenant_status,
                      a.synced, {OWN_BOT}
                 FROM drivers d JOIN tenants t USING (tenant_id)
                 LEFT JOIN agenda_schedules a USING (tenant_id, chat_id)"""
        )
        gone = await conn.fetch(
            """SELECT a.tenant_id, a.chat_id FROM agenda_schedules a
                WHERE NOT EXISTS (SELECT 1 FROM drivers d WHERE d.tenant_id = a.tenant_id AND d.chat_id = a.chat_id)"""
        )
    todo = [(r["tenant_id"], r["chat_id"]) for r in rows if r["synced"] != desired_state(r)]
    todo += [(r["tenant_id"], r["chat_id"]) for r in gone]
    return todo[:limit]


class WorkerStarts:
    """Activities that start workflows through the worker's own client: on the tenant's queue or the
    worker's, with replies going to the bot's outbound queue."""

    def __init__(
        self, client: Client, pool: asyncpg.Pool, default_task_queue: str, reply_task_queue: str | None
    ) -> None:
        self.client = client
        self.pool = pool
        self.default_task_queue = default_task_queue
        self.reply_task_queue = reply_task_queue


class ScheduleActivities(WorkerStarts):
    @activity.defn(name="sync_agenda_schedule")
    async def sync_agenda_schedule(self, req: SyncAgendaInput) -> SyncAgendaResult:
        return await sync_agenda(
            self.client, self.pool, req.tenant_id, req.chat_id,
            default_task_queue=self.default_task_queue, reply_task_queue=self.reply_task_queue,
        )  # fmt: skip

    @activity.defn(name="agenda_drivers_out_of_sync")
    async def agenda_drivers_out_of_sync(self, req: ReconcileInput) -> list[SyncAgendaInput]:
        return [
            SyncAgendaInput(tenant_id=t, chat_id=c)
            for t, c in await drivers_out_of_sync(self.pool, req.limit)
        ]
