"""No secret in a log line or a span: confirmation-link tokens, API tokens and credentials are redacted."""

import io
import json
import logging
import sys

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils.log import DEFAULT_LOGGING
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core import tracing
from core.logging import REDACTED, JsonFormatter, RedactSecretsFilter, redact_secrets

LINK_TOKEN = "Zx9-link_TOKEN.secret42"
API_TOKEN = "0f3c9a7e5b1d4c2a8e6f0b9d7c5a3e1f"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"path=/gifts/verify/{LINK_TOKEN}/ status=404", f"path=/gifts/verify/{REDACTED}/ status=404"),
        (f"Not Found: /gifts/verify/{LINK_TOKEN}/", f"Not Found: /gifts/verify/{REDACTED}/"),
        (
            f"http://127.0.0.1:8000/gifts/verify/{LINK_TOKEN}/?x=1",
            f"http://127.0.0.1:8000/gifts/verify/{REDACTED}/?x=1",
        ),
        (f"/gifts/verify/{LINK_TOKEN}", f"/gifts/verify/{REDACTED}"),
        (f"Authorization: Token {API_TOKEN}", f"Authorization: Token {REDACTED}"),
        (f"Bearer {API_TOKEN}", f"Bearer {REDACTED}"),
        (f"{{'token': '{API_TOKEN}', 'expires_at': None}}", f"{{'token': '{REDACTED}', 'expires_at': None}}"),
        (f'{{"token": "{API_TOKEN}"}}', f'{{"token": "{REDACTED}"}}'),
        ("password=hunter2&username=bob", f"password={REDACTED}&username=bob"),
    ],
)
def test_secrets_are_redacted_from_text(text, expected):
    assert redact_secrets(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "request method=GET path=/api/v1/gifts/ status=200 user=3",
        "gift delivered gift=1b4e28ba-2fa1-11d2-883f-0016d3cca427 attempt=1 channel=email",
        "Token authentication failed",  # a word, not a credential
        "token_hash=…",  # not a secret: what is stored instead of one
    ],
)
def test_text_without_secrets_is_unchanged(text):
    assert redact_secrets(text) == text


def test_the_confirmation_route_is_the_one_redacted():
    """The pattern and config/urls.py name the same path: a moved route would leak its tokens."""
    path = reverse("verify-recipient", args=[LINK_TOKEN])
    assert LINK_TOKEN in path
    assert LINK_TOKEN not in redact_secrets(path)


def record(msg: str, *args, **extra) -> logging.LogRecord:
    made = logging.LogRecord("django.request", logging.WARNING, __file__, 1, msg, args, None)
    made.__dict__.update(extra)
    return made


def test_the_filter_redacts_arguments_extras_and_tracebacks():
    class FakeRequest:
        def __str__(self) -> str:
            return f"<WSGIRequest: GET '/gifts/verify/{LINK_TOKEN}/'>"

    logged = record("Not Found: %s", f"/gifts/verify/{LINK_TOKEN}/", request=FakeRequest(), status_code=404)
    try:
        raise ValueError(f"no link /gifts/verify/{LINK_TOKEN}/")
    except ValueError:
        logged.exc_info = sys.exc_info()

    assert RedactSecretsFilter().filter(logged) is True
    line = JsonFormatter().format(logged)

    assert LINK_TOKEN not in line
    fields = json.loads(line)
    assert fields["message"] == f"Not Found: /gifts/verify/{REDACTED}/"
    assert fields["status_code"] == 404
    assert REDACTED in fields["request"] and REDACTED in fields["exc_info"]


def test_the_filter_leaves_records_without_secrets_alone():
    logged = record("gift delivered gift=%s attempt=%s", "g-1", 2, marker="METRICS", attempt=2)
    RedactSecretsFilter().filter(logged)
    assert (logged.msg, logged.args, logged.attempt) == ("gift delivered gift=%s attempt=%s", ("g-1", 2), 2)


def test_every_configured_handler_redacts():
    assert all("redact_secrets" in handler["filters"] for handler in settings.LOGGING["handlers"].values())


def test_djangos_loggers_keep_no_handler_that_does_not_redact():
    """Django's own defaults (a console handler on `django`, one on `django.server`, mail_admins) are gone."""
    names = ["", *DEFAULT_LOGGING["loggers"], *settings.LOGGING["loggers"]]
    unfiltered = [
        (name, handler)
        for name in names
        for handler in logging.getLogger(name).handlers
        if type(handler).__module__ != "_pytest.logging"
        and not any(isinstance(each, RedactSecretsFilter) for each in handler.filters)
    ]
    assert unfiltered == []


@pytest.fixture
def console_output():
    """What the configured console handler writes, filters and formatter included, in production's JSON."""
    [handler] = [each for each in logging.getLogger().handlers if each.name == "console"]
    stream, formatter = io.StringIO(), handler.formatter
    previous = handler.setStream(stream)
    handler.setFormatter(JsonFormatter())
    yield stream
    handler.setStream(previous)
    handler.setFormatter(formatter)


def test_a_request_for_a_confirmation_link_logs_no_token(console_output, db):
    response = Client().get(f"/gifts/verify/{LINK_TOKEN}/", HTTP_AUTHORIZATION=f"Token {API_TOKEN}")

    assert response.status_code == 404
    output = console_output.getvalue()
    assert "Not Found: /gifts/verify/[redacted]/" in output  # django.request's warning, redacted
    assert "path=/gifts/verify/[redacted]/" in output  # the access log
    assert LINK_TOKEN not in output and API_TOKEN not in output


def test_span_names_and_attributes_are_redacted_before_export():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(tracing._RedactingSpanProcessor(SimpleSpanProcessor(exporter)))

    with provider.get_tracer(__name__).start_as_current_span(f"GET /gifts/verify/{LINK_TOKEN}/") as span:
        span.set_attributes(
            {
                "http.route": "gifts/verify/<str:token>/",
                "http.target": f"/gifts/verify/{LINK_TOKEN}/",
                "custom.referer": f"http://127.0.0.1/gifts/verify/{LINK_TOKEN}/",
                "custom.headers": (f"Authorization: Token {API_TOKEN}",),
            }
        )
    provider.shutdown()

    [exported] = exporter.get_finished_spans()
    assert LINK_TOKEN not in exported.to_json() and API_TOKEN not in exported.to_json()
    assert exported.attributes["http.route"] == "gifts/verify/<str:token>/"
    assert "http.target" not in exported.attributes
