"""The central audit log: every step of every order, readable only by the system owner."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class AuditEntry(BaseModel):
    """Idempotent per (workflow_id, step): a retried or replayed step writes one row."""

    tenant_id: str
    workflow_id: str
    step: str
    action: str
    chat_id: int | None = None
    order_id: str | None = None
    outcome: str = "ok"
    details: dict[str, Any] = Field(default_factory=dict)
