"""The Celery application; configuration comes from Django settings (CELERY_*)."""

import os

from celery import Celery
from celery.signals import before_task_publish, task_prerun

from core.heartbeat import HeartbeatStep
from core.request_id import request_id_var

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
