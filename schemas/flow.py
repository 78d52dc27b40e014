"""The main flow's result: what happened to one Telegram update."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

Outcome = Literal[
    "event_created",
    "unknown_chat",
    "driver_disabled",
    "not_an_order",
    "cancelled_by_driver",
    "no_answer",
    "answer_forwarded",
    "calendar_failed",
    "unsupported_message",
    "command",
    "order_cancelled",
    "callback_denied",
    "button_unknown",
]


class MainResult(BaseModel):
    outcome: Outcome
    tenant_id: str | None = None
    order_id: str | None = None
    event_id: str | None = None
    html_link: str | None = None
    reply_message_id: int | None = None
