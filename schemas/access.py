"""Telling a driver that an admin opened their access (#6): the pending notice and its workflow's input."""

from __future__ import annotations

from pydantic import BaseModel


class StartAccessNoticesInput(BaseModel):
    """Start the notice workflow of every driver with a pending notice (or of this one driver)."""

    tenant_id: str | None = None
    chat_id: int | None = None
    limit: int = 200


class AccessNoticeInput(BaseModel):
    tenant_id: str
    chat_id: int
    token: str  # written with the approval; the workflow id, so one message per approval
    tenant_name: str = ""
    reply_task_queue: str | None = None


class ClearAccessNoticeInput(BaseModel):
    tenant_id: str
    chat_id: int
    token: str


class AccessNoticeResult(BaseModel):
    outcome: str  # notified | skipped | failed
    reason: str = ""
    message_id: int | None = None


def access_notice_workflow_id(token: str) -> str:
    return f"driver-approved-{token}"
