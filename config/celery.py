"""The Celery application; configuration comes from Django settings (CELERY_*)."""

import os

from celery import Celery
from celery.signals import (
    before_task_publish,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_process_shutdown,
)
from django.db import connections

from core.heartbeat import HeartbeatStep
from core.request_id import request_id_var
from core.tracing import configure_tracing, shutdown_tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("gift_a_voucher")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.steps["consumer"].add(HeartbeatStep)

REQUEST_ID_HEADER = "request_id"


@before_task_publish.connect
def _carry_request_id(headers: dict, **kwargs) -> None:
    """Stamp each message with the request id of whoever published it."""
    headers.setdefault(REQUEST_ID_HEADER, request_id_var.get())


@task_prerun.connect
def _adopt_request_id(task_id: str, task, **kwargs) -> None:
    """Log and audit a task under its publisher's request id, or else its own task id."""
    origin = getattr(task.request, REQUEST_ID_HEADER, None)
    request_id_var.set(origin if origin and origin != "-" else task_id)


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(**kwargs) -> None:
    """What Django does around each request: drop a connection that broke or outlived CONN_MAX_AGE.

    Not one inside a transaction: a task run eagerly in its caller's transaction (a test, a command)
    would lose it, and the caller's work with it.
    """
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


# --- Tracing (core/tracing.py): off unless the OTEL_* variables ask for it ----------------------
WORKER_SERVICE_NAME = "gift-a-voucher-worker"


@worker_process_init.connect(weak=False)
def _trace_worker_process(**kwargs) -> None:
    """Each pool child sets up its own tracing: the exporter's thread does not survive a fork."""
    configure_tracing(WORKER_SERVICE_NAME, instrument_django=False)


@worker_process_shutdown.connect(weak=False)
def _flush_worker_traces(**kwargs) -> None:
    """A pool child leaves with os._exit, which skips atexit: export its last spans first."""
    shutdown_tracing()


def register_tasks_for_tracing() -> None:
    """Import the task modules in a process that only publishes (web), once its apps are ready.

    The Celery instrumentation ends its publish span only for a task registered in the publishing
    process; unregistered, publish_delivery's send_task would leave that span open, never exported.
    """
    app.autodiscover_tasks(force=True)
