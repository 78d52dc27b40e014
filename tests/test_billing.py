"""Phase 3, billing. The signed webhook end to end (aiohttp route → PostgreSQL → Temporal dev server →
SubscriptionWorkflow on a worker → whitelist and Telegram emulator), Telegram Payments through the real
aiogram Dispatcher, and the subscription's durable timers on the time-skipping server.

Payloads are signed with the `stripe` package's own helper and cross-checked with
`stripe.Webhook.construct_event`, so the scheme is Stripe's, not just ours."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
import stripe
from aiogram import Bot, Dispatcher
from aiogram.types import Update
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.billing import BillingActivities
from activities.store import StoreActivities
from activities.telegram import TelegramActivities
from autodispatch import admin
from autodispatch.db import system_tx
from autodispatch.embedded import EmbeddedTemporal
from autodispatch.settings import Settings
from autodispatch.temporal import connect
from autodispatch.texts import format_until
from bot.billing import (
    BILLING_WEBHOOK_PATH,
    SIGNATURE_HEADER,
    SignatureError,
    add_billing_route,
    verify_signature,
)
from bot.dispatcher import make_bot
from bot.edge import ChatRouting, TemporalEdge
from bot.handlers import payments
from schemas.billing import (
    BillingSettings,
    PaymentReceived,
    SendInvoiceInput,
    SubscriptionInput,
    billing_settings,
    invoice_payload,
    subscription_workflow_id,
)
from schemas.telegram import outbound_task_queue
from tests.conftest import DATA_CONVERTER, Outside, Postgres, new_bot_token, unique_chat_id
from workers.worker import WORKFLOWS
from workflows.subscription import SubscriptionWorkflow

SECRET = "whsec_" + uuid.uuid4().hex
PRICE = 99000
PRODUCT = "prod_autodispatch_driver"
T = TypeVar("T")


class BillingTestSettings(Settings):
    """Settings with the billing fields under their final names (the lead adds them to Settings)."""

    billing_webhook_secret: SecretStr | None = None
    billing_period_days: int = 30
    telegram_payments_provider_token: SecretStr | None = None
    billing_price_minor: int | None = None
    billing_currency: str = "RUB"
    billing_product_id: str | None = None


async def eventually(check: Callable[[], Awaitable[T]], timeout: float = 90.0) -> T:
    """Wait for an effect of the workflow (it runs on the worker, not in this test)."""
    async with asyncio.timeout(timeout):
        while True:
            result = await check()
            if result:
                return result
            await asyncio.sleep(0.05)


# -- the signature ----------------------------------------------------------------------------------
def test_signature_is_stripes_scheme() -> None:
    body = json.dumps({"id": "evt_1", "object": "event", "type": "invoice.paid", "data": {"object": {}}})
    header = stripe.WebhookSignature.generate_signature_header(body, SECRET)
    assert verify_signature(body.encode(), header, SECRET) == int(header.split(",")[0][2:])
    assert stripe.Webhook.construct_event(body, header, SECRET).id == "evt_1"
    # While a secret is rolled the provider signs with both: either may match.
    rolled = header + ",v1=" + "0" * 64
    assert verify_signature(body.encode(), rolled, SECRET)

    now = time.time()
    stale = stripe.WebhookSignature.generate_signature_header(body, SECRET, timestamp=int(now) - 301)
    future = stripe.WebhookSignature.generate_signature_header(body, SECRET, timestamp=int(now) + 301)
    forged = stripe.WebhookSignature.generate_signature_header(body, "whsec_wrong")
    cases = {
        stale: "stale or replayed",
        future: "stale or replayed",
        forged: "does not match",
        "": "missing Stripe-Signature",
        "t=abc,v1=00": "malformed",
        f"t={int(now)}": "no v1 signature",
        "v1=" + "0" * 64: "no timestamp",
    }
    for bad, reason in cases.items():
        with pytest.raises(SignatureError, match=reason):
            verify_signature(body.encode(), bad, SECRET, now=now)
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(body.replace("evt_1", "evt_2").encode(), header, SECRET)  # a changed body
    for bad in (stale, forged):  # and Stripe's own library refuses the same
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.Webhook.construct_event(body, bad, SECRET)


# -- the webhook on the real stack parts ---------------------------------------------------------------
@dataclass
class Rig:
    settings: BillingTestSettings
    client: Client
    bot: Bot
    url: str
    postgres: Postgres
    outside: Outside
    dispatcher: Dispatcher

    @property
    def token(self) -> str:
        return self.bot.token

    async def post(
        self, event: dict[str, Any], *, header: str | None = None, secret: str = SECRET
    ) -> httpx.Response:
        body = json.dumps(event)
        if header is None:
            header = stripe.WebhookSignature.generate_signature_header(body, secret)
        async with httpx.AsyncClient() as http:
            return await http.post(
                self.url, content=body, headers={SIGNATURE_HEADER: header, "Content-Type": "application/json"}
            )

    async def driver(
        self, status: str = "pending", tenant: str | None = None, activation: str = "payment"
    ) -> tuple[str, int]:
        tenant = tenant or f"t-{uuid.uuid4().hex[:8]}"
        chat = unique_chat_id()
        await admin.add_driver(
            self.postgres.pool,
            tenant=tenant,
            chat_id=chat,
            calendar_id="c@example.com",
            name="Ivan",
            status=status,
        )
        await set_activation(self.postgres.pool, tenant, activation)
        self.outside.telegram.add_chat(self.token, chat, first_name="Ivan", language_code="ru")
        return tenant, chat

    async def status(self, chat: int) -> str:
        async with system_tx(self.postgres.pool) as conn:
            return await conn.fetchval("SELECT status FROM drivers WHERE chat_id = $1", chat)

    def messages(self, chat: int) -> list[dict[str, Any]]:
        return [m for m in self.outside.telegram.sent(self.token, chat) if m["method"] == "sendMessage"]

    async def feed(self, update_id: int) -> None:
        """Hand one update from the emulator to the bot's Dispatcher, as the webhook route does."""
        (raw,) = [
            u["update"] for u in self.outside.telegram.updates(self.token) if u["update_id"] == update_id
        ]
        await self.dispatcher.feed_update(self.bot, Update.model_validate(raw, context={"bot": self.bot}))


@asynccontextmanager
async def rig(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside, **overrides: Any
) -> AsyncIterator[Rig]:
    values: dict[str, Any] = {
        "temporal_address": temporal_dev.address,
        "temporal_task_queue": f"tq-{uuid.uuid4()}",
        "database_url": postgres.owner_dsn,
        "app_database_url": postgres.app_dsn,
        "data_dir": tmp_path,
        "billing_webhook_secret": SECRET,
        "billing_price_minor": PRICE,
        "billing_product_id": PRODUCT,
        "telegram_payments_provider_token": "284685063:TEST:sandbox",
    }
    values.update(overrides)
    settings = BillingTestSettings(_env_file=None, **values)
    client = await connect(settings, temporal_dev.address)
    bot = make_bot(new_bot_token(), outside.telegram.base_url)
    billing = BillingActivities(postgres.pool, bot, billing_settings(settings))
    telegram = TelegramActivities(bot, postgres.pool)
    store = StoreActivities(postgres.pool)
    worker = Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=list(WORKFLOWS),
        activities=[
            billing.apply_change,
            billing.record_audit,
            billing.send_invoice,
            telegram.send_reply,
            store.lookup_driver,
        ],
    )
    # Payments from Telegram reply through the bot's outbound queue, as in the stack.
    outbound = Worker(client, task_queue=outbound_task_queue(bot.id), activities=[telegram.send_reply])
    app = web.Application()
    add_billing_route(app, client, postgres.pool, settings)
    server = TestServer(app)
    await server.start_server()
    dp = Dispatcher(
        edge=TemporalEdge(client, settings.temporal_task_queue, ChatRouting(postgres.pool, ttl=0)),
        billing=billing_settings(settings),
    )
    dp.include_router(payments.build_router())
    try:
        async with worker, outbound:
            yield Rig(
                settings, client, bot, str(server.make_url(BILLING_WEBHOOK_PATH)), postgres, outside, dp
            )
    finally:
        await server.close()
        await bot.session.close()


def checkout(
    tenant: str | None,
    chat: int | str | None,
    *,
    by_reference: bool = False,
    mode: str = "payment",
    payment_status: str = "paid",
    event_type: str = "checkout.session.completed",
) -> dict[str, Any]:
    meta: dict[str, Any] = (
        {} if by_reference or tenant is None else {"tenant_id": tenant, "chat_id": str(chat)}
    )
    meta["product_id"] = PRODUCT  # set on our payment link / session, which a payer cannot change
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "livemode": False,
        "type": event_type,
        "data": {
            "object": {
                "id": f"cs_test_{uuid.uuid4().hex}",
                "object": "checkout.session",
                "mode": mode,
                "payment_status": payment_status,
                "amount_total": PRICE,
                "currency": "rub",
                "metadata": meta,
                "client_reference_id": f"{tenant}:{chat}" if by_reference else None,
            }
        },
    }


def invoice_paid(tenant: str, chat: int, period_end: datetime) -> dict[str, Any]:
    meta = {"tenant_id": tenant, "chat_id": str(chat)}
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "created": int(time.time()),
        "type": "invoice.paid",
        "data": {
            "object": {
                "id": f"in_{uuid.uuid4().hex}",
                "object": "invoice",
                "amount_paid": PRICE,
                "currency": "rub",
                "metadata": {},
                # Where a subscription's metadata reaches its invoices (API 2025+: parent.subscription_details).
                "parent": {"subscription_details": {"metadata": meta}},
                "lines": {
                    "data": [
                        {
                            "period": {"start": int(time.time()), "end": int(period_end.timestamp())},
                            "pricing": {"price_details": {"price": "price_1", "product": PRODUCT}},
                        }
                    ]
                },
            }
        },
    }


async def signals(client: Client, workflow_id: str) -> int:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return sum(1 for e in history.events if e.HasField("workflow_execution_signaled_event_attributes"))


async def billing_rows(postgres: Postgres, event_id: str) -> list[dict[str, Any]]:
    async with system_tx(postgres.pool) as conn:
        return [
            dict(r) for r in await conn.fetch("SELECT * FROM billing_events WHERE event_id = $1", event_id)
        ]


async def workflow_exists(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def test_in_a_fleet_that_approves_new_drivers_a_payment_waits_for_the_admin(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with rig(tmp_path, postgres, temporal_dev, outside) as r:
        tenant, chat = await r.driver("pending", activation="approval")
        resp = await r.post(checkout(tenant, chat))
        assert resp.status_code == 200, resp.text
        (paid,) = await eventually(lambda: _async(r.messages(chat)))
        assert "Оплата получена" in paid["text"] and "подтвердит" in paid["text"]
        assert await r.status(chat) == "pending"  # paid, but the fleet decides who drives for it
        rows = await admin.read_audit(postgres.pool, tenant=tenant)
        assert "payment_awaiting_approval" in [row["action"] for row in rows]
        await admin.set_driver_status(postgres.pool, chat_id=chat, status="active")  # the admin approves
        assert await r.status(chat) == "active"


async def test_paid_checkout_activates_and_a_replay_changes_nothing(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with rig(tmp_path, postgres, temporal_dev, outside) as r:
        tenant, chat = await r.driver("pending")
        event = checkout(tenant, chat)
        body = json.dumps(event)
        header = stripe.WebhookSignature.generate_signature_header(body, SECRET)
        assert stripe.Webhook.construct_event(body, header, SECRET).id == event["id"]

        resp = await r.post(event, header=header)
        assert resp.status_code == 200, resp.text
        workflow_id = subscription_workflow_id(tenant, chat)
        assert resp.json() == {"received": True, "event_id": event["id"], "workflow_id": workflow_id}
        await eventually(lambda: _is(r.status(chat), "active"))
        (paid,) = await eventually(lambda: _async(r.messages(chat)))
        assert "Оплата получена" in paid["text"]

        state = await r.client.get_workflow_handle(workflow_id).query(SubscriptionWorkflow.subscription_state)
        assert state.status == "active" and state.paid_until is not None
        assert timedelta(days=29) < state.paid_until - datetime.now(UTC) <= timedelta(days=30)
        assert format_until(state.paid_until, "Europe/Moscow") in paid["text"]

        # The same delivery again, and a retry signed anew: recorded once, signalled once.
        for again in (await r.post(event, header=header), await r.post(event)):
            assert again.status_code == 200 and again.json()["duplicate"] is True
        assert await signals(r.client, workflow_id) == 1
        assert [row["outcome"] for row in await billing_rows(postgres, event["id"])] == ["signalled"]
        assert len(r.messages(chat)) == 1

        actions = [a["action"] for a in await admin.read_audit(postgres.pool, tenant=tenant)]
        assert actions[0] == "driver_added" and actions.count("billing_event_duplicate") == 2
        assert {"payment_received", "subscription_activated"} <= set(actions)


async def _is(value: Awaitable[T], expected: T) -> bool:
    return await value == expected


async def _async(value: T) -> T:
    return value


async def test_forged_stale_and_unsigned_requests_change_nothing(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with rig(tmp_path, postgres, temporal_dev, outside) as r:
        tenant, chat = await r.driver("pending")
        event = checkout(tenant, chat)
        body = json.dumps(event)
        now = int(time.time())
        attempts = {
            "forged": stripe.WebhookSignature.generate_signature_header(body, "whsec_attacker"),
            "stale": stripe.WebhookSignature.generate_signature_header(body, SECRET, timestamp=now - 301),
            "unsigned": "",
            "garbage": "t=yesterday,v1=zz",
        }
        for name, header in attempts.items():
            resp = await r.post(event, header=header)
            assert resp.status_code == 400, name
            assert resp.json()["error"].startswith("invalid Stripe-Signature:"), name
        # A genuine signature over another body (the amount or the chat changed in transit).
        tampered = checkout(tenant, chat)
        tampered["id"] = event["id"]
        resp = await r.post(tampered, header=stripe.WebhookSignature.generate_signature_header(body, SECRET))
        assert resp.status_code == 400 and "does not match" in resp.json()["error"]

        assert await r.status(chat) == "pending"
        assert await billing_rows(postgres, event["id"]) == []
        assert not await workflow_exists(r.client, subscription_workflow_id(tenant, chat))
        rejected = [
            a for a in await admin.read_audit(postgres.pool, tenant="system", limit=1000)
            if a["action"] == "billing_signature_rejected"
        ]  # fmt: skip
        assert len(rejected) >= len(attempts) + 1 and rejected[-1]["outcome"] == "refused"

        # Misconfigured: no secret at all → 503 (the provider retries later), nothing recorded.
        async with rig(tmp_path, postgres, temporal_dev, outside, billing_webhook_secret=None) as bare:
            resp = await bare.post(event)
            assert resp.status_code == 503 and "AUTODISPATCH_BILLING_WEBHOOK_SECRET" in resp.json()["error"]
        assert await billing_rows(postgres, event["id"]) == []


def _with(event: dict[str, Any], **changes: Any) -> dict[str, Any]:
    obj = {**event["data"]["object"], **changes}
    return {**event, "id": f"evt_{uuid.uuid4().hex}", "data": {"object": obj}}


async def test_only_a_payment_of_our_price_currency_and_product_activates(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    """A paid checkout names its tenant itself (client_reference_id, set by whoever pays): a cheap
    product of the same account, another amount or currency activates nothing."""
    async with rig(tmp_path, postgres, temporal_dev, outside) as r:
        tenant, chat = await r.driver("pending")
        base = checkout(tenant, chat, by_reference=True)
        cheap = _with(base, metadata={"product_id": "prod_sticker_pack"})
        no_product = _with(base, metadata={})
        wrong_amount = _with(base, amount_total=100)
        wrong_currency = _with(base, currency="usd")
        line = {
            "period": {"end": int(time.time()) + 86400},
            "price": {"id": "price_x", "product": "prod_other"},
        }
        other_invoice = invoice_paid(tenant, chat, datetime.now(UTC) + timedelta(days=30))
        other_invoice = _with(other_invoice, lines={"data": [line]})
        for event, reason in [
            (cheap, "not for product"), (no_product, "products named: none"), (wrong_amount, "amount 100"),
            (wrong_currency, "currency 'USD'"), (other_invoice, "not for product"),
        ]:  # fmt: skip
            resp = await r.post(event)
            assert resp.status_code == 200, resp.text
            assert (
                resp.json()["ignored"].startswith("not a payment for our subscription")
                and reason in resp.json()["ignored"]
            )
            (row,) = await billing_rows(postgres, event["id"])
            assert row["outcome"] == "ignored"
        assert not await workflow_exists(r.client, subscription_workflow_id(tenant, chat))
        assert await r.status(chat) == "pending"
        # Ours: the same checkout with our product activates.
        resp = await r.post(base)
        assert resp.status_code == 200 and "workflow_id" in resp.json(), resp.text
        await eventually(lambda: _is(r.status(chat), "active"))

        # In Telegram: an invoice of another price is refused before the money moves, and a payment of
        # another amount is recorded, audited and activates nothing.
        payload = invoice_payload(tenant, chat, 30)
        query = pre_checkout(chat, payload)
        query["pre_checkout_query"]["total_amount"] = PRICE - 1
        await r.feed(outside.telegram.enqueue_update(r.token, query)["update_id"])
        (answer,) = [
            m for m in outside.telegram.sent(r.token, chat) if m["method"] == "answerPreCheckoutQuery"
        ]
        assert answer["ok"] is False
        charge = f"tg_{uuid.uuid4().hex}"
        paid = successful_payment(chat, payload, charge)
        paid["message"]["successful_payment"]["currency"] = "XTR"
        await r.feed(outside.telegram.enqueue_update(r.token, paid)["update_id"])
        (row,) = await billing_rows(postgres, charge)
        assert row["outcome"] == "ignored" and "currency 'XTR'" in row["reason"]
        assert await signals(r.client, subscription_workflow_id(tenant, chat)) == 1


async def test_unknown_customers_and_unused_events_are_ignored_and_nothing_is_lost(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with rig(tmp_path, postgres, temporal_dev, outside) as r:
        stranger_tenant, stranger_chat = f"t-{uuid.uuid4().hex[:8]}", unique_chat_id()
        unknown = checkout(stranger_tenant, stranger_chat)
        for event, expected in [
            (unknown, {"ignored": "unknown customer"}),
            (checkout(None, None), {"ignored": "unknown customer"}),
            (checkout("acme", "not-a-number"), {"ignored": "unknown customer"}),
            (checkout("acme", 1, payment_status="unpaid"), {"ignored": "checkout not paid yet (payment_status=unpaid)"}),
            ({**checkout("acme", 1), "type": "customer.created"}, {"ignored": "event type 'customer.created' is not used"}),
        ]:  # fmt: skip
            resp = await r.post(event)
            assert resp.status_code == 200, resp.text
            assert {k: resp.json()[k] for k in expected} == expected
        assert "not a number" in (await r.post(checkout("acme", "x1"))).json()["reason"]
        assert not await workflow_exists(r.client, subscription_workflow_id(stranger_tenant, stranger_chat))
        assert [row["reason"] for row in await billing_rows(postgres, unknown["id"])] == ["unknown customer"]
        audit = await admin.read_audit(postgres.pool, tenant="system", limit=1000)
        assert any(
            a["action"] == "billing_unknown_customer" and a["details"]["event_id"] == unknown["id"]
            for a in audit
        )

        # The admin whitelists the driver and resends the event from the provider's dashboard: applied now.
        await admin.add_driver(
            postgres.pool,
            tenant=stranger_tenant,
            chat_id=stranger_chat,
            calendar_id="c@x",
            name="N",
            status="pending",
        )
        await set_activation(postgres.pool, stranger_tenant, "payment")
        outside.telegram.add_chat(r.token, stranger_chat)
        resp = await r.post(unknown)
        assert resp.status_code == 200 and resp.json()["workflow_id"] == subscription_workflow_id(
            stranger_tenant, stranger_chat
        )
        await eventually(lambda: _is(r.status(stranger_chat), "active"))
        assert [row["outcome"] for row in await billing_rows(postgres, unknown["id"])] == ["signalled"]


async def test_subscription_checkout_and_its_invoice_are_one_period(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with rig(tmp_path, postgres, temporal_dev, outside) as r:
        tenant, chat = await r.driver("active")  # whitelisted by the admin, now paying
        first = checkout(tenant, chat, by_reference=True, mode="subscription")
        assert (await r.post(first)).status_code == 200
        await eventually(lambda: _async(r.messages(chat)))
        month = datetime.now(UTC) + timedelta(days=31)
        assert (await r.post(invoice_paid(tenant, chat, month))).status_code == 200
        handle = r.client.get_workflow_handle(subscription_workflow_id(tenant, chat))

        async def extended() -> bool:
            state = await handle.query(SubscriptionWorkflow.subscription_state)
            return state.paid_until is not None and abs(state.paid_until - month) < timedelta(seconds=1)

        await eventually(extended)
        assert len(r.messages(chat)) == 1  # the same period: no second "payment received"
        # The next month's invoice is a renewal: it extends and says so.
        assert (await r.post(invoice_paid(tenant, chat, month + timedelta(days=30)))).status_code == 200
        await eventually(lambda: _async(len(r.messages(chat)) == 2))
        assert await r.status(chat) == "active"


async def test_temporal_refusing_gets_503_and_the_retry_is_applied(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with rig(tmp_path, postgres, temporal_dev, outside) as r:
        tenant, chat = await r.driver("pending")
        event = checkout(tenant, chat)
        # The same route in front of a Temporal that refuses (a namespace it does not have).
        broken = await Client.connect(
            temporal_dev.address,
            namespace=f"missing-{uuid.uuid4().hex[:6]}",
            data_converter=DATA_CONVERTER,
        )
        app = web.Application()
        add_billing_route(app, broken, postgres.pool, r.settings)
        server = TestServer(app)
        await server.start_server()
        try:
            body = json.dumps(event)
            async with httpx.AsyncClient() as http:
                resp = await http.post(
                    str(server.make_url(BILLING_WEBHOOK_PATH)),
                    content=body,
                    headers={
                        SIGNATURE_HEADER: stripe.WebhookSignature.generate_signature_header(body, SECRET)
                    },
                )
        finally:
            await server.close()
        assert resp.status_code == 503 and "deliver it again" in resp.json()["error"]
        assert await billing_rows(postgres, event["id"]) == []  # rolled back: the retry is not a duplicate
        assert await r.status(chat) == "pending"
        retry = await r.post(event)
        assert retry.status_code == 200 and "workflow_id" in retry.json()
        await eventually(lambda: _is(r.status(chat), "active"))


# -- Telegram Payments ------------------------------------------------------------------------------
def successful_payment(chat: int, payload: str, charge: str) -> dict[str, Any]:
    return {
        "message": {
            "message_id": 900_000 + uuid.uuid4().int % 1000,
            "date": int(time.time()),
            "chat": {"id": chat, "type": "private", "first_name": "Ivan"},
            "from": {"id": chat, "is_bot": False, "first_name": "Ivan", "language_code": "ru"},
            "successful_payment": {
                "currency": "RUB",
                "total_amount": PRICE,
                "invoice_payload": payload,
                "telegram_payment_charge_id": charge,
                "provider_payment_charge_id": f"prov_{charge}",
            },
        }
    }


def pre_checkout(chat: int, payload: str) -> dict[str, Any]:
    return {
        "pre_checkout_query": {
            "id": str(uuid.uuid4().int % 10**18),
            "from": {"id": chat, "is_bot": False, "first_name": "Ivan", "language_code": "ru"},
            "currency": "RUB",
            "total_amount": PRICE,
            "invoice_payload": payload,
        }
    }


async def test_telegram_subscribe_checkout_and_payment(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with rig(tmp_path, postgres, temporal_dev, outside) as r:
        tenant, chat = await r.driver("pending")
        sent = outside.telegram.user_sends(
            r.token, chat, "/subscribe", from_user={"id": chat, "first_name": "I"}
        )
        await r.feed(sent["update_id"])
        await r.feed(sent["update_id"])  # redelivered: still one invoice
        (invoice,) = await outside.telegram.wait_for_sent(r.token, chat, method="sendInvoice", timeout=30)
        payload = invoice_payload(tenant, chat, 30)
        assert invoice["payload"] == payload and invoice["invoice"]["total_amount"] == PRICE
        assert invoice["invoice"]["currency"] == "RUB"

        # pre_checkout_query: answered at the edge; ours and known → ok, anything else → a clear refusal.
        good = outside.telegram.enqueue_update(r.token, pre_checkout(chat, payload))
        await r.feed(good["update_id"])
        stranger = outside.telegram.enqueue_update(
            r.token, pre_checkout(chat, invoice_payload("nobody", 1, 30))
        )
        await r.feed(stranger["update_id"])
        forged = outside.telegram.enqueue_update(r.token, pre_checkout(chat, "sub:../../etc"))
        await r.feed(forged["update_id"])
        answers = [m for m in outside.telegram.sent(r.token, chat) if m["method"] == "answerPreCheckoutQuery"]
        assert [a["ok"] for a in answers] == [True, False, False]
        assert "не подключён" in answers[1]["error_message"] and "/subscribe" in answers[2]["error_message"]

        # successful_payment → the SubscriptionWorkflow; a redelivery of the update changes nothing.
        paid = outside.telegram.enqueue_update(
            r.token, successful_payment(chat, payload, f"tg_{uuid.uuid4().hex}")
        )
        await r.feed(paid["update_id"])
        await eventually(lambda: _is(r.status(chat), "active"))
        (notice,) = await eventually(lambda: _async(r.messages(chat)))
        assert "Оплата получена" in notice["text"]
        await r.feed(paid["update_id"])
        assert await signals(r.client, subscription_workflow_id(tenant, chat)) == 1

        # A payment whose payload names nobody: recorded and audited for a refund, nothing activated.
        orphan_charge = f"tg_{uuid.uuid4().hex}"
        orphan = outside.telegram.enqueue_update(
            r.token, successful_payment(chat, invoice_payload("nobody", 1, 30), orphan_charge)
        )
        await r.feed(orphan["update_id"])
        (row,) = await billing_rows(postgres, orphan_charge)
        assert (row["outcome"], row["reason"], row["tenant_id"]) == ("ignored", "unknown customer", "system")
        assert not await workflow_exists(r.client, subscription_workflow_id("nobody", 1))

        actions = [a["action"] for a in await admin.read_audit(postgres.pool, tenant=tenant)]
        assert {"invoice_sent", "pre_checkout_approved", "payment_received", "subscription_activated"} <= set(
            actions
        )

        # /subscribe from a chat nobody whitelisted: the usual refusal with its chat id, no invoice.
        outsider = unique_chat_id()
        sent = outside.telegram.user_sends(r.token, outsider, "/subscribe")
        await r.feed(sent["update_id"])
        (refusal,) = await outside.telegram.wait_for_sent(r.token, outsider, method="sendMessage", timeout=30)
        assert str(outsider) in refusal["text"]


async def test_invoice_without_payments_configured_is_a_clear_permanent_error(postgres: Postgres) -> None:
    acts = BillingActivities(postgres.pool, None, BillingSettings(price_minor=None))
    req = SendInvoiceInput(tenant_id="t", workflow_id="wf", step="invoice", chat_id=1)
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(acts.send_invoice, req)
    assert err.value.type == "PaymentsNotConfigured" and err.value.non_retryable
    assert "AUTODISPATCH_TELEGRAM_PAYMENTS_PROVIDER_TOKEN" in str(err.value)
    assert BillingSettings(price_minor=100, currency="XTR").invoices_enabled  # Stars need no provider


# -- the paid period on the time-skipping server ------------------------------------------------------
@asynccontextmanager
async def subscription_worker(
    env: WorkflowEnvironment, postgres: Postgres, bot: Bot, tenant: str, *chats: int
) -> AsyncIterator[str]:
    """A worker for SubscriptionWorkflow with the real activities (PostgreSQL, Telegram emulator). On the
    way out the subscriptions are terminated: they never end by themselves, and their timers, with no
    worker left to run them, would hold the shared time-skipping clock for the tests that follow."""
    task_queue = f"tq-{uuid.uuid4()}"
    billing = BillingActivities(postgres.pool, bot)
    telegram = TelegramActivities(bot, postgres.pool)
    try:
        async with Worker(
            env.client,
            task_queue=task_queue,
            workflows=[SubscriptionWorkflow],
            activities=[billing.apply_change, billing.record_audit, telegram.send_reply],
        ):
            yield task_queue
    finally:
        for chat in chats:
            try:
                await env.client.get_workflow_handle(subscription_workflow_id(tenant, chat)).terminate("done")
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise


def payment(payment_id: str | None = None, days: int = 30) -> PaymentReceived:
    return PaymentReceived(
        payment_id=payment_id or f"stripe:cs_{uuid.uuid4().hex}", provider="stripe", paid_at=datetime.now(UTC),
        period_days=days, language="en",
    )  # fmt: skip


async def pay(env: WorkflowEnvironment, task_queue: str, tenant: str, chat: int, p: PaymentReceived) -> Any:
    return await env.client.start_workflow(
        SubscriptionWorkflow.run,
        SubscriptionInput(tenant_id=tenant, chat_id=chat),
        id=subscription_workflow_id(tenant, chat),
        task_queue=task_queue,
        start_signal="payment_received",
        start_signal_args=[p],
    )


async def set_activation(pool: asyncpg.Pool, tenant: str, activation: str) -> None:
    """ "payment": a self-serve fleet, a payment activates a pending driver; "approval": the admin does."""
    async with system_tx(pool) as conn:
        await conn.execute(
            "UPDATE tenants SET onboarding_activation = $2 WHERE tenant_id = $1", tenant, activation
        )


async def test_warns_three_days_before_and_deactivates_at_the_end(
    time_skipping_env: WorkflowEnvironment, postgres: Postgres, outside: Outside
) -> None:
    env = time_skipping_env
    bot = make_bot(new_bot_token(), outside.telegram.base_url)
    tenant, chat = f"t-{uuid.uuid4().hex[:8]}", unique_chat_id()
    await admin.add_driver(
        postgres.pool, tenant=tenant, chat_id=chat, calendar_id="c@x", name="I", status="pending"
    )
    await set_activation(postgres.pool, tenant, "payment")
    outside.telegram.add_chat(bot.token, chat)

    def texts() -> list[str]:
        return [m["text"] for m in outside.telegram.sent(bot.token, chat) if m["method"] == "sendMessage"]

    async def status() -> str:
        async with system_tx(postgres.pool) as conn:
            return await conn.fetchval("SELECT status FROM drivers WHERE chat_id = $1", chat)

    try:
        async with subscription_worker(env, postgres, bot, tenant, chat) as task_queue:
            handle = await pay(env, task_queue, tenant, chat, payment())
            await eventually(lambda: _async(len(texts()) == 1))
            assert await status() == "active" and "Payment received" in texts()[0]
            state = await handle.query(SubscriptionWorkflow.subscription_state)
            assert state.paid_until is not None
            until = format_until(state.paid_until, "Europe/Moscow")

            await env.sleep(timedelta(days=27, hours=1))
            await eventually(lambda: _async(len(texts()) == 2))
            assert "ends " + until in texts()[1] and "/subscribe" in texts()[1]
            assert await status() == "active"  # warned, still paid

            await env.sleep(timedelta(days=3))
            await eventually(lambda: _is(status(), "disabled"))
            await eventually(lambda: _async(len(texts()) == 3))
            assert "ended " + until in texts()[2]
            state = await handle.query(SubscriptionWorkflow.subscription_state)
            assert state.status == "expired"
            first = await env.client.get_workflow_handle(handle.id, run_id=handle.result_run_id).describe()
            assert first.status == WorkflowExecutionStatus.CONTINUED_AS_NEW  # one period per run

            # Paying again re-activates what billing deactivated.
            await pay(env, task_queue, tenant, chat, payment())
            await eventually(lambda: _is(status(), "active"))
    finally:
        await bot.session.close()
    actions = [a["action"] for a in await admin.read_audit(postgres.pool, tenant=tenant)]
    assert actions == [
        "driver_added",
        "calendar_ownership_vouched",
        "subscription_activated",
        "subscription_warned",
        "subscription_expired",
        "subscription_activated",
    ]


async def paid_until(pool: asyncpg.Pool, tenant: str, chat: int) -> datetime | None:
    async with system_tx(pool) as conn:
        return await conn.fetchval(
            "SELECT paid_until FROM subscriptions WHERE tenant_id = $1 AND chat_id = $2", tenant, chat
        )


async def test_renewal_extends_the_period_and_a_disabled_driver_stays_disabled(
    time_skipping_env: WorkflowEnvironment, postgres: Postgres, outside: Outside
) -> None:
    env = time_skipping_env
    bot = make_bot(new_bot_token(), outside.telegram.base_url)
    tenant, chat = f"t-{uuid.uuid4().hex[:8]}", unique_chat_id()
    await admin.add_driver(
        postgres.pool, tenant=tenant, chat_id=chat, calendar_id="c@x", name="I", status="pending"
    )
    await set_activation(postgres.pool, tenant, "payment")
    blocked_chat = unique_chat_id()
    await admin.add_driver(postgres.pool, tenant=tenant, chat_id=blocked_chat, calendar_id="d@x", name="B")
    await admin.set_driver_status(postgres.pool, chat_id=blocked_chat, status="disabled")
    for c in (chat, blocked_chat):
        outside.telegram.add_chat(bot.token, c)

    def texts(c: int = chat) -> list[str]:
        return [m["text"] for m in outside.telegram.sent(bot.token, c) if m["method"] == "sendMessage"]

    try:
        async with subscription_worker(env, postgres, bot, tenant, chat, blocked_chat) as task_queue:
            await pay(env, task_queue, tenant, chat, payment())
            await eventually(lambda: _async(len(texts()) == 1))
            first_until = await paid_until(postgres.pool, tenant, chat)
            assert first_until is not None

            await env.sleep(timedelta(days=20))
            renewal = payment()
            await pay(env, task_queue, tenant, chat, renewal)
            await pay(env, task_queue, tenant, chat, renewal)  # the same payment signalled twice
            await eventually(lambda: _async(len(texts()) == 2))

            async def renewed() -> bool:
                # Read from the store, not by query: the renewal continued the workflow as new, and the
                # time-skipping test server can hold a query to a run whose first task is not done.
                return await paid_until(postgres.pool, tenant, chat) == first_until + timedelta(days=30)

            await eventually(renewed)
            await env.sleep(timedelta(days=12))  # past the first period's end: still active, no warning yet
            async with system_tx(postgres.pool) as conn:
                status = await conn.fetchval(
                    "SELECT status FROM subscriptions WHERE tenant_id = $1 AND chat_id = $2", tenant, chat
                )
            assert status == "active"  # and no warning yet: the driver got only the two "paid" messages
            async with system_tx(postgres.pool) as conn:
                assert await conn.fetchval("SELECT status FROM drivers WHERE chat_id = $1", chat) == "active"
            assert len(texts()) == 2

            # An admin disabled this driver: the payment is recorded and acknowledged, access stays off.
            await pay(env, task_queue, tenant, blocked_chat, payment())
            await eventually(lambda: _async(len(texts(blocked_chat)) == 1))
            assert "disabled by your admin" in texts(blocked_chat)[0]
            async with system_tx(postgres.pool) as conn:
                assert (
                    await conn.fetchval("SELECT status FROM drivers WHERE chat_id = $1", blocked_chat)
                    == "disabled"
                )
    finally:
        await bot.session.close()
    audit = await admin.read_audit(postgres.pool, tenant=tenant)
    assert [a["action"] for a in audit if a["chat_id"] == chat].count("subscription_activated") == 2
    assert [a["action"] for a in audit if a["chat_id"] == blocked_chat][-1] == "payment_blocked_by_admin"
