"""Where an order's time goes inside Temporal, read from workflow histories (event timestamps).

For a sample of orders: workflow-task queue wait (scheduled → started: no free poller/slot, or the
server's matching), workflow-task processing (started → completed: the worker, including local
activities), activity queue wait and run time, and the child workflow's span.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from benchmarks.stats import percentile

_WFT = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED: "scheduled",
    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED: "started",
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED: "completed",
}


async def _breakdown(client: Client, workflow_id: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    handle = client.get_workflow_handle(workflow_id)
    events = [e async for e in handle.fetch_history_events()]
    if not events:
        return out
    t = {e.event_id: e.event_time.ToDatetime().timestamp() for e in events}
    wft_sched = wft_start = None
    act_sched: dict[int, float] = {}
    act_start: dict[int, float] = {}
    for e in events:
        ts = t[e.event_id]
        kind = _WFT.get(e.event_type)
        if kind == "scheduled":
            wft_sched = ts
        elif kind == "started" and wft_sched is not None:
            out["workflow_task_queue_ms"] += (ts - wft_sched) * 1000
            out["workflow_tasks"] += 1
            wft_start = ts
        elif kind == "completed" and wft_start is not None:
            out["workflow_task_run_ms"] += (ts - wft_start) * 1000
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            act_sched[e.event_id] = ts
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            sched = e.activity_task_started_event_attributes.scheduled_event_id
            act_start[sched] = ts
            out["activity_queue_ms"] += (ts - act_sched.get(sched, ts)) * 1000
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            sched = e.activity_task_completed_event_attributes.scheduled_event_id
            out["activity_run_ms"] += (ts - act_start.get(sched, ts)) * 1000
        elif e.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            out["_child_init"] = ts
        elif e.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED:
            out["child_workflow_ms"] += (ts - out.pop("_child_init", ts)) * 1000
    out["events"] = len(events)
    out["total_ms"] = (t[events[-1].event_id] - t[events[0].event_id]) * 1000
    return out


async def breakdown(client: Client, workflow_ids: list[str]) -> dict[str, Any]:
    """Median (and p90) per component over the sampled MainWorkflows."""
    rows = [await _breakdown(client, wid) for wid in workflow_ids]
    rows = [r for r in rows if r]
    keys = sorted({k for r in rows for k in r if not k.startswith("_")})
    return {
        "sampled": len(rows),
        **{k: {"p50": round(percentile([r.get(k, 0.0) for r in rows], 50) or 0.0, 1),
               "p90": round(percentile([r.get(k, 0.0) for r in rows], 90) or 0.0, 1)} for k in keys},
    }  # fmt: skip
