"""Around every activity: whose work it is (tenant, workflow, order), for metrics and log lines."""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from autodispatch.context import working_for


def _field(arg: Any, name: str) -> str | None:
    value = arg.get(name) if isinstance(arg, dict) else getattr(arg, name, None)
    if value is None:
        order = arg.get("order") if isinstance(arg, dict) else getattr(arg, "order", None)
        if order is not None and not isinstance(order, str | int):
            value = order.get(name) if isinstance(order, dict) else getattr(order, name, None)
    return str(value) if isinstance(value, str | int) and value != "" else None


class WorkContextInterceptor(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next)


class _Inbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        arg = input.args[0] if input.args else None
        info = activity.info()
        with working_for(_field(arg, "tenant_id"), info.workflow_id, _field(arg, "order_id")):
            return await self.next.execute_activity(input)
