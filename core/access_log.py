"""One log line per request: request id, user, method, path, status, latency, and what the view adds.

This is the web's only access log (the Procfile gives gunicorn none): the path is logged with its
secrets redacted (a confirmation link's token), and no header or body is ever logged.
"""

import logging
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from prometheus_client import Histogram
from rest_framework.request import Request

from core.logging import redact_secrets

logger = logging.getLogger("gift_a_voucher.access")

_FIELDS_ATTRIBUTE = "access_log_fields"

# By the URL pattern, not the path, so ids and tokens never become labels.
REQUEST_DURATION = Histogram(
    "api_request_duration_seconds",
    "Time to answer a request, by route, method and status.",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def add_log_fields(request: HttpRequest | Request, **fields: object) -> None:
    """Append `name=value` pairs to this request's access log line.

    Values are logged as text (booleans as true/false): pass masked data only,
    never an email address, a wallet or a voucher code.
    """
    # DRF's Request wraps the HttpRequest this middleware sees; attributes set on the wrapper stay there.
    http_request = request._request if isinstance(request, Request) else request
    setattr(http_request, _FIELDS_ATTRIBUTE, {**getattr(http_request, _FIELDS_ATTRIBUTE, {}), **fields})


def _format(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


class AccessLogMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = match.route if match is not None else "unmatched"
        REQUEST_DURATION.labels(route=route, method=request.method, status=response.status_code).observe(
            time.perf_counter() - started
        )
        user = getattr(request, "user", None)
        added = getattr(request, _FIELDS_ATTRIBUTE, {})
        extra = "".join(f" {name}={_format(value)}" for name, value in added.items())
        logger.info(
            "request method=%s path=%s status=%s user=%s latency_ms=%.1f%s",
            request.method,
            redact_secrets(request.path),
            response.status_code,
            user.pk if user is not None and user.is_authenticated else "-",
            (time.perf_counter() - started) * 1000,
            extra,
        )
        return response
