"""JSON log lines: whose work each line is about, and no personal data at INFO."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from autodispatch.context import working_for
from autodispatch.embedded import EmbeddedTemporal
from autodispatch.logs import JsonFormatter
from autodispatch.settings import Settings
from tests.conftest import Outside, Postgres, stack_settings
from tests.test_e2e import finished, new_driver, running, send

PHONE = "9161234567"


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter())
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@contextmanager
def json_lines() -> Iterator[Lines]:
    handler, root = Lines(), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_a_line_is_one_json_object_with_the_work_it_belongs_to() -> None:
    with json_lines() as out, working_for("acme", "wf-1", "o-1"):
        logging.getLogger("autodispatch.test").info("event %s written", "e1")
    (line,) = out.lines
    assert line["message"] == "event e1 written" and line["level"] == "INFO"
    assert (line["tenant_id"], line["workflow_id"], line["order_id"]) == ("acme", "wf-1", "o-1")


def test_json_is_the_default_outside_sandbox_mode(tmp_path: Path) -> None:
    live = Settings(_env_file=None, telegram_bot_token="1:x", google_api_endpoint="http://127.0.0.1:1")  # type: ignore[call-arg]
    assert live.json_logs
    assert not Settings(_env_file=None).json_logs  # type: ignore[call-arg]
    assert Settings(_env_file=None, log_format="json").json_logs  # type: ignore[call-arg]


async def test_an_orders_activity_lines_carry_tenant_workflow_and_order_and_no_personal_data(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        chat_id, _, tenant = await new_driver(stack, outside)
        with json_lines() as out:
            sent = send(outside, stack, chat_id, f"завтра 9:30 Внуково → Тверская 7, 2500₽, Анна +7 {PHONE}")
            result = await finished(stack, sent["update_id"])
        assert result.outcome == "event_created"
        written = [
            line for line in out.lines if line["message"].startswith(f"event {result.order_id} written")
        ]
        assert written, out.lines
        (line,) = written
        assert line["tenant_id"] == tenant and line["order_id"] == result.order_id
        assert line["workflow_id"] and line["activity_type"] == "create_event"
        for line in out.lines:
            text = json.dumps(line, ensure_ascii=False)
            assert PHONE not in text and "Тверская" not in text and "Анна" not in text, line
