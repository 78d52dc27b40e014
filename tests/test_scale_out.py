"""`autodispatch up --workers N`: more worker processes join the stack and share its flows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType

from schemas.telegram import main_workflow_id
from tests.conftest import Outside, Postgres, stack_settings
from tests.test_e2e import events_of, finished, new_driver, replies, running, send

pytestmark = pytest.mark.e2e


async def test_two_worker_processes_share_the_orders_and_stop_with_the_stack(
    tmp_path: Path, postgres: Postgres, temporal_dev, outside: Outside
) -> None:
    settings = stack_settings(tmp_path, postgres, temporal_dev, outside)
    async with running(settings, workers=2) as stack:
        assert [p.is_alive() for p in stack.worker_processes] == [True]
        drivers = [await new_driver(stack, outside) for _ in range(3)]
        sent = [
            (
                chat,
                calendar,
                send(outside, stack, chat, f"завтра 11:{i:02d} Внуково → Тверская {i + 1}, 1500₽"),
            )
            for i in range(24)
            for chat, calendar, _ in [drivers[i % 3]]
        ]
        results = await asyncio.gather(*(finished(stack, s["update_id"]) for _, _, s in sent))
        assert [r.outcome for r in results] == ["event_created"] * 24
        for chat, calendar, _ in drivers:
            assert len(await events_of(outside, calendar)) == 8
            assert len(replies(outside, stack, chat)) == 8
        assert stack.client is not None and stack.bot is not None
        identities: set[str] = set()
        for _, _, s in sent:
            handle = stack.client.get_workflow_handle(main_workflow_id(stack.bot.id, s["update_id"]))
            async for event in handle.fetch_history_events():
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                    identities.add(event.workflow_task_started_event_attributes.identity.split("@")[0])
        pids = {str(p.pid) for p in stack.worker_processes}
        assert pids & identities, "the second process ran some of the flows"
        processes = list(stack.worker_processes)
    assert not any(p.is_alive() for p in processes), "stopped with the stack"
