"""The payment provider's webhook (`POST /billing/webhook`) and the hand-over of payments to Temporal.

The signature is Stripe's scheme: `Stripe-Signature: t=<unix time>,v1=<hex>` where v1 is
HMAC-SHA256(secret, "<t>.<raw body>"), compared in constant time, the timestamp within 300 s. It is
checked on the raw body before anything is parsed. Each event is recorded once by its id
(billing_events); a paid checkout or invoice signals the SubscriptionWorkflow of the driver (or tenant)
it names, and only once Temporal accepted that signal is the webhook answered 200 (else 503: the
provider delivers again, nothing is lost).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg
from aiohttp import web
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from autodispatch.db import SYSTEM_TENANT, system_tx
from schemas.billing import (
    BillingSettings,
    PaymentReceived,
    Provider,
    Subscriber,
    SubscriptionInput,
    billing_settings,
    subscription_workflow_id,
)
from schemas.telegram import INT64_MAX, INT64_MIN
from workflows.ids import CHAT_ID, TENANT_ID
from workflows.subscription import SubscriptionWorkflow

__all__ = ["BillingSettings", "billing_settings", "add_billing_route", "BillingEdge", "verify_signature"]

log = logging.getLogger(__name__)

BILLING_WEBHOOK_PATH = "/billing/webhook"
SIGNATURE_HEADER = "Stripe-Signature"
SIGNATURE_TOLERANCE_SECONDS = 300
_PAID_CHECKOUT = {"paid", "no_payment_required"}

Outcome = Literal["signalled", "duplicate", "unknown_customer", "ignored"]


class SignatureError(ValueError):
    """The webhook's signature does not prove the provider sent this body just now."""


def verify_signature(
    raw: bytes,
    header: str | None,
    secret: str,
    *,
    tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
    now: float | None = None,
) -> int:
    """Check `Stripe-Signature` against the raw body; returns the signed timestamp. Any v1 signature may
    match (the provider sends several while a secret is being rolled)."""
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError(f"malformed {SIGNATURE_HEADER} timestamp {value!r}") from None
        elif key == "v1":
            signatures.append(value)
    if timestamp is None:
        raise SignatureError(f"{SIGNATURE_HEADER} has no timestamp (t=...)")
    if not signatures:
        raise SignatureError(f"{SIGNATURE_HEADER} has no v1 signature")
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest().encode()
    # Every candidate is compared (constant time each): which one matched leaks nothing.
    matched = [hmac.compare_digest(expected, s.encode("utf-8", "replace")) for s in signatures]
    if not any(matched):
        raise SignatureError("signature does not match the body (wrong secret, or the body was changed)")
    age = (time.time() if now is None else now) - timestamp
    if abs(age) > tolerance:
        raise SignatureError(
            f"timestamp is {int(age)} s off (tolerance {tolerance} s): a stale or replayed request"
        )
    return timestamp


# -- reading Stripe events --------------------------------------------------------------------
@dataclass
class Decision:
    """What an event means for us: a payment for someone, or a reason to ignore it."""

    subscriber: Subscriber | None = None
    payment: PaymentReceived | None = None
    ignored: str | None = None
    customer_problem: str | None = None


def _metadata_sources(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Where Stripe carries our metadata: the object's own, a subscription invoice's (old and new API
    versions), and its lines'."""
    sources: list[Any] = [
        obj.get("metadata"),
        (obj.get("subscription_details") or {}).get("metadata"),
        ((obj.get("parent") or {}).get("subscription_details") or {}).get("metadata"),
    ]
    sources += [
        line.get("metadata")
        for line in ((obj.get("lines") or {}).get("data") or [])
        if isinstance(line, dict)
    ]
    return [s for s in sources if isinstance(s, dict) and s]


def subscriber_of(obj: dict[str, Any]) -> tuple[Subscriber | None, str | None]:
    """Whom a checkout or invoice pays for: metadata tenant_id (+ chat_id), or client_reference_id
    `<tenant_id>:<chat_id>` (or `<tenant_id>` for the whole tenant). (subscriber, problem)."""
    tenant: str | None = None
    chat: Any = None
    for meta in _metadata_sources(obj):
        if meta.get("tenant_id"):
            tenant, chat = str(meta["tenant_id"]), meta.get("chat_id")
            break
    if tenant is None and obj.get("client_reference_id"):
        tenant, _, chat = str(obj["client_reference_id"]).partition(":")
        chat = chat or None
    if not tenant:
        return None, "names no tenant (metadata.tenant_id or client_reference_id)"
    try:
        chat_id = int(chat) if chat not in (None, "") else None
    except (TypeError, ValueError):
        return None, f"chat id {str(chat)[:40]!r} is not a number"
    if chat_id is not None and not INT64_MIN <= chat_id <= INT64_MAX:
        return None, f"chat id {str(chat)[:40]} is out of range"
    return Subscriber(tenant_id=tenant.strip().lower(), chat_id=chat_id), None


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if isinstance(value, int | float) and value > 0 else None


def products_of(obj: dict[str, Any]) -> set[str]:
    """The product ids a checkout or invoice is for: its lines' prices (invoice lines, old and new API
    versions; an expanded checkout's line_items), else the checkout's `metadata.product_id`, which only
    the account (our dashboard or API) can set, unlike client_reference_id, which any payer can."""
    found: set[str] = set()
    lines = [
        *((obj.get("lines") or {}).get("data") or []),
        *((obj.get("line_items") or {}).get("data") or []),
    ]
    for line in lines:
        if not isinstance(line, dict):
            continue
        price = line.get("price") or line.get("plan") or {}
        details = (line.get("pricing") or {}).get("price_details") or {}
        for product in (
            price.get("product") if isinstance(price, dict) else None,
            details.get("product") if isinstance(details, dict) else None,
        ):
            if isinstance(product, dict):
                product = product.get("id")
            if isinstance(product, str) and product:
                found.add(product)
    meta = obj.get("metadata")
    if not found and isinstance(meta, dict) and isinstance(meta.get("product_id"), str):
        found.add(meta["product_id"])
    return found


def interpret_event(event: dict[str, Any], cfg: BillingSettings) -> Decision:
    """What a provider event means: a payment of one period for someone, or why it is ignored. A paid
    checkout names its tenant itself (client_reference_id): only the configured price, currency and
    product make it a payment."""
    etype = str(event.get("type") or "")
    obj = (event.get("data") or {}).get("object") or {}
    created = _ts(event.get("created")) or datetime.now(UTC)
    period_days = cfg.period_days
    if etype in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
        if obj.get("payment_status") not in _PAID_CHECKOUT:
            return Decision(ignored=f"checkout not paid yet (payment_status={obj.get('payment_status')})")
        amount, currency = obj.get("amount_total"), (obj.get("currency") or "").upper() or None
        # A subscription's first period also arrives as its invoice: an absolute end makes the two one
        # period whichever comes first. A one-off payment extends whatever is paid already.
        period_end = created + timedelta(days=period_days) if obj.get("mode") == "subscription" else None
    elif etype in ("invoice.paid", "invoice.payment_succeeded"):
        amount, currency = obj.get("amount_paid"), (obj.get("currency") or "").upper() or None
        ends = [
            _ts((line.get("period") or {}).get("end"))
            for line in ((obj.get("lines") or {}).get("data") or [])
            if isinstance(line, dict)
        ]
        period_end = max((e for e in ends if e is not None), default=None)
    else:
        return Decision(ignored=f"event type {etype!r} is not used")
    problem = cfg.payment_problem(amount if isinstance(amount, int) else None, currency, products_of(obj))
    if problem is not None:
        return Decision(ignored=f"not a payment for our subscription: {problem}")
    subscriber, customer_problem = subscriber_of(obj)
    payment = PaymentReceived(
        payment_id=f"stripe:{obj.get('id') or event.get('id')}", provider="stripe", paid_at=created,
        period_days=period_days, period_end=period_end, amount=amount, currency=currency,
        language=(obj.get("metadata") or {}).get("language"),
    )  # fmt: skip
    return Decision(subscriber, payment if subscriber else None, customer_problem=customer_problem)


# -- the hand-over --------------------------------------------------------------------------
@dataclass
class Applied:
    outcome: Outcome
    tenant_id: str = SYSTEM_TENANT
    workflow_id: str | None = None
    reason: str | None = None


class BillingEdge:
    """Records a provider event once and signals the SubscriptionWorkflow it pays for."""

    def __init__(
        self, client: Client, pool: asyncpg.Pool, task_queue: str, *, reply_task_queue: str | None = None
    ) -> None:
        self.client = client
        self.pool = pool
        self.task_queue = task_queue
        self.reply_task_queue = reply_task_queue

    async def apply(
        self,
        *,
        provider: Provider,
        event_id: str,
        event_type: str,
        payload: dict[str, Any],
        decision: Decision,
    ) -> Applied:
        """One transaction: the event row (its id is unique), the signal, the audit row. The row stays
        locked while Temporal is asked, so a concurrent redelivery waits and then sees it handled; if
        Temporal refuses, everything rolls back and the provider's retry starts over. Raises then."""
        sub = decision.subscriber
        async with system_tx(self.pool) as conn:
            inserted = await conn.fetchval(
                """INSERT INTO billing_events (tenant_id, provider, event_id, type, chat_id, payload, outcome)
                   VALUES ($1, $2, $3, $4, $5, $6, 'pending') ON CONFLICT (provider, event_id) DO NOTHING
                   RETURNING true""",
                SYSTEM_TENANT, provider, event_id, event_type, sub.chat_id if sub else None, payload,
            )  # fmt: skip
            if not inserted:
                prev = await conn.fetchrow(
                    "SELECT tenant_id, outcome, reason FROM billing_events WHERE provider = $1 AND event_id = $2 FOR UPDATE",
                    provider, event_id,
                )  # fmt: skip
                # An event ignored because it named nobody we knew is looked at again (the admin fixed the
                # whitelist and resent it); anything else seen before is a duplicate.
                if prev is None or prev["reason"] != "unknown customer":
                    await _audit(conn, prev["tenant_id"] if prev else SYSTEM_TENANT, "billing_event_duplicate",
                                 sub.chat_id if sub else None, provider=provider, event_id=event_id, type=event_type)  # fmt: skip
                    return Applied("duplicate", prev["tenant_id"] if prev else SYSTEM_TENANT)
            if decision.ignored is not None:
                await self._finish(conn, provider, event_id, SYSTEM_TENANT, "ignored", decision.ignored, None)
                await _audit(conn, SYSTEM_TENANT, "billing_event_ignored", None,
                             provider=provider, event_id=event_id, type=event_type, reason=decision.ignored)  # fmt: skip
                return Applied("ignored", reason=decision.ignored)
            route = await self._route(conn, sub) if sub is not None else None
            if sub is None or decision.payment is None or route is None:
                problem = (
                    decision.customer_problem
                    or f"{sub.label if sub else '?'} is not a known driver or tenant"
                )
                await self._finish(
                    conn, provider, event_id, SYSTEM_TENANT, "ignored", "unknown customer", None
                )
                await _audit(conn, SYSTEM_TENANT, "billing_unknown_customer", None, outcome="refused",
                             provider=provider, event_id=event_id, type=event_type, problem=problem,
                             names=sub.label if sub else None)  # fmt: skip
                return Applied("unknown_customer", reason=problem)
            payment = decision.payment
            if payment.reply_task_queue is None and self.reply_task_queue:
                payment = payment.model_copy(update={"reply_task_queue": self.reply_task_queue})
            workflow_id = await self._signal(sub, payment, route)
            await self._finish(conn, provider, event_id, sub.tenant_id, "signalled", None, workflow_id)
            await _audit(conn, sub.tenant_id, "payment_received", sub.chat_id, provider=provider, event_id=event_id,
                         type=event_type, payment_id=payment.payment_id, amount=payment.amount,
                         currency=payment.currency, workflow_id=workflow_id)  # fmt: skip
            return Applied("signalled", sub.tenant_id, workflow_id)

    @staticmethod
    async def _route(conn: asyncpg.Connection, sub: Subscriber) -> str | None:
        """The task queue of the subscriber's tenant ('' = the shared one), or None if unknown."""
        if sub.tenant_id == SYSTEM_TENANT:
            return None
        if sub.chat_id is not None:
            row = await conn.fetchrow(
                """SELECT t.task_queue FROM drivers d JOIN tenants t USING (tenant_id)
                    WHERE d.tenant_id = $1 AND d.chat_id = $2""",
                sub.tenant_id, sub.chat_id,
            )  # fmt: skip
        else:
            row = await conn.fetchrow("SELECT task_queue FROM tenants WHERE tenant_id = $1", sub.tenant_id)
        return None if row is None else (row["task_queue"] or "")

    async def _signal(self, sub: Subscriber, payment: PaymentReceived, route: str) -> str:
        workflow_id = subscription_workflow_id(sub.tenant_id, sub.chat_id)
        attrs = [SearchAttributePair(TENANT_ID, sub.tenant_id)]
        if sub.chat_id is not None:
            attrs.append(SearchAttributePair(CHAT_ID, str(sub.chat_id)))
        # Signal-with-start: the running workflow gets the payment, or one is started to receive it.
        await self.client.start_workflow(
            SubscriptionWorkflow.run,
            SubscriptionInput(
                tenant_id=sub.tenant_id, chat_id=sub.chat_id, reply_task_queue=payment.reply_task_queue
            ),
            id=workflow_id,
            task_queue=route or self.task_queue,
            start_signal="payment_received",
            start_signal_args=[payment],
            search_attributes=TypedSearchAttributes(attrs),
        )
        return workflow_id

    @staticmethod
    async def _finish(
        conn: asyncpg.Connection,
        provider: str,
        event_id: str,
        tenant_id: str,
        outcome: str,
        reason: str | None,
        workflow_id: str | None,
    ) -> None:
        await conn.execute(
            """UPDATE billing_events SET tenant_id = $3, outcome = $4, reason = $5, workflow_id = $6
                WHERE provider = $1 AND event_id = $2""",
            provider, event_id, tenant_id, outcome, reason, workflow_id,
        )  # fmt: skip


async def _audit(
    conn: asyncpg.Connection,
    tenant_id: str,
    action: str,
    chat_id: int | None,
    outcome: str = "ok",
    **details: Any,
) -> None:
    """Billing edge rows: workflow id `billing`, a fresh step each (every delivery is its own step)."""
    await conn.execute(
        """INSERT INTO audit_log (tenant_id, workflow_id, step, action, chat_id, outcome, details)
           VALUES ($1, 'billing', 'billing-' || gen_random_uuid()::text, $2, $3, $4, $5)""",
        tenant_id, action, chat_id, outcome, details,
    )  # fmt: skip


async def audit_rejection(pool: asyncpg.Pool, action: str, **details: Any) -> None:
    """A refused request is audited under `system`; failing to audit must not change the answer."""
    try:
        async with system_tx(pool) as conn:
            await _audit(conn, SYSTEM_TENANT, action, None, outcome="refused", **details)
    except (OSError, asyncpg.PostgresError):
        log.exception("could not audit a refused billing webhook call")


# -- the route -------------------------------------------------------------------------------
def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def add_billing_route(
    app: web.Application,
    client: Client,
    pool: asyncpg.Pool,
    settings: Any,
    *,
    reply_task_queue: str | None = None,
) -> None:
    """`POST /billing/webhook`. `reply_task_queue`: the bot's outbound queue for the driver's notices."""
    cfg = billing_settings(settings)
    edge = BillingEdge(client, pool, settings.temporal_task_queue, reply_task_queue=reply_task_queue)

    async def webhook(request: web.Request) -> web.Response:
        if cfg.webhook_secret is None:
            return _error(503, "billing webhook is not configured: set AUTODISPATCH_BILLING_WEBHOOK_SECRET")
        raw = await request.read()
        try:
            verify_signature(
                raw, request.headers.get(SIGNATURE_HEADER), cfg.webhook_secret.get_secret_value()
            )
        except SignatureError as exc:
            log.warning("billing webhook from %s refused: %s", request.remote, exc)
            await audit_rejection(pool, "billing_signature_rejected", reason=str(exc), remote=request.remote)
            return _error(400, f"invalid {SIGNATURE_HEADER}: {exc}")
        try:
            event = json.loads(raw)
            if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not event.get("type"):
                raise ValueError("expected a JSON object with `id` and `type`")
        except ValueError as exc:
            await audit_rejection(pool, "billing_event_malformed", reason=str(exc), remote=request.remote)
            return _error(400, f"the signed body is not a provider event: {exc}")
        decision = interpret_event(event, cfg)
        try:
            applied = await edge.apply(
                provider="stripe",
                event_id=event["id"],
                event_type=str(event["type"]),
                payload=event,
                decision=decision,
            )
        except Exception:
            # Not acknowledged: the provider delivers again later (Stripe retries for days).
            log.exception(
                "billing event %s not handed over; answering 503 so the provider retries", event["id"]
            )
            return _error(503, "temporarily unable to record the event; deliver it again later")
        body: dict[str, Any] = {"received": True, "event_id": event["id"]}
        if applied.outcome == "duplicate":
            body["duplicate"] = True
        elif applied.outcome == "unknown_customer":
            body["ignored"] = "unknown customer"
            body["reason"] = applied.reason
        elif applied.outcome == "ignored":
            body["ignored"] = applied.reason
        else:
            body["workflow_id"] = applied.workflow_id
        return web.json_response(body)

    app.router.add_post(BILLING_WEBHOOK_PATH, webhook)
