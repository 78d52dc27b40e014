"""Tenants and drivers: the whitelist that says who a Telegram chat is."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

DriverStatus = Literal["active", "pending", "disabled"]


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


class LookupDriverInput(BaseModel):
    chat_id: int


class DriverLookup(BaseModel):
    """The whitelist answer for one chat; `driver` is None for an unknown chat."""

    driver: Driver | None = None
    # A MainWorkflow of this chat that is waiting for the driver's answer to a question.
    pending_question_workflow_id: str | None = None
