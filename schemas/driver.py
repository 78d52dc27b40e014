"""Tenants and drivers: the whitelist that says who a Telegram chat is."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

DriverStatus = Literal["active", "pending", "disabled"]


class DriverSettings(BaseModel):
    """What a driver sets with /settings (stored as JSON on the whitelist row; new keys need defaults)."""

    language: Literal["ru", "en"] | None = None  # None: the language of the driver's Telegram app
    reminder_lead_minutes: int = 60  # 0 turns reminders off
    event_duration_minutes: int | None = None  # None: the deployment's AUTODISPATCH_EVENT_DURATION_MINUTES
    buffer_minutes: int = 30  # around an order when checking conflicts
    travel_minutes: int = 0  # the driver's usual time to reach a pickup
    agenda_time: str = "07:00"  # local HH:MM of the morning agenda
    agenda_enabled: bool = True
    agenda_scope: Literal["ours", "all"] = "ours"  # the agenda lists our orders only, or every event


class Driver(BaseModel):
    tenant_id: str
    chat_id: int
    driver_name: str
    calendar_id: str
    time_zone: str = "Europe/Moscow"
    status: DriverStatus = "active"
    region: str | None = None
    currency: str | None = None
    task_queue: str | None = None  # a dedicated tenant's queue; None = the shared one
    settings: DriverSettings = Field(default_factory=DriverSettings)
    # Whether the row carries a proof that the calendar is the driver's (activities/calendar_proof.py);
    # until it does, the bot neither reads nor writes it and tells the driver how, with this code.
    calendar_proven: bool = True
    calendar_code: str | None = None


class LookupDriverInput(BaseModel):
    chat_id: int
    # The bot the chat wrote to: a tenant's own bot knows only that tenant's drivers (None: any tenant's).
    bot_id: int | None = None


class DriverLookup(BaseModel):
    """The whitelist answer for one chat; `driver` is None for an unknown chat."""

    driver: Driver | None = None
    # A MainWorkflow of this chat that is waiting for the driver's answer to a question.
    pending_question_workflow_id: str | None = None
    # An unknown chat that wrote to a tenant's own bot is that tenant's stranger (audited under it).
    bot_tenant_id: str | None = None
