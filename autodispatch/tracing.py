"""Traces (OpenTelemetry): one trace from the webhook request through the workflow, its activities and
the outgoing Telegram and Google calls. Exported over OTLP/HTTP when AUTODISPATCH_OTLP_ENDPOINT is set
(Jaeger, Tempo, an OpenTelemetry collector); off otherwise: no provider, every span a no-op.

Temporal carries the context in workflow and activity headers (temporalio.contrib.opentelemetry's
TracingInterceptor on every client and so on the workers built from it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

_provider: Any = None  # opentelemetry.sdk.trace.TracerProvider once tracing is on


def use_provider(provider: Any) -> None:
    """Trace into this provider from now on (tests pass one with an in-memory exporter)."""
    global _provider
    _provider = provider


def enabled() -> bool:
    return _provider is not None


def setup_tracing(otlp_endpoint: str | None, service_name: str = "autodispatch") -> None:
    if otlp_endpoint is None or _provider is not None:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    endpoint = otlp_endpoint.rstrip("/")
    if not endpoint.endswith("/v1/traces"):
        endpoint += "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    use_provider(provider)
    import atexit

    atexit.register(provider.shutdown)  # the last spans leave before the process does


def tracer() -> trace.Tracer:
    if _provider is None:
        return trace.NoOpTracer()
    return _provider.get_tracer("autodispatch")


def temporal_interceptors() -> list[Any]:
    """The client interceptors of every Temporal client: tracing when on, nothing otherwise."""
    if _provider is None:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(tracer())]


@contextmanager
def outgoing(name: str, **attributes: str) -> Iterator[None]:
    """A CLIENT span around a call to the outside world (Google, Telegram)."""
    if _provider is None:
        yield
        return
    with tracer().start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes) as span:
        try:
            yield
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
