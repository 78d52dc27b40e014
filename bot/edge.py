"""The thin edge: store each Telegram update durably, acknowledge it, and hand it to Temporal.

With an inbox (the stack's way) an update is acknowledged once it is committed in PostgreSQL and the
relay starts its workflow; without one (tests of a single flow) it is started before the acknowledgement.
Either way Telegram's acknowledgement comes only after the update is durably somewhere.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass

import asyncpg
from opentelemetry import context as otel_context
from temporalio.client import Client
from temporalio.common import Priority, SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from autodispatch import metrics
from autodispatch.codec import hint_tenant
from autodispatch.db import SYSTEM_TENANT, system_tx
from bot.dead_letters import DEFAULT_MAX_ATTEMPTS
from bot.inbox import Inbox, InboxItem, InboxRelay
from bot.strangers import StrangerGate
from schemas.telegram import TelegramUpdateReceived, main_workflow_id
from workflows.ids import CHAT_ID, ORDER_ID, TENANT_ID, order_id_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChatRoute:
    tenant_id: str | None
    task_queue: str | None
    driver_name: str | None = None
    calendar_id: str | None = None
    allow_groups: bool = False


class ChatRouting:
    """Which tenant (and so which task queue) a chat belongs to, read from the whitelist.

    Cached briefly: a whitelist change reaches routing within `ttl` seconds; the workflow itself
    always re-reads the whitelist, so a stale route only affects which worker runs the flow.
    """

    def __init__(self, pool: asyncpg.Pool | None, ttl: float = 30.0, unknown_ttl: float = 5.0) -> None:
        self.pool = pool
        self.ttl = ttl
        # Short for a chat nobody knows: a driver whitelisted a moment ago is not taken for a stranger.
        self.unknown_ttl = unknown_ttl
        self._cache: dict[tuple[int, int | None], tuple[float, ChatRoute]] = {}

    async def route(self, chat_id: int, bot_id: int | None = None) -> ChatRoute:
        """A tenant's own bot routes only that tenant's drivers: any other chat is unknown to it."""
        hit = self._cache.get((chat_id, bot_id))
        now = time.monotonic()
        if hit and hit[0] > now:
            return hit[1]
        if self.pool is None:
            return ChatRoute(None, None)
        async with system_tx(self.pool) as conn:
            row = await conn.fetchrow(
                """SELECT d.tenant_id, t.task_queue, d.driver_name, d.calendar_id, t.allow_groups
                   FROM drivers d JOIN tenants t USING (tenant_id) WHERE d.chat_id = $1
                    AND NOT EXISTS (SELECT 1 FROM tenant_bots b WHERE b.bot_id = $2 AND b.tenant_id <> d.tenant_id)""",
                chat_id, bot_id,
            )  # fmt: skip
        route = ChatRoute(**dict(row)) if row else ChatRoute(None, None)
        self._cache[(chat_id, bot_id)] = (now + (self.ttl if row else self.unknown_ttl), route)
        return route


class TemporalEdge:
    def __init__(
        self,
        client: Client,
        task_queue: str,
        routing: ChatRouting,
        inbox: Inbox | None = None,
        bot_ids: list[int] | None = None,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        strangers: StrangerGate | None = None,
    ) -> None:
        self.client = client
        self.task_queue = task_queue
        self.routing = routing
        # What an unknown chat may cost (None: everything is handed over, as in a single flow's tests).
        self.strangers = strangers
        self.relay = (
            InboxRelay(
                inbox,
                self.start_workflow,
                bot_ids or [],
                settle=self.settled,
                concurrency=24,
                max_attempts=max_attempts,
            )  # fmt: skip
            if inbox is not None
            else None
        )

    async def hand_over(self, received: TelegramUpdateReceived, workflow: str = "MainWorkflow") -> bool:
        """Store the update for its flow (MainWorkflow unless a handler names another, e.g. the invoice
        flow of /subscribe). True if stored (or started) now, False if it already was (redelivery) or a
        stranger's update was refused (bot/strangers.py).

        Raises when the update could not be stored: the caller must then not acknowledge it.
        """
        route = await self.routing.route(received.chat_id, received.bot_id)
        if self.strangers is not None and not await self.strangers.admit(
            received, tenant_id=route.tenant_id, allow_groups=route.allow_groups
        ):
            return False  # acknowledged and counted: nothing stored, started or answered
        item = InboxItem(
            tenant_id=route.tenant_id or SYSTEM_TENANT,
            received=received,
            workflow=workflow,
            task_queue=route.task_queue,
            driver_name=route.driver_name,
            calendar_id=route.calendar_id,
            trace_context=otel_context.get_current(),
        )
        if self.relay is None:
            return await self.start_workflow(item)
        stored = await self.relay.inbox.put(item)
        if stored:
            self.relay.push(item)
        return stored

    async def settled(self, item: InboxItem) -> None:
        """Returns once the update's flow has closed, whatever its outcome."""
        received = item.received
        handle = self.client.get_workflow_handle(main_workflow_id(received.bot_id, received.update_id))
        with contextlib.suppress(Exception):
            await handle.result()

    async def start_workflow(self, item: InboxItem) -> bool:
        """Start the update's flow; False if it was started before. Raises if Temporal refuses."""
        received = item.received
        # Given at the start, they ride on it: the flow upserts them only if the whitelist changed since.
        attrs = [SearchAttributePair(CHAT_ID, str(received.chat_id))]
        memo: dict[str, str] | None = None
        if item.tenant_id != SYSTEM_TENANT:
            attrs.append(SearchAttributePair(TENANT_ID, item.tenant_id))
            if received.kind == "text" and received.message_id is not None:
                order_id = order_id_for(item.tenant_id, received.chat_id, received.message_id)
                attrs.append(SearchAttributePair(ORDER_ID, order_id))
            if item.driver_name is not None and item.calendar_id is not None:
                memo = {"driver": item.driver_name, "calendar_id": item.calendar_id}
        workflow_id = main_workflow_id(received.bot_id, received.update_id)
        known = item.tenant_id if item.tenant_id != SYSTEM_TENANT else None
        hint_tenant(self.client.data_converter, workflow_id, known)  # the payload's tenant tag
        token = otel_context.attach(item.trace_context) if item.trace_context is not None else None  # type: ignore[arg-type]
        try:
            await self.client.start_workflow(
                item.workflow,
                received,
                id=workflow_id,
                task_queue=item.task_queue or self.task_queue,
                # A closed workflow with this id means the update was handled: never run it again.
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=TypedSearchAttributes(attrs),
                memo=memo,
                static_summary=update_summary(received, item.driver_name),
                priority=Priority(
                    fairness_key=item.tenant_id if item.tenant_id != SYSTEM_TENANT else "unknown"
                ),
            )
        except WorkflowAlreadyStartedError:
            log.info("update %s already handed over", received.update_id)
            return False
        finally:
            if token is not None:
                otel_context.detach(token)
        metrics.update_received(known, received.kind)
        return True


def update_summary(received: TelegramUpdateReceived, driver_name: str | None) -> str:
    """What the Temporal UI's list shows for the update's flow before anyone opens it."""
    who = driver_name or received.sender_name or str(received.chat_id)
    if received.kind == "callback":
        what = f"button {received.callback_data or ''}".strip()
    else:
        what = " ".join(received.text.split())
        if len(what) > 80:
            what = what[:79] + "…"
    return f"{who}: {what or received.kind}"
