"""What an operator watches: Prometheus metrics, labelled by tenant (never by chat: bounded cardinality).

Order, question, onboarding and billing counts come from the audit rows the flows write (each row
once per workflow step, so a retried or replayed step is not counted twice); Calendar and Telegram calls
and the send budget are measured where they happen. The tenant of a call comes from the activity's
input (autodispatch.context, set around every activity by the worker).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from autodispatch import context, tracing

REGISTRY = CollectorRegistry(auto_describe=True)
MAX_TENANTS = 500  # beyond this many distinct tenants, the rest share the label "other"
UNKNOWN = "unknown"

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_WAIT = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)

UPDATES_RECEIVED = Counter(
    "autodispatch_telegram_updates_received_total", "Telegram updates handed to Temporal by the edge",
    ["tenant", "kind"], registry=REGISTRY,
)  # fmt: skip
STRANGERS_DENIED = Counter(
    "autodispatch_strangers_denied_total",
    "Updates of unknown chats (and groups) refused at the edge, before anything was stored",
    ["reason"], registry=REGISTRY,
)  # fmt: skip
ORDERS_RECEIVED = Counter(
    "autodispatch_orders_received_total",
    "Orders recognised in drivers' messages",
    ["tenant"],
    registry=REGISTRY,
)
ORDERS_CONFIRMED = Counter(
    "autodispatch_orders_confirmed_total", "Orders written to the driver's calendar and confirmed to the driver",
    ["tenant"], registry=REGISTRY,
)  # fmt: skip
ORDERS_FAILED = Counter(
    "autodispatch_orders_failed_total", "Steps of an order's flow that failed, by reason (the audit action)",
    ["tenant", "reason"], registry=REGISTRY,
)  # fmt: skip
QUESTIONS_ASKED = Counter(
    "autodispatch_questions_asked_total", "Questions the bot asked a driver about an incomplete order",
    ["tenant"], registry=REGISTRY,
)  # fmt: skip
PARSE_MISSES = Counter(
    "autodispatch_parse_misses_total", "Order fields the parser could not find (asked for) or understand",
    ["tenant", "field"], registry=REGISTRY,
)  # fmt: skip
CALENDAR_REQUESTS = Counter(
    "autodispatch_calendar_requests_total", "Google Calendar API calls by operation and outcome",
    ["tenant", "operation", "outcome"], registry=REGISTRY,
)  # fmt: skip
CALENDAR_SECONDS = Histogram(
    "autodispatch_calendar_request_duration_seconds", "Google Calendar API call latency",
    ["tenant", "operation"], buckets=_LATENCY, registry=REGISTRY,
)  # fmt: skip
TELEGRAM_REQUESTS = Counter(
    "autodispatch_telegram_requests_total", "Telegram Bot API calls by method and outcome",
    ["tenant", "method", "outcome"], registry=REGISTRY,
)  # fmt: skip
TELEGRAM_SECONDS = Histogram(
    "autodispatch_telegram_request_duration_seconds", "Telegram Bot API call latency",
    ["tenant", "method"], buckets=_LATENCY, registry=REGISTRY,
)  # fmt: skip
SEND_BUDGET_WAITS = Counter(
    "autodispatch_send_budget_waits_total", "Sends that had to wait for the bot's or the chat's send budget",
    ["tenant"], registry=REGISTRY,
)  # fmt: skip
SEND_BUDGET_WAIT_SECONDS = Histogram(
    "autodispatch_send_budget_wait_seconds", "Time a send waited for the send budget (0 when it did not)",
    ["tenant"], buckets=_WAIT, registry=REGISTRY,
)  # fmt: skip
ONBOARDING_EVENTS = Counter(
    "autodispatch_onboarding_events_total", "Steps of new drivers' onboarding dialogues", ["tenant", "event"],
    registry=REGISTRY,
)  # fmt: skip
BILLING_EVENTS = Counter(
    "autodispatch_billing_events_total",
    "Subscription and payment events",
    ["tenant", "event"],
    registry=REGISTRY,
)

_seen_tenants: set[str] = set()


def tenant_label(tenant_id: str | None) -> str:
    """The tenant as a label value; the label set stays bounded however many tenants appear."""
    if not tenant_id:
        return UNKNOWN
    if tenant_id in _seen_tenants:
        return tenant_id
    if len(_seen_tenants) >= MAX_TENANTS:
        return "other"
    _seen_tenants.add(tenant_id)
    return tenant_id


def _current() -> str:
    return tenant_label(context.current().tenant_id)


# -- from audit rows -------------------------------------------------------------------
def observe_audit(entries: Iterable[Any], *, billing: bool = False) -> None:
    """Count newly written audit rows (AuditEntry-shaped: tenant_id, step, action, outcome, details)."""
    for e in entries:
        tenant = tenant_label(e.tenant_id)
        action, outcome = e.action, e.outcome
        if billing:
            BILLING_EVENTS.labels(tenant, action).inc()
            continue
        if action == "order_parsed":
            ORDERS_RECEIVED.labels(tenant).inc()
        elif action == "event_created" and e.step.startswith("outcome"):
            ORDERS_CONFIRMED.labels(tenant).inc()
        elif action == "question_asked":
            QUESTIONS_ASKED.labels(tenant).inc()
            if e.step.startswith("ask-1:"):  # what the parser missed, once per order (not per retry)
                for field in e.details.get("missing") or []:
                    PARSE_MISSES.labels(tenant, str(field)).inc()
        elif action == "field_not_understood":
            PARSE_MISSES.labels(tenant, str(e.details.get("field", UNKNOWN))).inc()
        elif action.startswith("onboarding_"):
            ONBOARDING_EVENTS.labels(tenant, action.removeprefix("onboarding_")).inc()
        if outcome == "error":
            ORDERS_FAILED.labels(tenant, action).inc()


# -- calls to the outside world ----------------------------------------------------------
@contextmanager
def calendar_call(operation: str, tenant_id: str | None) -> Iterator[None]:
    tenant = tenant_label(tenant_id) if tenant_id else _current()
    start = time.perf_counter()
    outcome = "ok"
    try:
        with tracing.outgoing(f"calendar {operation}", tenant_id=tenant):
            yield
    except BaseException as exc:
        outcome = _outcome_of(exc)
        raise
    finally:
        CALENDAR_SECONDS.labels(tenant, operation).observe(time.perf_counter() - start)
        CALENDAR_REQUESTS.labels(tenant, operation, outcome).inc()


def _outcome_of(exc: BaseException) -> str:
    status = getattr(getattr(exc, "resp", None), "status", None)  # googleapiclient HttpError
    if status is None:
        status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return f"http_{status // 100}xx"
    return "error"


def telegram_call(method: str, seconds: float, outcome: str) -> None:
    tenant = _current()
    TELEGRAM_SECONDS.labels(tenant, method).observe(seconds)
    TELEGRAM_REQUESTS.labels(tenant, method, outcome).inc()


def send_budget_wait(seconds: float) -> None:
    tenant = _current()
    SEND_BUDGET_WAIT_SECONDS.labels(tenant).observe(seconds)
    if seconds > 0:
        SEND_BUDGET_WAITS.labels(tenant).inc()


def stranger_denied(reason: str) -> None:
    STRANGERS_DENIED.labels(reason).inc()


def update_received(tenant_id: str | None, kind: str) -> None:
    UPDATES_RECEIVED.labels(tenant_label(tenant_id), kind).inc()


def exposition() -> bytes:
    from prometheus_client import generate_latest

    return generate_latest(REGISTRY)
