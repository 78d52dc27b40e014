"""Inputs of the store activities (audit, orders, open questions)."""

from __future__ import annotations

from datetime import datetime

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


class OrderStatusInput(BaseModel):
    tenant_id: str
    order_id: str
    status: str
