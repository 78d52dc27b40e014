"""Replay the committed histories (tests/histories/*.json) against today's workflow code.

A workflow change that would break running workflows fails here; changes go behind workflow.patched().
The negative test proves the check can fail: a reordered MainWorkflow does not replay.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from autodispatch.replay import replay_file
from autodispatch.settings import Settings
from tests.conftest import DATA_CONVERTER
from tests.unpatched_main import MainWorkflowWithoutPatch
from workers.worker import WORKFLOWS

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def load(path: Path) -> WorkflowHistory:
    data = json.loads(path.read_text())
    return WorkflowHistory.from_json(data["workflowId"], data["history"])


def test_there_are_histories_covering_the_main_outcomes() -> None:
    names = {p.stem for p in HISTORIES}
    assert {
        "order_event_created", "unknown_chat", "question_answered", "calendar_not_shared", "order_cancelled",
        "callback_denied", "lifecycle_order_created", "lifecycle_button_confirm",
        "lifecycle_order_workflow_confirmed", "lifecycle_orders_in_one_message", "lifecycle_reschedule_by_phone",
        "calendar_write_activity", "calendar_write_local_activity", "agenda_sync_schedule_only",
        "agenda_sync_with_access_notice", "driver_approved_notice", "picture_order_created",
    } <= names  # fmt: skip


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_committed_history_replays_against_current_code(path: Path) -> None:
    # The encrypting converter every client uses: plain histories from before encryption pass through.
    await Replayer(workflows=list(WORKFLOWS), data_converter=DATA_CONVERTER).replay_workflow(load(path))


async def test_replay_cli_reports_clean_histories(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    ok, report = await replay_file(Path(__file__).parent / "histories" / "order_event_created.json", settings)
    assert ok, report
    assert "replays cleanly" in report


async def test_unpatched_change_is_reported_as_non_deterministic() -> None:
    replayer = Replayer(
        workflows=[MainWorkflowWithoutPatch, *[w for w in WORKFLOWS if w.__name__ != "MainWorkflow"]],
        data_converter=DATA_CONVERTER,
    )
    result = await replayer.replay_workflow(
        load(Path(__file__).parent / "histories" / "order_event_created.json"), raise_on_replay_failure=False
    )
    assert result.replay_failure is not None
    assert "nondetermin" in str(result.replay_failure).lower()
