"""An order's life after it is written: its card and buttons, changes, cancellation, the reminder."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from schemas.calendar import ConflictingEvent
from schemas.driver import Driver
from schemas.order import ParsedOrder

OrderStatus = Literal["in_calendar", "confirmed", "cancelled"]
OrderActionKind = Literal["confirm", "cancel", "edit", "field", "back", "change"]
ChangeSource = Literal["button", "message_edit", "reply", "related_message", "field_answer"]
# The fields the ✏️ button offers, in the order of the keyboard.
EDITABLE_FIELDS: tuple[str, ...] = (
    "pickup_at",
    "pickup_address",
    "dropoff_address",
    "price_amount",
    "client_name",
    "client_phone",
    "flight_number",
)


def order_workflow_id(order_id: str) -> str:
    return f"order-{order_id}"


class OrderLifecycleInput(BaseModel):
    """OrderWorkflow's state: what it starts with, and what it carries over a continue-as-new."""

    driver: Driver
    order_id: str
    order: ParsedOrder
    event_id: str
    original_text: str = ""
    source_message_id: int | None = None
    order_index: int = 0
    card_message_id: int | None = None
    html_link: str | None = None
    conflicts: list[ConflictingEvent] = Field(default_factory=list)
    status: OrderStatus = "in_calendar"
    language: str = "ru"
    reply_task_queue: str | None = None
    # A reminder is due only if its moment comes after the driver last touched the order.
    touched_at: datetime | None = None
    reminded_for: datetime | None = None  # the pickup moment a reminder went out for
    steps: int = 0  # actions handled so far: step names stay unique across continue-as-new
    changed: bool = False


class OrderAction(BaseModel):
    """Signal to an order's workflow: a button pressed on its card, or a change from a message."""

    action: OrderActionKind
    field: str | None = None  # action "field": which field to edit
    order: ParsedOrder | None = None  # action "change": the fields the message names
    text: str = ""
    source: ChangeSource = "button"
    callback_query_id: str | None = None
    chat_id: int | None = None
    message_id: int | None = None  # the message (or card) that carried the action
    received_at: datetime | None = None
    update_workflow_id: str | None = None


class OrderState(BaseModel):
    """What an operator sees with the `order_state` query."""

    order_id: str
    status: OrderStatus
    pickup_at: datetime | None = None
    reminder_at: datetime | None = None
    reminded_for: datetime | None = None
    editing_field: str | None = None
    conflicts: list[ConflictingEvent] = Field(default_factory=list)
    steps: int = 0


class StartOrderWorkflowInput(BaseModel):
    """Start an order's workflow (an activity does it: the order's life must not end with the update's)."""

    order: OrderLifecycleInput
    task_queue: str
