"""Replay the committed histories (tests/histories/*.json) against today's workflow code.

A workflow change that would break running workflows fails here; changes go behind workflow.patched().
Every workflow type the worker registers and every `workflow.patched()` id in workflows/ has a history
(recorded by tests/record_histories.py). The negative tests prove the check can fail: the real
MainWorkflow source with a realistic unguarded edit does not replay a history recorded before it.
"""

from __future__ import annotations

import ast
import importlib
import sys
import types
from pathlib import Path

import pytest
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from autodispatch.replay import replay_file
from autodispatch.settings import Settings
from tests.conftest import DATA_CONVERTER
from tests.record_histories import history_patches, load_history
from workers.worker import WORKFLOWS

ROOT = Path(__file__).resolve().parents[1]
HISTORY_DIR = Path(__file__).parent / "histories"
HISTORIES = sorted(HISTORY_DIR.glob("*.json"))


def patch_ids_in_source() -> set[str]:
    """Every id passed to `workflow.patched(...)` in workflows/, constants resolved in their module."""
    ids: set[str] = set()
    for path in sorted((ROOT / "workflows").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "patched"
            ):
                (arg,) = node.args
                if isinstance(arg, ast.Constant):
                    ids.add(arg.value)
                else:
                    assert isinstance(arg, ast.Name), ast.dump(arg)
                    ids.add(getattr(importlib.import_module(f"workflows.{path.stem}"), arg.id))
    return ids


def test_every_registered_workflow_type_has_a_history() -> None:
    recorded = {
        load_history(p).events[0].workflow_execution_started_event_attributes.workflow_type.name
        for p in HISTORIES
    }
    registered = {w.__temporal_workflow_definition.name for w in WORKFLOWS}  # type: ignore[attr-defined]
    assert len(registered) >= 12
    assert registered - recorded == set(), "record them: python -m tests.record_histories"


def test_every_patched_branch_has_a_history() -> None:
    in_source = patch_ids_in_source()
    assert {"order-lifecycle", "llm-fallback", "onboarding", "oauth-connect"} <= in_source  # the parse works
    taken = {patch for p in HISTORIES for patch in history_patches(load_history(p))}
    assert in_source - taken == set(), "record them: python -m tests.record_histories"


def test_the_branches_guarded_by_one_patch_at_two_places_are_both_recorded() -> None:
    """agenda-settings guards the /today command and the settings card's press; order-lifecycle a
    message and an order card's press: a history of each."""
    names = {p.stem for p in HISTORIES}
    assert {"lifecycle_command_today", "main_callback__agenda_settings"} <= names
    assert {"lifecycle_order_created", "lifecycle_button_confirm"} <= names
    assert {"agenda_sync_with_access_notice", "agenda_reconcile__access_notice"} <= names
    assert {"calendar_connected", "calendar_connected__resumed_order_lifecycle"} <= names


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
    await Replayer(workflows=list(WORKFLOWS), data_converter=DATA_CONVERTER).replay_workflow(
        load_history(path)
    )


async def test_replay_cli_reports_clean_histories(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    ok, report = await replay_file(HISTORY_DIR / "order_event_created.json", settings)
    assert ok, report
    assert "replays cleanly" in report


# Edits a developer could plausibly make to workflows/main.py without a patch: (name, text as it is in
# the source, the edit, a history recorded before it).
UNGUARDED_EDITS = [
    (
        "llm_fallback_guard_dropped",  # "every worker has the LLM step by now"
        'if parsed.missing_fields() and workflow.patched("llm-fallback"):',
        "if parsed.missing_fields():",
        "question_answered",
    ),
    (
        "onboarding_guard_dropped",
        'if update.kind != "callback" and workflow.patched("onboarding"):',
        'if update.kind != "callback":',
        "unknown_chat",
    ),
    (
        "question_sent_before_it_is_remembered",  # two activity calls reordered
        "await self._set_question(driver, True)\n"
        '            await self._reply(update, f"ask-{asked}", texts.t(lang, f"ask_{missing[0]}"))',
        'await self._reply(update, f"ask-{asked}", texts.t(lang, f"ask_{missing[0]}"))\n'
        "            await self._set_question(driver, True)",
        "question_answered",
    ),
]


def main_workflow_with(monkeypatch: pytest.MonkeyPatch, original: str, edited: str) -> type:
    """workflows/main.py's real source with one edit, executed as a module of its own."""
    source = (ROOT / "workflows" / "main.py").read_text()
    assert source.count(original) == 1, f"the edit no longer applies to workflows/main.py: {original!r}"
    module = types.ModuleType("edited_main_workflow")
    module.__file__ = str(ROOT / "workflows" / "main.py")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(source.replace(original, edited), module.__file__, "exec"), module.__dict__)
    return module.MainWorkflow


async def replay_with_main(main: type, history: str) -> Exception | None:
    others = [w for w in WORKFLOWS if w.__name__ != "MainWorkflow"]
    replayer = Replayer(
        workflows=[main, *others],
        data_converter=DATA_CONVERTER,
        workflow_runner=UnsandboxedWorkflowRunner(),  # the edited module lives only in memory
    )
    result = await replayer.replay_workflow(
        load_history(HISTORY_DIR / f"{history}.json"), raise_on_replay_failure=False
    )
    return result.replay_failure


@pytest.mark.parametrize("edit", UNGUARDED_EDITS, ids=lambda e: e[0])
async def test_an_unguarded_edit_of_the_real_workflow_fails_replay(
    edit: tuple[str, str, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, original, edited, history = edit
    # The same source executed the same way, unedited, replays: the failure below is the edit's.
    assert await replay_with_main(main_workflow_with(monkeypatch, original, original), history) is None
    failure = await replay_with_main(main_workflow_with(monkeypatch, original, edited), history)
    assert failure is not None
    assert "nondetermin" in str(failure).lower(), failure
