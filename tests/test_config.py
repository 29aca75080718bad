"""The contracts of the configuration: Procfile, beat schedule, settings safety, queue options."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from core import sqs as sqs_facts

ROOT = Path(__file__).resolve().parents[1]


def procfile() -> dict[str, list[str]]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {name: shlex.split(command) for name, _, command in (line.partition(": ") for line in lines if line)}


def test_procfile_runs_web_worker_and_beat():
    processes = procfile()
    assert set(processes) == {"web", "worker", "beat"}
    assert processes["web"][0] == "gunicorn"
    assert processes["beat"][:4] == ["celery", "-A", "config", "beat"]


def test_worker_consumes_every_queue_but_the_dlq():
    worker = procfile()["worker"]
    queues = worker[worker.index("--queues") + 1].split(",")
    assert sorted(queues) == sorted([sqs_facts.GIFT_QUEUE, sqs_facts.MAINTENANCE_QUEUE])
    assert sqs_facts.GIFT_DLQ not in queues
    assert set(settings.CELERY_BROKER_TRANSPORT_OPTIONS["queue_names"]) == {*queues, sqs_facts.GIFT_DLQ}


def test_sweepers_are_scheduled_on_the_maintenance_queue():
    schedule = {entry["task"]: entry["schedule"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert schedule["gifting.sweep_stale_gifts"] == settings.GIFT_SWEEP_INTERVAL
    assert "gifting.sweep_idempotency_keys" in schedule
    assert settings.CELERY_TASK_ROUTES["gifting.sweep_*"]["queue"] == sqs_facts.MAINTENANCE_QUEUE


def test_tasks_are_acked_late_and_rejected_when_the_worker_is_lost():
    from gifting.tasks import deliver_gift

    assert deliver_gift.acks_late is True
    assert deliver_gift.reject_on_worker_lost is True
    assert settings.CELERY_TASK_REJECT_ON_WORKER_LOST is True
    assert settings.CELERY_WORKER_ENABLE_REMOTE_CONTROL is False  # would create pidbox queues on SQS


def _import_settings(**env: str) -> subprocess.CompletedProcess:
    """config.settings in a fresh process, in development mode unless told otherwise, without a .env.

    Production settings have their own tests: tests/test_production_settings.py.
    """
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    return subprocess.run(
        [sys.executable, "-c", "import config.settings"],
        cwd=ROOT,
        env={**clean, "DJANGO_ENV_FILE": "", "DJANGO_DEBUG": "true", **env},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("FRAUD_MAX_AMOUNT", "lots", "FRAUD_MAX_AMOUNT must be a positive decimal number"),
        ("GIFT_RETRY_BACKOFF_MAX", "901", "GIFT_RETRY_BACKOFF_MAX"),
        ("WALLET_PROVIDER_URL", "ftp://wallets.example.com/credit", "WALLET_PROVIDER_URL must be an http(s) URL"),
    ],
)
def test_refuses_a_bad_setting_with_a_message_naming_it(variable, value, message):
    result = _import_settings(**{variable: value})
    assert result.returncode != 0
    assert message in result.stderr
