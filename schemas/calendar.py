"""Calendar writes: the CALENDAR 2 AUTO flow's input and result."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from schemas.order import ParsedOrder


class ConflictWindow(BaseModel):
    """How far around an order other events count as overlapping (buffer, plus travel before)."""

    before_minutes: int = 30
    after_minutes: int = 30


class ConflictingEvent(BaseModel):
    """Another event in the order's window, as the card shows it ("14:00 Шереметьево → Химки")."""

    event_id: str
    summary: str = ""
    start: datetime | None = None  # None: an all-day event


class Calendar2AutoInput(BaseModel):
    """Calendar2AutoWorkflow's argument: the calendar id travels with the order, never from config."""

    calendar_id: str
    time_zone: str
    tenant_id: str
    chat_id: int
    order_id: str
    order: ParsedOrder
    original_text: str = ""
    driver_name: str = ""
    duration_minutes: int | None = None  # None: the worker's AUTODISPATCH_EVENT_DURATION_MINUTES
    language: str = "ru"
    # Set: other events in this window around the order are reported back (checked before writing).
    conflict_window: ConflictWindow | None = None
    # True: the write runs as a local activity inside the child's one workflow task (#7: 9 history
    # events and 2 server round trips fewer per order). Safe to repeat: the event id comes from the
    # order, and a repeated insert reads the existing event. False, the default, is how children
    # started before this field existed ran (a remote activity) and still replay.
    local_write: bool = False


class CreateEventInput(BaseModel):
    calendar_id: str
    event_id: str
    time_zone: str
    order_id: str
    tenant_id: str
    chat_id: int
    order: ParsedOrder
    original_text: str = ""
    duration_minutes: int | None = None
    language: str = "ru"
    conflict_window: ConflictWindow | None = None


class CalendarEvent(BaseModel):
    event_id: str
    html_link: str | None = None
    created: bool = True  # False: it already existed (a retried or replayed insert)
    conflicts: list[ConflictingEvent] = Field(default_factory=list)


class UpdateEventInput(CreateEventInput):
    """Rewrite an order's event after a change (a patch with the full new body: repeating it is harmless)."""


class CancelEventInput(BaseModel):
    calendar_id: str
    event_id: str
    # Whose credentials (a driver's own OAuth grant): unset, the driver whose calendar this is.
    tenant_id: str | None = None
    chat_id: int | None = None
