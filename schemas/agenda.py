"""The driver's agenda (/today, /tomorrow, /week, the morning agenda) and its per-driver Schedule."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel

AgendaKind = Literal["today", "tomorrow", "week", "morning"]
# (first day from today, number of days) per kind.
AGENDA_RANGES: dict[str, tuple[int, int]] = {
    "today": (0, 1),
    "tomorrow": (1, 1),
    "week": (0, 7),
    "morning": (0, 1),
}
AGENDA_COMMANDS: dict[str, AgendaKind] = {"/today": "today", "/tomorrow": "tomorrow", "/week": "week"}


def agenda_schedule_id(tenant_id: str, chat_id: int) -> str:
    """One Temporal Schedule per driver: its morning agenda."""
    return f"agenda-{tenant_id}-{chat_id}"


def agenda_run_id(tenant_id: str, chat_id: int) -> str:
    """The scheduled workflows' id prefix (the Schedule appends the scheduled time)."""
    return f"agenda-run-{tenant_id}-{chat_id}"


def day_window(now: datetime, time_zone: str, first_day: int, days: int) -> tuple[date, datetime, datetime]:
    """(first local date, start, end) of `days` whole local days starting `first_day` days after `now`'s
    local date. Midnight is taken in the driver's zone, so a 23:30 Moscow order belongs to that Moscow
    day whatever UTC says; a DST day is 23 or 25 hours long, not 24."""
    tz = ZoneInfo(time_zone)
    first = now.astimezone(tz).date() + timedelta(days=first_day)
    start = datetime.combine(first, time(0), tzinfo=tz)
    end = datetime.combine(first + timedelta(days=days), time(0), tzinfo=tz)
    return first, start, end


class AgendaInput(BaseModel):
    """AgendaWorkflow's input: whose agenda, which days, and where the answer goes."""

    tenant_id: str
    chat_id: int
    kind: AgendaKind = "morning"
    # "Today" as of this instant (the command's message date); None: the workflow's start time.
    now: datetime | None = None
    # The command to answer (reply_to); None for the morning agenda.
    reply_to_message_id: int | None = None
    # The bot's rate-limited outbound queue; None: the workflow's own queue.
    reply_task_queue: str | None = None
    # The language when the driver chose none in /settings (their Telegram app's); None: Russian.
    language: str | None = None


class AgendaResult(BaseModel):
    outcome: Literal["sent", "skipped", "calendar_failed"] = "sent"
    message_id: int | None = None
    items: int = 0
    reason: str | None = None


class ListEventsInput(BaseModel):
    calendar_id: str
    time_min: datetime
    time_max: datetime
    time_zone: str
    only_ours: bool = True  # only events this system wrote (extendedProperties.private.autodispatch=1)
    max_items: int = 500
    # Whose credentials: a driver who connected their own Google account is read with their grant.
    tenant_id: str | None = None
    chat_id: int | None = None


class AgendaItem(BaseModel):
    """One calendar event, reduced to what an agenda line shows."""

    event_id: str
    start: datetime  # an all-day event: local midnight of its first day
    all_day: bool = False
    title: str = ""  # the route for our events, the summary for others
    price_amount: float | None = None
    price_currency: str | None = None
    ours: bool = False


class SyncAgendaInput(BaseModel):
    """Make the driver's agenda Schedule match the whitelist row (created, updated, paused or deleted)."""

    tenant_id: str
    chat_id: int


class SyncAgendaResult(BaseModel):
    schedule_id: str
    action: Literal["created", "updated", "deleted", "absent"]
    paused: bool = False
    agenda_time: str | None = None
    time_zone: str | None = None


class ReconcileInput(BaseModel):
    """AgendaReconcileWorkflow: sync every driver whose schedule is missing or out of date."""

    limit: int = 500


class ReconcileResult(BaseModel):
    synced: int = 0
    failed: int = 0
