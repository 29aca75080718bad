"""Worker and web metrics, scraped from a real gunicorn's /metrics after a known sequence.

Two generations of gunicorn workers (a HUP replaces them) and two Celery
workers one after the other, all writing to one PROMETHEUS_MULTIPROC_DIR: the
totals must include what processes that are gone counted.
"""

import os
import signal
import socket
import subprocess
import time
import uuid

import pytest
import requests
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from core.sqs import GIFT_QUEUE, queue_url, sqs_client
from gifting.models import Gift, GiftStatus
from tests.factories import api_token
from tests.integration.conftest import ROOT, _database_url
from tests.integration.test_delivery import wait_for_status
from tests.waiting import wait_until

pytestmark = [
    pytest.mark.integration,
    # On SQLite a worker's write can meet "database is locked" and retry, which adds attempts to the
    # exact counts this test asserts; PostgreSQL (CI) has row locks and no such extra retries.
    pytest.mark.skipif(connection.vendor != "postgresql", reason="exact counts need PostgreSQL's row locks"),
]

DELIVERIES = "gift_deliveries_total"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Gunicorn:
    """The Procfile's web process: gunicorn with two workers, on a free loopback port."""

    def __init__(self, env: dict[str, str], log_path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [str(ROOT / ".venv/bin/gunicorn") if (ROOT / ".venv/bin/gunicorn").exists() else "gunicorn",
             "config.wsgi", "--bind", self.url.removeprefix("http://"), "--workers", "2"],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            wait_until(self._answers, timeout=60, message="gunicorn did not start")
        except BaseException:
            self.stop()  # never leave a server behind a failed test
            raise

    def _answers(self) -> bool:
        try:
            return requests.get(f"{self.url}/healthz", timeout=10).status_code == 200
        except requests.RequestException:
            return False

    def replace_workers(self) -> None:
        """HUP: gunicorn starts new worker processes and retires the old ones."""
        os.kill(self.process.pid, signal.SIGHUP)

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)
        self._log.close()


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics as {(name, sorted labels): value}."""
    samples = {}
    for family in text_string_to_metric_families(requests.get(f"{url}/metrics", timeout=30).text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_and_histograms_add_up_across_processes(
    sqs, smtp_sink, start_worker, transactional_db, make_user, tmp_path
):
    metrics_dir = tmp_path / "metrics"
    env = {**os.environ, "DATABASE_URL": _database_url(), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    token = api_token(make_user())
    web = Gunicorn(env, tmp_path / "gunicorn.log")

    def post_gift() -> Gift:
        response = requests.post(
            f"{web.url}/api/v1/gifts/",
            json={"recipient_email": "bob@example.com", "amount": "25.00", "currency": "EUR"},
            headers={"Authorization": f"Token {token}", "Idempotency-Key": str(uuid.uuid4())},
            timeout=30,
        )
        assert response.status_code == 202, response.text
        return Gift.objects.get(id=response.json()["id"])

    try:
        # A: its message waits with no worker running, and is received once before a worker takes it.
        waited = post_gift()
        posted_at = time.monotonic()
        sqs_api = sqs_client()
        url = queue_url(sqs_api, GIFT_QUEUE)
        wait_until(lambda: sqs_api.receive_message(QueueUrl=url, VisibilityTimeout=0).get("Messages"), timeout=30)
        first = start_worker(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
        waited_at_least = time.monotonic() - posted_at
        wait_for_status(waited, GiftStatus.DELIVERED)
        for gift in (post_gift(), post_gift()):
            wait_for_status(gift, GiftStatus.DELIVERED)

        web.replace_workers()
        first.stop()
        start_worker(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
        smtp_sink.replies.extend(["451 4.3.0 Try again later", "451 4.3.0 Try again later"])
        wait_for_status(post_gift(), GiftStatus.DELIVERED)  # D: retried twice, then delivered
        smtp_sink.replies.append("550 5.1.1 No such user")
        wait_for_status(post_gift(), GiftStatus.FAILED)  # E: refused for good, dead-lettered

        def dead_letter_counted() -> dict | None:
            samples = scrape(web.url)
            return samples if value(samples, DELIVERIES, outcome="dead_lettered", channel="email", error="") else None

        samples = wait_until(dead_letter_counted, timeout=30, message="the dead letter was never counted")
    finally:
        web.stop()

    assert value(samples, DELIVERIES, outcome="delivered", channel="email", error="") == 4
    assert value(samples, DELIVERIES, outcome="retried", channel="email", error="TransientDeliveryError") == 2
    assert value(samples, DELIVERIES, outcome="failed", channel="email", error="permanent_error") == 1
    assert value(samples, "gift_published_total") == 5
    assert value(samples, "gift_publish_failures_total") == 0
    assert value(samples, "gift_delivery_duration_seconds_count", channel="email") == 7  # 3 + 3 attempts + 1
    assert value(samples, "gift_end_to_end_seconds_count") == 4
    assert value(samples, "gift_message_receive_count_count") == 7
    assert value(samples, "gift_message_receive_count_bucket", le="1.0") == 6  # A was received twice
    assert value(samples, "gift_message_age_seconds_count") == 7
    assert value(samples, "gift_message_age_seconds_sum") >= waited_at_least
    writers = {path.stem.rsplit("_", 1)[-1] for path in metrics_dir.glob("*.db")}
    assert len(writers) >= 4  # two generations of gunicorn workers, two Celery pool children
