"""Tracing: one trace from the API request through the SQS publish to the worker's task and its SMTP send.

Both sides run in this process with real components: the Django test client, moto's SQS server,
Celery's embedded test worker (solo pool, the application's own Celery app and queue) and the
aiosmtpd sink. Spans go to the SDK's in-memory exporter through the same redaction as in production.
"""

import importlib
import os
import smtplib
import uuid

import botocore.client
import pytest
import wrapt
from celery.contrib.testing.worker import start_worker
from celery.signals import worker_process_init
from django.conf import settings
from django.db import connections
from opentelemetry import trace
from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.instrumentation.django import DjangoInstrumentor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from config.celery import app as celery_app
from core import sqs as sqs_facts
from core.emails import send_templated_email
from core.tracing import PRIVATE_ATTRIBUTES, configure_tracing, get_tracer, shutdown_tracing, tracing_enabled
from gifting.models import Gift, GiftStatus
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

RECIPIENT = "bob.tracing@example.com"
USER_AGENT = "tracing-test-agent/1.0"
OTEL_MIDDLEWARE = "opentelemetry.instrumentation.django.middleware.otel_middleware._DjangoMiddleware"


@pytest.fixture
def spans():
    """Tracing on, into memory, as the web and worker processes would have it; undone afterwards."""
    exporter = InMemorySpanExporter()
    provider = configure_tracing("gift-a-voucher-test", exporter=exporter)
    assert provider is not None
    assert configure_tracing("gift-a-voucher-web", exporter=InMemorySpanExporter()) is provider  # idempotent
    yield exporter
    shutdown_tracing()
    assert not DjangoInstrumentor().is_instrumented_by_opentelemetry
    assert OTEL_MIDDLEWARE not in settings.MIDDLEWARE


@pytest.fixture
def celery_worker(transactional_db):
    """Celery's embedded worker, in a thread, consuming the gift queue from moto's SQS server."""
    # Starting the solo pool sends worker_process_init in this thread, and Celery's Django fixup then
    # closes this thread's database sockets the raw way: close them properly first.
    connections.close_all()
    with start_worker(
        celery_app,
        pool="solo",
        perform_ping_check=False,
        shutdown_timeout=20,
        queues=[sqs_facts.GIFT_QUEUE],
        loglevel="WARNING",
    ) as worker:
        yield worker


@pytest.fixture
def smtp_email(settings):
    """Real SMTP (to the smtp_sink) in this process, where pytest-django would keep emails in memory."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


@pytest.fixture
def no_otel_environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


def finished(exporter: InMemorySpanExporter, name: str):
    return [span for span in exporter.get_finished_spans() if span.name == name]


def test_one_trace_from_the_request_to_the_smtp_send(spans, sqs, smtp_sink, smtp_email, celery_worker, client):
    response = client.post(
        "/api/v1/gifts/",
        {"recipient_email": RECIPIENT, "amount": "25.00", "currency": "EUR", "message": "Enjoy the tracing!"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
        HTTP_USER_AGENT=USER_AGENT,
    )
    assert response.status_code == 202, response.content
    gift = Gift.objects.get(id=response.json()["id"])

    wait_until(lambda: smtp_sink.messages_for(gift.id), timeout=20, message="no email")
    by_id = wait_until(lambda: _spans_of_a_finished_delivery(spans), timeout=10, message="no task span")
    gift.refresh_from_db()
    assert gift.status == GiftStatus.DELIVERED

    [request] = finished(spans, "POST api/v1/gifts/")
    [smtp] = finished(spans, "smtp.send")
    [publish] = [span for span in finished(spans, "apply_async/gifting.deliver_gift") if span.parent == request.context]
    [send_message] = [span for span in finished(spans, "SQS.SendMessage") if span.parent == publish.context]
    run = by_id[smtp.parent.span_id]

    assert request.kind == SpanKind.SERVER and request.attributes["http.route"] == "api/v1/gifts/"
    assert request.attributes["http.status_code"] == 202
    assert publish.kind == SpanKind.PRODUCER and send_message.kind == SpanKind.CLIENT
    assert send_message.attributes["messaging.destination"] == settings.SQS_QUEUE_PREFIX + sqs_facts.GIFT_QUEUE
    assert run.name == "run/gifting.deliver_gift" and run.kind == SpanKind.CONSUMER
    assert run.attributes["celery.task_name"] == "gifting.deliver_gift"
    assert run.parent.is_remote  # read from the SQS message's headers
    assert smtp.attributes["email.template"] == "gifting/voucher_email"

    # One trace: smtp.send → run → (a retry's run and publish, if SQLite made the first attempt wait) →
    # apply_async (the message's `traceparent` header) → the request.
    chain = [smtp]
    while chain[-1].parent is not None:
        chain.append(by_id[chain[-1].parent.span_id])
    assert chain[-1] is request and chain[-2] is publish
    assert {span.context.trace_id for span in [*chain, send_message]} == {request.context.trace_id}
    assert [span.name for span in chain[:2]] == ["smtp.send", "run/gifting.deliver_gift"]

    # No personal data: no recipient, message, token, client address or user agent in any span.
    exported = "\n".join(span.to_json() for span in spans.get_finished_spans())
    token = client._credentials["HTTP_AUTHORIZATION"].split()[1]
    for private in (RECIPIENT, "bob.tracing", "Enjoy the tracing!", token, USER_AGENT):
        assert private not in exported
    for span in spans.get_finished_spans():
        assert not PRIVATE_ATTRIBUTES & set(span.attributes), span.name


def _spans_of_a_finished_delivery(exporter: InMemorySpanExporter) -> dict | None:
    """The finished spans by span id, once the task span around the smtp.send span has finished."""
    by_id = {span.context.span_id: span for span in exporter.get_finished_spans()}
    smtp = finished(exporter, "smtp.send")
    return by_id if smtp and smtp[0].parent.span_id in by_id else None


def test_a_failed_smtp_send_is_recorded_without_the_servers_text(spans, smtp_sink, smtp_email, transactional_db):
    smtp_sink.default_reply = f"554 5.7.1 <{RECIPIENT}> refused"
    context = {"gift": {"amount": "1.00", "currency": "EUR"}, "sender_name": "Alice", "link": "x", "valid_hours": 1}

    with pytest.raises(smtplib.SMTPDataError):
        send_templated_email(to=RECIPIENT, subject="s", template="gifting/verification_email", context=context)

    [smtp] = finished(spans, "smtp.send")
    assert smtp.status.status_code == StatusCode.ERROR
    assert smtp.attributes["error.type"] == "SMTPDataError"
    assert smtp.attributes["smtp.response.code"] == 554
    assert RECIPIENT not in smtp.to_json() and not smtp.events


def test_exceptions_and_client_details_are_redacted_before_export(spans):
    with pytest.raises(ValueError), get_tracer(__name__).start_as_current_span("work") as span:
        span.set_attributes({"client.address": "203.0.113.7", "http.user_agent": USER_AGENT, "http.route": "x/"})
        raise ValueError(f"no such recipient {RECIPIENT}")

    [work] = finished(spans, "work")
    assert dict(work.attributes) == {"http.route": "x/"}
    assert work.status.status_code == StatusCode.ERROR and not work.status.description
    [event] = work.events
    assert dict(event.attributes) == {"exception.type": "ValueError", "exception.escaped": "False"}


@pytest.mark.parametrize(
    ("environment", "enabled"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "gift-a-voucher", "OTEL_TRACES_SAMPLER": "always_on"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
        ({"OTEL_TRACES_EXPORTER": " ", "OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False),
    ],
)
def test_the_on_off_rule(no_otel_environment, monkeypatch, environment, enabled):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert tracing_enabled() is enabled


def test_with_no_otel_variables_nothing_is_traced_or_instrumented(no_otel_environment, db):
    assert not tracing_enabled()
    assert configure_tracing("gift-a-voucher-web") is None
    worker_process_init.send(sender="test-worker")  # the worker's hook (config/celery.py)
    wsgi = importlib.import_module("config.wsgi")
    assert importlib.reload(wsgi).tracing is None  # the web's hook

    for instrumentor in (DjangoInstrumentor(), CeleryInstrumentor(), BotocoreInstrumentor()):
        assert not instrumentor.is_instrumented_by_opentelemetry, type(instrumentor).__name__
    assert OTEL_MIDDLEWARE not in settings.MIDDLEWARE
    assert not isinstance(botocore.client.BaseClient.__dict__["_make_api_call"], wrapt.ObjectProxy)
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert not get_tracer(__name__).start_span("smtp.send").is_recording()
