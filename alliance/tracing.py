"""OpenTelemetry tracing, off by default (`ALLIANCE_TRACING=otlp` or `console` switches it on).

One trace follows a request from the API through Temporal into the workflow and its activities and on to the Kafka
publish: FastAPI's instrumentation opens the server span; Temporal's `TracingInterceptor` (on the client, so the
worker uses it too) carries the context in Temporal headers into the workflow and each activity; the publishing
activity opens a producer span per batch and writes the W3C `traceparent` into each record's headers, so a
downstream consumer can continue the trace. Logs carry `trace_id` and `span_id` while a span is current.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from temporalio.client import Interceptor

from alliance.settings import Settings

_provider: TracerProvider | None = None


def enabled(settings: Settings) -> bool:
    return settings.tracing != "off" or _provider is not None


def configure(settings: Settings, service: str, exporter: SpanExporter | None = None) -> TracerProvider | None:
    """Sets the process's tracer provider when tracing is on (or an exporter is given, as tests do); once per
    process."""
    global _provider
    if _provider is not None:
        return _provider
    if settings.tracing == "off" and exporter is None:
        return None
    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "service.version": version("alliance-workflows")})
    )
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif settings.tracing == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def temporal_interceptors(settings: Settings) -> list[Interceptor]:
    if not enabled(settings):
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor()]


def instrument_api(app: Any, settings: Settings) -> None:
    if enabled(settings):
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, tracer_provider=_provider, excluded_urls="/metrics,/health")


def current_ids() -> dict[str, str]:
    """trace_id and span_id of the current span, for log lines (empty when no span is recording)."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}
