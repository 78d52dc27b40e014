"""The retention run: old audit rows and sent replies deleted, by the settings at run time."""

from __future__ import annotations

from pydantic import BaseModel


class RetentionInput(BaseModel):
    batch: int = 5000  # rows per transaction: short locks, however much is due


class RetentionResult(BaseModel):
    audit_deleted: int = 0
    outbox_deleted: int = 0
    strangers_deleted: int = 0
    audit_days: int = 0
    outbox_days: int = 0
    done: bool = True  # False: more was due than one run deletes; the next run goes on
