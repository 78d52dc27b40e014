"""Log lines: one JSON object per line (AUTODISPATCH_LOG_FORMAT=json, the default outside sandbox mode),
or text for a person at a terminal.

Every line from an activity or a workflow carries whose work it is, where known: tenant_id, workflow_id,
order_id (from autodispatch.context, set around each activity; a workflow's tenant from the payload
codec, which learned it from the workflow's payloads). Messages at INFO name ids, never an order's text,
a phone number or an address.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any

from autodispatch import context

# Libraries whose per-request INFO lines would drown ours.
NOISY = ("aiogram.event", "httpx", "emulators")


def _known_tenant(workflow_id: str | None) -> str | None:
    from autodispatch.codec import TENANTS

    return TENANTS.get(workflow_id)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        work = context.current()
        temporal = getattr(record, "temporal_activity", None) or getattr(record, "temporal_workflow", None)
        temporal = temporal if isinstance(temporal, dict) else {}
        workflow_id = work.workflow_id or temporal.get("workflow_id")
        fields = {
            "tenant_id": work.tenant_id or _known_tenant(workflow_id),
            "workflow_id": workflow_id,
            "order_id": work.order_id,
            "workflow_type": temporal.get("workflow_type"),
            "activity_type": temporal.get("activity_type"),
            "attempt": temporal.get("attempt"),
        }
        out.update({k: v for k, v in fields.items() if v is not None})
        if record.exc_info:
            exc_type, exc, tb = record.exc_info
            out["error"] = f"{exc_type.__name__ if exc_type else 'Exception'}: {exc}"
            out["stack"] = "".join(traceback.format_tb(tb))
        return json.dumps(out, ensure_ascii=False, default=str)


def setup_logging(level: str, *, json_lines: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
        # The ids travel as fields; the SDK's default " ({...})" suffix would repeat them in the message.
        from temporalio import activity, workflow

        workflow.logger.workflow_info_on_message = False
        activity.logger.activity_info_on_message = False
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
