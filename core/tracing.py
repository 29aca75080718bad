"""OpenTelemetry tracing for Django, Celery and botocore: off unless the standard OTEL_* variables ask for it.

The rule (`tracing_enabled`), checked in this order:

1. off when OTEL_SDK_DISABLED is `true`, or OTEL_TRACES_EXPORTER is `none`;
2. on when OTEL_TRACES_EXPORTER names exporters (`otlp`, `console`, comma-separated);
3. on, exporting OTLP, when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set;
4. off otherwise: other OTEL_* variables (OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER, …) alone turn nothing on.

OTLP goes over HTTP/protobuf; its endpoint, headers and timeout come from the standard
OTEL_EXPORTER_OTLP_* variables, the sampler from OTEL_TRACES_SAMPLER, the service name from
OTEL_SERVICE_NAME or else the process's own (gift-a-voucher-web, gift-a-voucher-worker).

The trace context rides in each Celery message's headers (`traceparent`, beside `request_id`),
so one trace runs from the API request through the SQS publish to the worker's task and its
SMTP send. No personal data leaves the process: every span passes through `_redact` before
export, which drops client addresses, user agents, full URLs (the route template stays),
captured headers and exception messages and stacktraces (their type stays), and runs the span
name and every remaining string attribute through core.logging.redact_secrets (a confirmation
link's token, a credential); the instrumentations never record request bodies, and a delivery
message names a gift id only.

core imports neither config nor any app: config/wsgi.py and config/celery.py call
`configure_tracing`. When it is off, the OpenTelemetry SDK and instrumentations are not imported.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

from opentelemetry import trace

from core.logging import redact_secrets

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

logger = logging.getLogger(__name__)

SUPPORTED_EXPORTERS = ("otlp", "console")
# Health checks and scrapes, many a minute, are not worth a trace (OTEL_PYTHON_DJANGO_EXCLUDED_URLS overrides).
DJANGO_EXCLUDED_URLS = "/healthz,/readyz,/metrics"

# Attributes that would name or locate a person, or carry a secret (a URL's token, a captured header).
PRIVATE_ATTRIBUTES = frozenset(
    {
        "http.url",
        "url.full",
        "http.target",
        "url.path",
        "url.query",
        "http.client_ip",
        "client.address",
        "client.port",
        "net.peer.ip",
        "net.peer.port",
        "net.peer.name",
        "net.sock.peer.addr",
        "net.sock.peer.port",
        "net.sock.peer.name",
        "network.peer.address",
        "network.peer.port",
        "http.user_agent",
        "user_agent.original",
    }
)
PRIVATE_ATTRIBUTE_PREFIXES = ("http.request.header.", "http.response.header.", "enduser.", "user.")
EXCEPTION_EVENT_KEPT = frozenset({"exception.type", "exception.escaped"})

_lock = threading.Lock()
_provider: TracerProvider | None = None
_instrumentors: list = []


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def _exporter_names() -> list[str]:
    """The exporters OTEL_TRACES_EXPORTER names, lower-cased; `otlp` when only an OTLP endpoint is set."""
    if _env("OTEL_SDK_DISABLED").lower() == "true":
        return []
    names = [name.strip().lower() for name in _env("OTEL_TRACES_EXPORTER").split(",") if name.strip()]
    if names:
        return [] if "none" in names else names
    if _env("OTEL_EXPORTER_OTLP_ENDPOINT") or _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return ["otlp"]
    return []


def tracing_enabled() -> bool:
    """Whether the environment asks for tracing (the rule in this module's docstring)."""
    return bool(_exporter_names())


def _exporters_from_environment() -> list[SpanExporter]:
    exporters: list[SpanExporter] = []
    for name in _exporter_names():
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            protocol = _env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or _env("OTEL_EXPORTER_OTLP_PROTOCOL")
            if protocol and protocol != "http/protobuf":
                logger.warning("tracing: OTLP protocol %r is not installed; exporting over http/protobuf", protocol)
            exporters.append(OTLPSpanExporter())
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter())
        else:
            supported = ", ".join(SUPPORTED_EXPORTERS)
            logger.error("tracing: OTEL_TRACES_EXPORTER %r is not supported (only %s); ignored", name, supported)
    return exporters


def configure_tracing(
    service_name: str, *, exporter: SpanExporter | None = None, instrument_django: bool = True
) -> TracerProvider | None:
    """Set up tracing for this process and instrument Celery, botocore and (unless told not to) Django.

    Without `exporter`, does nothing and returns None unless `tracing_enabled()`; otherwise exports
    through a BatchSpanProcessor to the exporters the environment names, and becomes the global
    tracer provider. With `exporter` (tests), exports to it through a SimpleSpanProcessor, whatever
    the environment says, and leaves the global provider alone. Idempotent: a second call returns
    the provider of the first. Django must be instrumented before its handler loads the middleware.
    """
    global _provider
    with _lock:
        if _provider is not None:
            return _provider
        if exporter is None and not tracing_enabled():
            return None
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        if exporter is not None:
            processors = [SimpleSpanProcessor(exporter)]
        else:
            processors = [BatchSpanProcessor(each) for each in _exporters_from_environment()]
            if not processors:
                return None
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: _env("OTEL_SERVICE_NAME") or service_name}))
        for processor in processors:
            provider.add_span_processor(_RedactingSpanProcessor(processor))
        if exporter is None:
            trace.set_tracer_provider(provider)
        _instrument(provider, instrument_django=instrument_django)
        _provider = provider
        logger.info("tracing on service=%s", provider.resource.attributes.get(SERVICE_NAME))
        return provider


def _instrument(provider: TracerProvider, *, instrument_django: bool) -> None:
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    wanted = [(CeleryInstrumentor(), {}), (BotocoreInstrumentor(), {})]
    if instrument_django:
        from opentelemetry.instrumentation.django import DjangoInstrumentor

        configured = _env("OTEL_PYTHON_DJANGO_EXCLUDED_URLS") or _env("OTEL_PYTHON_EXCLUDED_URLS")
        wanted.append((DjangoInstrumentor(), {"excluded_urls": None if configured else DJANGO_EXCLUDED_URLS}))
    for instrumentor, options in wanted:
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=provider, **options)
            _instrumentors.append(instrumentor)


def shutdown_tracing() -> None:
    """Export what is buffered, undo the instrumentation and forget the provider (worker exit, tests)."""
    global _provider
    with _lock:
        while _instrumentors:
            _instrumentors.pop().uninstrument()
        if _provider is not None:
            _provider.shutdown()
            _provider = None


def get_tracer(name: str) -> trace.Tracer:
    """A tracer for the application's own spans: the configured provider's; a no-op one when tracing is off."""
    provider = _provider
    return provider.get_tracer(name) if provider is not None else trace.get_tracer(name)


def _is_private(key: str) -> bool:
    return key in PRIVATE_ATTRIBUTES or key.startswith(PRIVATE_ATTRIBUTE_PREFIXES)


def _scrubbed(value: object) -> object:
    """An attribute value with any secret core.logging knows (a link's token, a credential) redacted."""
    if isinstance(value, str):
        return redact_secrets(value)
    if isinstance(value, tuple | list):
        return tuple(redact_secrets(item) if isinstance(item, str) else item for item in value)
    return value


def _redact(span: ReadableSpan) -> ReadableSpan:
    """The span without personal data: see the module docstring. Unchanged when it has none."""
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.trace import Status

    original = dict(span.attributes or {})
    attributes = {key: _scrubbed(value) for key, value in original.items() if not _is_private(key)}
    name = redact_secrets(span.name)
    exceptions = [event for event in span.events if event.name == "exception"]
    if attributes == original and name == span.name and not exceptions and not span.status.description:
        return span
    events = [
        Event(event.name, {key: value for key, value in event.attributes.items() if key in EXCEPTION_EVENT_KEPT},
              event.timestamp) if event.name == "exception" and event.attributes else event
        for event in span.events
    ]  # fmt: skip
    return ReadableSpan(
        name=name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=events,
        links=span.links,
        kind=span.kind,
        status=Status(span.status.status_code),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class _RedactingSpanProcessor:
    """Hands each ended span, redacted, to the processor that exports it (a SpanProcessor, duck-typed
    so that this module imports the SDK only when tracing is on)."""

    def __init__(self, processor) -> None:
        self._processor = processor

    def on_start(self, span, parent_context=None) -> None:
        self._processor.on_start(span, parent_context=parent_context)

    def _on_ending(self, span) -> None:
        self._processor._on_ending(span)

    def on_end(self, span: ReadableSpan) -> None:
        self._processor.on_end(_redact(span))

    def shutdown(self) -> None:
        self._processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._processor.force_flush(timeout_millis)
