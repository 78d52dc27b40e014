"""Calendar writes: the CALENDAR 2 AUTO flow's input and result."""

from __future__ import annotations

from pydantic import BaseModel

from schemas.order import ParsedOrder


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


class CalendarEvent(BaseModel):
    event_id: str
    html_link: str | None = None
    created: bool = True  # False: it already existed (a retried or replayed insert)


class CancelEventInput(BaseModel):
    calendar_id: str
    event_id: str
