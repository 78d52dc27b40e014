"""Inputs of the store activities (audit, orders, open questions)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from schemas.audit import AuditEntry
from schemas.order import ParsedOrder


class OrderRecord(BaseModel):
    tenant_id: str
    order_id: str
    chat_id: int
    workflow_id: str
    status: str
    order: ParsedOrder
    calendar_id: str | None = None
    event_id: str | None = None
    html_link: str | None = None
    original_text: str = ""
    source_message_id: int | None = None  # the driver's message (an edit of it changes this order)
    order_index: int = 0  # its place among several orders of one message
    card_message_id: int | None = None  # our card (a reply to it refers to this order)
    order_workflow_id: str | None = None  # the OrderWorkflow that owns changes, buttons and reminders


class FinishStepInput(BaseModel):
    """The audit rows a flow collected (written once each) and, if any, the order's row."""

    audit: list[AuditEntry] = Field(default_factory=list)
    order: OrderRecord | None = None


class QuestionInput(BaseModel):
    tenant_id: str
    chat_id: int
    workflow_id: str
    open: bool = True  # False closes the chat's question (only if this workflow still owns it)


class ParseOrderInput(BaseModel):
    text: str
    now: datetime
    tz: str
    region: str | None = None
    currency: str | None = None
    # "order": chatter comes back empty; "fields": whatever the text names (a change to an order).
    mode: Literal["order", "fields"] = "order"


class AuthorizeOrderInput(BaseModel):
    """Callback data names an order; it is acted on only if it is the pressing chat's own."""

    chat_id: int
    order_id: str
    workflow_id: str


class OrderRef(BaseModel):
    tenant_id: str
    order_id: str
    chat_id: int
    status: str
    calendar_id: str | None = None
    event_id: str | None = None
    order_workflow_id: str | None = None
    pickup_at: datetime | None = None
    card_message_id: int | None = None
    order_index: int = 0
    pickup_address: str | None = None
    dropoff_address: str | None = None


class FindOrderInput(BaseModel):
    """Which existing order of this chat a message refers to (the first rule that matches wins)."""

    tenant_id: str
    chat_id: int
    card_message_id: int | None = None  # a reply to this card
    source_message_id: int | None = None  # an edit of this message (all orders it made)
    client_phone: str | None = None  # same client ...
    day_start: datetime | None = None  # ... on this local day [day_start, day_end) ...
    day_end: datetime | None = None
    after: datetime | None = None  # ... or, with no day, the next upcoming one after this moment


class FoundOrders(BaseModel):
    orders: list[OrderRef] = Field(default_factory=list)
    matched_by: str | None = None  # "card" | "source" | "phone_day" | "phone_next"


class OrderStatusInput(BaseModel):
    tenant_id: str
    order_id: str
    status: str
