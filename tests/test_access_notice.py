"""#6: a driver an admin approves hears it in Telegram, once per approval, even if Temporal was down
at that moment (the notice is written with the approval; the reconciler sends what is pending)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from autodispatch import cli_drivers
from autodispatch.agenda_sync import request_agenda_sync
from autodispatch.db import system_tx
from autodispatch.embedded import EmbeddedTemporal
from schemas.agenda import ReconcileInput
from tests.conftest import Outside, Postgres, stack_settings
from tests.test_e2e import new_driver, running, token_of
from workflows.agenda import AgendaReconcileWorkflow

pytestmark = pytest.mark.e2e


async def _make_pending(stack, outside: Outside, chat_id: int) -> None:  # noqa: ANN001 - Stack
    """A driver who registered through the bot (so the chat exists for it) and waits for approval."""
    outside.telegram.add_chat(token_of(stack), chat_id)
    async with system_tx(stack.pool) as conn:
        await conn.execute("UPDATE drivers SET status = 'pending' WHERE chat_id = $1", chat_id)


async def _notice(pool, chat_id: int) -> str | None:  # noqa: ANN001
    async with system_tx(pool) as conn:
        return await conn.fetchval("SELECT access_notice FROM drivers WHERE chat_id = $1", chat_id)


async def _audit(pool, chat_id: int) -> list[tuple[str, str]]:  # noqa: ANN001
    async with system_tx(pool) as conn:
        rows = await conn.fetch(
            "SELECT action, outcome FROM audit_log WHERE chat_id = $1 AND action = 'driver_access_notice'",
            chat_id,
        )
    return [(r["action"], r["outcome"]) for r in rows]


def _texts(outside: Outside, token: str, chat_id: int) -> list[str]:
    return [m["text"] for m in outside.telegram.sent(token, chat_id) if m["method"] == "sendMessage"]


async def _startup_reconcile_done(stack) -> None:  # noqa: ANN001
    """The reconciler run the worker starts with would send what an approval leaves pending, racing the
    test's own steps: it finishes first (its 10-minute Schedule is not due meanwhile)."""
    async with asyncio.timeout(60):
        await stack.client.get_workflow_handle("agenda-reconcile-start").result()


async def _until(check, timeout: float = 60.0) -> None:  # noqa: ANN001
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.1)


async def test_an_approved_driver_is_told_once(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    settings = stack_settings(tmp_path, postgres, temporal_dev, outside)
    async with running(settings) as stack:
        assert stack.pool is not None
        chat_id, _, tenant = await new_driver(stack, outside)
        await _make_pending(stack, outside, chat_id)
        await _startup_reconcile_done(stack)
        token = token_of(stack)
        before = _texts(outside, token, chat_id)

        row = await cli_drivers.approve_driver(stack.pool, settings, chat_id=chat_id, verify=False)
        assert row["changed"] and await _notice(stack.pool, chat_id)
        assert await request_agenda_sync(settings, tenant, chat_id)  # what `driver approve` does next

        async def told() -> bool:
            return len(_texts(outside, token, chat_id)) > len(before)

        await _until(told)
        await _until(lambda: _audited(stack.pool, chat_id))  # the notice's last step
        [text] = _texts(outside, token, chat_id)[len(before) :]
        assert "Доступ открыт" in text and tenant in text
        assert await _notice(stack.pool, chat_id) is None
        assert await _audit(stack.pool, chat_id) == [("driver_access_notice", "ok")]

        # Approving an active driver changes nothing and says nothing; a later sync finds nothing pending.
        again = await cli_drivers.approve_driver(stack.pool, settings, chat_id=chat_id, verify=False)
        assert not again["changed"]
        await stack.client.execute_workflow(  # type: ignore[union-attr]
            AgendaReconcileWorkflow.run, ReconcileInput(), id=f"reconcile-{uuid.uuid4()}",
            task_queue=settings.temporal_task_queue,
        )  # fmt: skip
        # The reconciler has run (and started whatever was pending): nothing was, so nothing more is said.
        assert await _notice(stack.pool, chat_id) is None
        assert await _audit(stack.pool, chat_id) == [("driver_access_notice", "ok")]
        assert len(_texts(outside, token, chat_id)) == len(before) + 1


async def _audited(pool, chat_id: int) -> bool:  # noqa: ANN001
    return bool(await _audit(pool, chat_id))


async def test_a_notice_missed_while_temporal_was_down_is_sent_by_the_reconciler(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    settings = stack_settings(tmp_path, postgres, temporal_dev, outside)
    async with running(settings) as stack:
        assert stack.pool is not None and stack.client is not None
        token = token_of(stack)
        told_chat, _, _ = await new_driver(stack, outside)
        gone_chat, _, _ = await new_driver(stack, outside)
        await _startup_reconcile_done(stack)
        before = {c: _texts(outside, token, c) for c in (told_chat, gone_chat)}
        for chat in (told_chat, gone_chat):
            await _make_pending(stack, outside, chat)
            # Approved while Temporal was unreachable: no sync request reached the worker.
            await cli_drivers.approve_driver(stack.pool, settings, chat_id=chat, verify=False)
        # One of them was disabled again before anything went out: nothing to announce to them.
        async with system_tx(stack.pool) as conn:
            await conn.execute("UPDATE drivers SET status = 'disabled' WHERE chat_id = $1", gone_chat)

        await stack.client.execute_workflow(
            AgendaReconcileWorkflow.run, ReconcileInput(), id=f"reconcile-{uuid.uuid4()}",
            task_queue=settings.temporal_task_queue,
        )  # fmt: skip
        await _until(lambda: _audited(stack.pool, told_chat))
        await _until(lambda: _audited(stack.pool, gone_chat))
        assert await _notice(stack.pool, told_chat) is None and await _notice(stack.pool, gone_chat) is None
        assert len(_texts(outside, token, told_chat)) == len(before[told_chat]) + 1
        assert _texts(outside, token, gone_chat) == before[gone_chat]
        assert await _audit(stack.pool, told_chat) == [("driver_access_notice", "ok")]
        assert await _audit(stack.pool, gone_chat) == [("driver_access_notice", "skipped")]
