"""One trace from the webhook request to the Calendar call (in-memory exporter, the real stack)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from autodispatch import tracing
from autodispatch.embedded import EmbeddedTemporal
from autodispatch.settings import SettingsError, load_settings
from tests.conftest import Outside, Postgres, stack_settings
from tests.test_e2e import finished, new_driver, running, send


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    try:
        yield exporter
    finally:
        tracing.use_provider(None)


async def test_the_webhook_span_and_the_calendar_span_share_one_trace(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside,
    spans: InMemorySpanExporter,
) -> None:  # fmt: skip
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        chat_id, _, _ = await new_driver(stack, outside)
        sent = send(outside, stack, chat_id, "завтра 9:30 Внуково → Тверская 7, 2500₽")
        assert (await finished(stack, sent["update_id"])).outcome == "event_created"
    finished_spans = spans.get_finished_spans()
    names = [s.name for s in finished_spans]
    (webhook,) = [s for s in finished_spans if s.name == "POST /telegram/webhook"]
    (insert,) = [s for s in finished_spans if s.name == "calendar events.insert"]
    assert insert.context.trace_id == webhook.context.trace_id, names
    in_trace = {s.name for s in finished_spans if s.context.trace_id == webhook.context.trace_id}
    assert "StartWorkflow:MainWorkflow" in in_trace and "RunActivity:create_event" in in_trace, in_trace
    assert "telegram sendMessage" in in_trace, in_trace


def test_tracing_is_off_without_an_endpoint_and_the_endpoint_is_checked() -> None:
    assert not tracing.enabled() and tracing.temporal_interceptors() == []
    with pytest.raises(SettingsError, match="AUTODISPATCH_OTLP_ENDPOINT: .*http"):
        load_settings(_env_file=None, otlp_endpoint="jaeger:4318")
