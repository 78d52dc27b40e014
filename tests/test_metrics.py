"""GET /metrics on the real stack: one order moves the order counters by exactly one, for its tenant."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from autodispatch.embedded import EmbeddedTemporal, free_port
from autodispatch.settings import Settings, SettingsError
from autodispatch.stack import Stack
from tests.conftest import Outside, Postgres, stack_settings
from tests.test_deploy import assert_deploy_uses_only_exported_metrics
from tests.test_e2e import finished, new_driver, running, send, token_of
from workers.main import serve_metrics


async def exposition(stack: Stack) -> str:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{stack.sandbox.http}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return r.text


async def scrape(stack: Stack) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = await exposition(stack)
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    """The sum over the samples of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


class Delta:
    """How far a metric moved between two scrapes: delta(name, **labels)."""

    def __init__(self, before: dict, after: dict) -> None:
        self.before, self.after = before, after

    def __call__(self, name: str, **labels: str) -> float:
        return value(self.after, name, **labels) - value(self.before, name, **labels)


async def test_one_order_moves_the_order_metrics_by_one_for_its_tenant(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        chat_id, _, tenant = await new_driver(stack, outside)
        before = await scrape(stack)
        sent = send(outside, stack, chat_id, "завтра 9:30 Внуково → Тверская 7, 2500₽")
        assert (await finished(stack, sent["update_id"])).outcome == "event_created"
        after = await scrape(stack)

        moved = Delta(before, after)
        assert moved("autodispatch_telegram_updates_received_total", tenant=tenant, kind="text") == 1
        assert moved("autodispatch_orders_received_total", tenant=tenant) == 1
        assert moved("autodispatch_orders_confirmed_total", tenant=tenant) == 1
        assert moved("autodispatch_orders_failed_total", tenant=tenant) == 0
        assert (
            moved(
                "autodispatch_calendar_requests_total", tenant=tenant, operation="events.insert", outcome="ok"
            )
            == 1
        )
        assert moved("autodispatch_calendar_request_duration_seconds_count", tenant=tenant) >= 1
        assert (
            moved("autodispatch_telegram_requests_total", tenant=tenant, method="sendMessage", outcome="ok")
            == 1
        )
        assert moved("autodispatch_send_budget_wait_seconds_count", tenant=tenant) >= 1
        # The Temporal SDK's own worker metrics come along in the same scrape.
        assert any(name.startswith("temporal_") for name, _ in after), sorted({n for n, _ in after})[:20]
        # And the dashboard and alert rules in deploy/ use only metrics the app exports.
        assert_deploy_uses_only_exported_metrics(await exposition(stack))


async def test_a_question_counts_once_with_the_missing_field(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        chat_id, _, tenant = await new_driver(stack, outside)
        before = await scrape(stack)
        first = send(outside, stack, chat_id, "Внуково → Тверская 7, 2500₽")  # no time
        await outside.telegram.wait_for_sent(token_of(stack), chat_id, 1, timeout=30, method="sendMessage")
        answer = send(outside, stack, chat_id, "завтра в 9:30")
        assert (await finished(stack, answer["update_id"])).outcome == "answer_forwarded"
        assert (await finished(stack, first["update_id"])).outcome == "event_created"
        after = await scrape(stack)

        moved = Delta(before, after)
        assert moved("autodispatch_questions_asked_total", tenant=tenant) == 1
        assert moved("autodispatch_parse_misses_total", tenant=tenant, field="pickup_at") == 1
        assert moved("autodispatch_orders_confirmed_total", tenant=tenant) == 1


async def test_a_worker_process_serves_its_own_metrics_and_a_taken_port_names_the_setting(
    tmp_path: Path,
) -> None:
    port = free_port()
    settings = Settings(_env_file=None, data_dir=tmp_path, worker_metrics_port=port)  # type: ignore[call-arg]
    runner = await serve_metrics(settings)
    assert runner is not None
    try:
        async with httpx.AsyncClient() as http:
            r = await http.get(f"http://127.0.0.1:{port}/metrics")
        assert r.status_code == 200 and "autodispatch_orders_received_total" in r.text
        with pytest.raises(SettingsError, match="^configuration error: AUTODISPATCH_WORKER_METRICS_PORT: "):
            await serve_metrics(settings)  # the port is taken now, by the first
    finally:
        await runner.cleanup()
    assert await serve_metrics(Settings(_env_file=None, data_dir=tmp_path)) is None  # type: ignore[call-arg]
