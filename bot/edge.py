"""The thin edge: hand each Telegram update to Temporal, acknowledge only once Temporal has it."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from temporalio.client import Client
from temporalio.common import Priority, SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from autodispatch import metrics
from autodispatch.codec import hint_tenant
from autodispatch.db import system_tx
from schemas.telegram import TelegramUpdateReceived, main_workflow_id
from workflows.ids import CHAT_ID, TENANT_ID
from workflows.main import MainWorkflow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChatRoute:
    tenant_id: str | None
    task_queue: str | None


class ChatRouting:
    """Which tenant (and so which task queue) a chat belongs to, read from the whitelist.

    Cached briefly: a whitelist change reaches routing within `ttl` seconds; the workflow itself
    always re-reads the whitelist, so a stale route only affects which worker runs the flow.
    """

    def __init__(self, pool: asyncpg.Pool | None, ttl: float = 30.0) -> None:
        self.pool = pool
        self.ttl = ttl
        self._cache: dict[int, tuple[float, ChatRoute]] = {}

    async def route(self, chat_id: int) -> ChatRoute:
        hit = self._cache.get(chat_id)
        now = time.monotonic()
        if hit and hit[0] > now:
            return hit[1]
        if self.pool is None:
            return ChatRoute(None, None)
        async with system_tx(self.pool) as conn:
            row = await conn.fetchrow(
                "SELECT d.tenant_id, t.task_queue FROM drivers d JOIN tenants t USING (tenant_id) WHERE d.chat_id = $1",
                chat_id,
            )
        route = ChatRoute(row["tenant_id"], row["task_queue"]) if row else ChatRoute(None, None)
        self._cache[chat_id] = (now + self.ttl, route)
        return route


class TemporalEdge:
    def __init__(self, client: Client, task_queue: str, routing: ChatRouting) -> None:
        self.client = client
        self.task_queue = task_queue
        self.routing = routing

    async def hand_over(
        self,
        received: TelegramUpdateReceived,
        workflow: Callable[[Any, TelegramUpdateReceived], Awaitable[Any]] = MainWorkflow.run,
    ) -> bool:
        """Start the flow for this update (MainWorkflow unless a handler names another, e.g. the
        invoice flow of /subscribe). True if started now, False if it already was (redelivery).

        Raises when Temporal does not accept it: the caller must then not acknowledge the update.
        """
        route = await self.routing.route(received.chat_id)
        attrs = [SearchAttributePair(CHAT_ID, str(received.chat_id))]
        if route.tenant_id:
            attrs.append(SearchAttributePair(TENANT_ID, route.tenant_id))
        workflow_id = main_workflow_id(received.bot_id, received.update_id)
        hint_tenant(self.client.data_converter, workflow_id, route.tenant_id)  # the payload's tenant tag
        try:
            await self.client.start_workflow(
                workflow,
                received,
                id=workflow_id,
                task_queue=route.task_queue or self.task_queue,
                # A closed workflow with this id means the update was handled: never run it again.
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=TypedSearchAttributes(attrs),
                priority=Priority(fairness_key=route.tenant_id or "unknown"),
            )
        except WorkflowAlreadyStartedError:
            log.info("update %s already handed over", received.update_id)
            return False
        metrics.update_received(route.tenant_id, received.kind)
        return True
