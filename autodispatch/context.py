"""Whose work this is: the tenant, workflow and order an activity (or an edge request) acts for.

Set around every activity by the worker's interceptor (from the activity's input) and read by the
metrics (tenant label) and the JSON log lines (tenant_id, workflow_id, order_id)."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class WorkContext:
    tenant_id: str | None = None
    workflow_id: str | None = None
    order_id: str | None = None


NOBODY = WorkContext()
_current: contextvars.ContextVar[WorkContext | None] = contextvars.ContextVar("work_context", default=None)


def current() -> WorkContext:
    return _current.get() or NOBODY


@contextmanager
def working_for(
    tenant_id: str | None = None, workflow_id: str | None = None, order_id: str | None = None
) -> Iterator[WorkContext]:
    ctx = WorkContext(tenant_id, workflow_id, order_id)
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)
