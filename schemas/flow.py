"""The main flow's result: what happened to one Telegram update."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Outcome = Literal[
    "event_created",
    "unknown_chat",
    "onboarding_started",  # an unknown chat's /start: its OnboardingWorkflow was started
    "onboarding_continued",  # a message handed to the chat's running OnboardingWorkflow
    "driver_disabled",
    "calendar_unproven",  # the driver's calendar has no proof of ownership yet: told how to give one
    "not_an_order",
    "parse_failed",  # the parser gave up on the text within its time limit
    "cancelled_by_driver",
    "no_answer",
    "answer_forwarded",
    "calendar_failed",
    "calendar_paused",  # the driver's Google grant was revoked: kept, written after /connect (#6 phase 4)
    "unsupported_message",
    "picture_unreadable",  # a screenshot with no caption that OCR could not read (or is not installed)
    "command",
    "order_cancelled",
    "callback_denied",
    "button_unknown",
    "button_forwarded",
    "order_change_forwarded",
    "change_unclear",
    "orders_created",
    "agenda",
    "settings",
]


class MainResult(BaseModel):
    outcome: Outcome
    tenant_id: str | None = None
    order_id: str | None = None
    event_id: str | None = None
    html_link: str | None = None
    reply_message_id: int | None = None
    order_ids: list[str] = Field(default_factory=list)  # several orders in one message: each one's id
