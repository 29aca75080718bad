"""Workers outlive SQS faults: the same worker process consumes again once SQS answers.

Each fault is caused for real against the running system: the SQS server
stopped and started again empty, its queues deleted and recreated, and a
proxy in front of it answering 5xx, throttling, garbage, nothing at all, or
hanging. The assertions name the worker's PID: surviving is the point.
"""

import os
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from core.sqs import ALL_QUEUES, GIFT_QUEUE, MAINTENANCE_QUEUE, decode_task_message, queue_url, sqs_client, sqs_name
from gifting.models import GiftStatus
from gifting.services.outbox import gifts_republish_stale
from tests.integration.conftest import ROOT
from tests.integration.sqs_proxy import FaultyProxy
from tests.integration.test_delivery import event_types, post_gift, wait_for_status
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

OUTAGE_STARTED = "SQS unavailable"
OUTAGE_ENDED = "SQS available again"


@pytest.fixture
def sqs_outage(sqs):
    """The SQS server, for a test to stop and start; left running with empty queues afterwards."""
    yield sqs
    sqs.stop()
    sqs.start()


def warnings_in(worker, marker: str) -> int:
    return worker.log().count(marker)


def assert_alive(worker, pid: int) -> None:
    assert worker.process.poll() is None, f"worker exited:\n{worker.log()[-3000:]}"
    assert worker.process.pid == pid
    assert "Unrecoverable error" not in worker.log()


def sweep_as_beat_would() -> int:
    """What beat's sweeper does once GIFT_REPUBLISH_AFTER has passed: publish queued gifts again."""
    return gifts_republish_stale(now=timezone.now() + timedelta(minutes=5))


def test_the_same_worker_delivers_after_sqs_restarts_empty(sqs_outage, smtp_sink, start_worker, client):
    worker = start_worker()
    pid = worker.process.pid
    sqs_outage.stop()
    wait_until(lambda: warnings_in(worker, OUTAGE_STARTED), timeout=30, message="worker never noticed the outage")

    gift = post_gift(client)  # accepted while SQS is down: 202, the publish fails, the gift stays queued
    wait_until(lambda: "publish_failed" in event_types(gift), message="the publisher thread never tried")
    sqs_outage.start(create_queues=False)  # back, but empty: the queues are gone
    call_command("setup_queues", "--wait", "10")  # the operator's first step after an SQS loss
    assert sweep_as_beat_would() == 1

    wait_for_status(gift, GiftStatus.DELIVERED)
    assert len(smtp_sink.messages_for(gift.id)) == 1
    assert_alive(worker, pid)
    wait_until(
        lambda: warnings_in(worker, OUTAGE_ENDED) == warnings_in(worker, OUTAGE_STARTED),
        timeout=30,
        message="an outage was never reported over",
    )
    assert warnings_in(worker, OUTAGE_STARTED) <= 2  # one per queue polled, not one per poll
    assert "Traceback" not in worker.log()


def test_the_same_worker_delivers_after_its_queues_are_deleted_and_recreated(sqs, smtp_sink, start_worker, client):
    worker = start_worker()
    pid = worker.process.pid
    sqs_api = sqs_client()
    for queue in ALL_QUEUES:
        sqs_api.delete_queue(QueueUrl=queue_url(sqs_api, queue))
    wait_until(lambda: warnings_in(worker, OUTAGE_STARTED), timeout=30, message="worker never noticed")

    call_command("setup_queues")
    gift = post_gift(client)

    wait_for_status(gift, GiftStatus.DELIVERED)
    assert_alive(worker, pid)
    assert "Traceback" not in worker.log()


def test_a_worker_started_before_its_queues_exist_waits_for_them(sqs, smtp_sink, start_worker, client):
    sqs_api = sqs_client()
    for queue in ALL_QUEUES:
        sqs_api.delete_queue(QueueUrl=queue_url(sqs_api, queue))
    worker = start_worker(wait_until_ready=False)
    pid = worker.process.pid
    wait_until(lambda: "Cannot connect" in worker.log(), timeout=30, message="worker did not report the missing queue")
    assert worker.process.poll() is None

    call_command("setup_queues")
    wait_until(worker.ready, timeout=60, message="worker never became ready")
    gift = post_gift(client)

    wait_for_status(gift, GiftStatus.DELIVERED)
    assert_alive(worker, pid)


@pytest.fixture
def faulty_sqs(sqs, settings):
    proxy = FaultyProxy(settings.SQS_ENDPOINT_URL)
    yield proxy
    proxy.close()


FAULTS = ["error500", "unavailable503", "throttled", "garbage", "empty", "hang"]


def test_the_same_worker_outlives_every_bad_answer_and_delivers_after(faulty_sqs, smtp_sink, start_worker, client):
    worker = start_worker(SQS_ENDPOINT_URL=faulty_sqs.url)
    pid = worker.process.pid
    gift_queue = f"{OUTAGE_STARTED} queue={sqs_name(GIFT_QUEUE)} "
    recovered = f"{OUTAGE_ENDED} queue={sqs_name(GIFT_QUEUE)} "

    for outages, fault in enumerate(FAULTS, start=1):
        faulty_sqs.set_mode(fault)
        noticed = lambda n=outages: warnings_in(worker, gift_queue) == n  # noqa: E731
        wait_until(noticed, timeout=60, message=f"{fault} went unnoticed")
        if fault != "hang":  # it keeps polling, with backoff, rather than stopping or spinning
            polled = lambda mode=fault: faulty_sqs.seen(mode) >= 3  # noqa: E731
            wait_until(polled, timeout=30, message=f"polling stopped on {fault}")
        faulty_sqs.set_mode("pass")
        over = lambda n=outages: warnings_in(worker, recovered) == n  # noqa: E731
        wait_until(over, timeout=60, message=f"stuck after {fault}")
        assert_alive(worker, pid)

    gift = post_gift(client)
    wait_for_status(gift, GiftStatus.DELIVERED)
    assert_alive(worker, pid)
    assert warnings_in(worker, gift_queue) == len(FAULTS)  # one warning per outage, not one per poll
    assert "Traceback" not in worker.log()


def test_beat_outlives_an_sqs_outage_and_sends_its_tasks_after(sqs_outage, tmp_path):
    sqs_outage.stop()
    log_path = tmp_path / "beat.log"
    with open(log_path, "wb") as log:
        beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO",
             "--schedule", str(tmp_path / "beat-schedule")],
            cwd=ROOT, env={**os.environ, "GIFT_SWEEP_INTERVAL": "1"}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_until(lambda: "Connection error" in log_path.read_text(), timeout=30, message="beat never tried")
        sqs_outage.start()

        sqs_api = sqs_client()
        maintenance = queue_url(sqs_api, MAINTENANCE_QUEUE)

        def one_batch() -> list[dict]:
            return sqs_api.receive_message(QueueUrl=maintenance, MaxNumberOfMessages=10).get("Messages", [])

        sweeps = wait_until(one_batch, timeout=60, message="beat sent nothing")
        assert beat.poll() is None
        assert {decode_task_message(m["Body"])[0] for m in sweeps} <= {
            "gifting.sweep_stale_gifts",
            "gifting.sweep_ended_holds",
        }
    finally:
        os.killpg(beat.pid, signal.SIGTERM)
        beat.wait(timeout=15)
