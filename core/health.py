"""Liveness and readiness probes."""

import logging
from collections.abc import Callable

from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

from core.sqs import ALL_QUEUES, queue_url, sqs_client

logger = logging.getLogger(__name__)

READINESS_CACHE_KEY = "readyz:probe"


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_cache() -> None:
    cache.set(READINESS_CACHE_KEY, "1", timeout=10)
    if cache.get(READINESS_CACHE_KEY) != "1":
        raise RuntimeError("cache did not return what was written")


def _check_sqs() -> None:
    # The same lookup a worker makes when it opens its channel (GetQueueUrl for
    # every application queue), so this fails when SQS is down or a queue is missing.
    client = sqs_client()
    for queue in ALL_QUEUES:
        queue_url(client, queue)


CHECKS = {"database": _check_database, "cache": _check_cache, "sqs": _check_sqs}


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Dependencies are readiness's business, so none is checked."""
    return JsonResponse({"status": "ok", "checks": dict.fromkeys(CHECKS, "skipped")})


def readyz(request: HttpRequest) -> JsonResponse:
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            logger.warning("readiness check failed check=%s error=%s", name, type(exc).__name__)
            results[name] = "unavailable"
    ready = all(result == "ok" for result in results.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": results}, status=200 if ready else 503)


PROBES = {"/healthz": healthz, "/readyz": readyz}


class ProbeMiddleware:
    """Answer the probes before Django validates the Host header (and before any redirect or block).

    Load balancers and container runtimes address them to the task's own IP, which no
    DJANGO_ALLOWED_HOSTS can list; a probe reveals nothing, whatever host it names.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = PROBES.get(request.path_info)
        return probe(request) if probe else self.get_response(request)
