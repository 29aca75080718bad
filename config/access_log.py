"""One log line per request: request id, user, method, path, status and latency."""

import logging
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

logger = logging.getLogger("gift_a_voucher.access")


class AccessLogMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        user = getattr(request, "user", None)
        logger.info(
            "request method=%s path=%s status=%s user=%s latency_ms=%.1f",
            request.method,
            request.path,
            response.status_code,
            user.pk if user is not None and user.is_authenticated else "-",
            (time.perf_counter() - started) * 1000,
        )
        return response
