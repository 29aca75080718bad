"""Delivery guarantees proved end to end, each under a fault caused for real.

Unit tests pin the settings behind these guarantees (reject_on_worker_lost,
retries through SQS DelaySeconds, the row lock, the SMTP timeout, the 503 when
the cache is down); these tests show that the running system keeps them: a real
pool child is SIGKILLed, a real retry outwaits the visibility timeout, two real
workers race on one gift, PostgreSQL drops a worker's connection, an SMTP
server never answers, a real Redis goes away.
"""

import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection

from core import sqs as sqs_facts
from core.heartbeat import heartbeats_read
from core.sqs import queue_url, sqs_client
from gifting.models import Gift, GiftEvent, GiftEventType, GiftStatus
from gifting.publishing import publish_delivery
from tests.integration.conftest import WorkerProcess, _database_url
from tests.integration.test_delivery import DELIVERY_TIMEOUT, dlq_gift_ids, event_types, post_gift, wait_for_status
from tests.waiting import wait_until
from vouchers.models import Voucher

pytestmark = pytest.mark.integration

needs_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row locks and pg_terminate_backend need PostgreSQL"
)

# A queue visibility timeout this short, with a backoff up to this long, makes most retries
# wait out the visibility timeout several times over (Celery's full jitter picks 0..backoff).
SHORT_VISIBILITY_TIMEOUT = 2
LONG_BACKOFF = 8
# A retry held in worker memory this much longer than the visibility timeout is certainly
# handed out again by SQS (one long poll of SQS_WAIT_TIME_SECONDS, plus a second of slack).
REDELIVERY_MARGIN = 2
MAX_GIFTS_TO_DRAW_A_LONG_BACKOFF = 12

# Well below the test queue's visibility timeout (6 s), so even two workers never share an attempt.
SILENT_SMTP_TIMEOUT = 2

TASK_LOG_LINE = re.compile(r"Task gifting\.deliver_gift\[[^\]]+\] (received|succeeded|retry|raised)")


@pytest.fixture
def start_workers(transactional_db, tmp_path: Path) -> Iterator[Callable[..., list[WorkerProcess]]]:
    """Like start_worker, but boots `count` workers side by side, with environment overrides for them.

    A worker takes seconds to boot and to stop; doing both in parallel keeps these tests quick.
    """
    base = {**os.environ, "DATABASE_URL": _database_url(), "PYTHONUNBUFFERED": "1"}
    workers: list[WorkerProcess] = []

    def start(count: int = 1, **overrides: str) -> list[WorkerProcess]:
        paths = [tmp_path / f"worker-{len(workers) + n}.log" for n in range(1, count + 1)]
        with ThreadPoolExecutor(count) as pool:
            booting = [pool.submit(WorkerProcess, path, {**base, **overrides}) for path in paths]
        workers.extend(future.result() for future in booting if future.exception() is None)
        for future in booting:
            future.result()  # re-raises a worker's failure to start, once the others are recorded
        return workers[-count:]

    yield start
    with ThreadPoolExecutor(max(len(workers), 1)) as pool:
        list(pool.map(WorkerProcess.stop, workers))


def pool_children(worker: WorkerProcess) -> list[int]:
    """PIDs of the worker's prefork pool processes (the parent may fork from any of its threads)."""
    children: list[int] = []
    for task in Path(f"/proc/{worker.process.pid}/task").iterdir():
        try:
            children += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:  # a thread that just ended
            continue
    return sorted(children)


def the_pool_child(worker: WorkerProcess) -> int:
    """The one pool process of a `--concurrency 1` worker, once it is there."""

    def single() -> int | None:
        children = pool_children(worker)
        return children[0] if len(children) == 1 else None

    return wait_until(single, message=f"the worker has not exactly one pool process: {pool_children(worker)}")


def task_log_lines(worker: WorkerProcess, kind: str) -> int:
    """How many delivery messages the worker logged as `kind`: received, or ended (succeeded, retry, raised)."""
    kinds = [match.group(1) for match in TASK_LOG_LINE.finditer(worker.log())]
    return kinds.count("received") if kind == "received" else len(kinds) - kinds.count("received")


def retry_delay(gift: Gift) -> int | None:
    """The backoff the worker chose for the gift's (first) retry, from the audit log."""
    event = GiftEvent.objects.filter(gift=gift, type=GiftEventType.RETRY_SCHEDULED).first()
    return None if event is None else event.details["delay_seconds"]


def lock_waiters() -> int:
    """Sessions in the test database waiting for a lock held by another transaction."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def terminate_other_backends() -> int:
    """Kill every other PostgreSQL session on the test database, as a failover or an admin would."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def wait_until_settled(gift: Gift) -> Gift:
    """Wait until the gift is no longer queued: delivered, or failed when a guarantee broke."""

    def settled() -> bool:
        gift.refresh_from_db()
        return gift.status != GiftStatus.QUEUED

    wait_until(settled, timeout=DELIVERY_TIMEOUT, message="the gift was still queued")
    return gift


class SilentSmtpServer:
    """Accepts TCP connections on loopback and never says a word: a hung mail server."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # so the accepting thread notices close() soon
        self.port: int = self._listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections.append(conn)  # kept open, never written to

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=5)
        self._listener.close()
        for conn in self.connections:
            conn.close()


class RedisServer:
    """A throwaway redis-server on a free loopback port, to be stopped for real."""

    def __init__(self, workdir: Path) -> None:
        with socket.create_server(("127.0.0.1", 0)) as probe:
            self.port: int = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            ["/usr/bin/redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_until(self._answers, timeout=10, message=f"redis-server did not start on port {self.port}")

    def _answers(self) -> bool:
        try:
            return redis.Redis.from_url(self.url, socket_timeout=1).ping()
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, which it may stop (the shared one is for everybody)."""
    server = RedisServer(tmp_path)
    yield server
    server.stop()


# --- 1. A pool child dies mid-send; its parent lives on -----------------------------------


def test_pool_child_killed_mid_send_is_redelivered_by_its_living_parent(sqs, smtp_sink, start_workers, client):
    """reject_on_worker_lost: the parent returns the lost child's message to SQS instead of acking it."""
    smtp_sink.hold()
    # A visibility timeout well beyond the test's own pace: on a loaded machine the 6 s of the test
    # settings can run out while the send is held, and SQS's redelivery would add a second attempt.
    # The lost child's message comes back at once anyway (reject_on_worker_lost requeues it).
    [worker] = start_workers(SQS_VISIBILITY_TIMEOUT="120")
    gift = post_gift(client)
    wait_until(smtp_sink.holding.is_set, timeout=DELIVERY_TIMEOUT, message="worker never started sending")
    doomed = the_pool_child(worker)

    os.kill(doomed, signal.SIGKILL)
    smtp_sink.release()

    wait_until_settled(gift)
    assert gift.status == GiftStatus.DELIVERED
    assert worker.process.poll() is None, "the worker's parent process died too"
    successor = the_pool_child(worker)
    assert successor != doomed
    assert "WorkerLostError" in worker.log()
    assert len(smtp_sink.messages_for(gift.id)) == 1
    assert Voucher.objects.filter(gift=gift).count() == 1
    assert gift.attempts == 1  # the killed attempt rolled back with its transaction
    assert event_types(gift).count(GiftEventType.DELIVERED) == 1


# --- 2. A retry waits longer than the visibility timeout ------------------------------------


def test_a_retry_that_outwaits_the_visibility_timeout_runs_once(sqs, smtp_sink, start_workers, client):
    """Retries wait on SQS (DelaySeconds), not in worker memory, so SQS never hands a waiting retry out twice.

    Celery's full jitter picks a backoff in 0..LONG_BACKOFF, so gifts are sent one by
    one until one draws a backoff that certainly outlasts the visibility timeout.
    """
    sqs_api = sqs_client()
    sqs_api.set_queue_attributes(
        QueueUrl=queue_url(sqs_api, sqs_facts.GIFT_QUEUE),
        Attributes={"VisibilityTimeout": str(SHORT_VISIBILITY_TIMEOUT)},
    )
    [worker] = start_workers(
        GIFT_RETRY_BACKOFF_BASE=str(LONG_BACKOFF),
        GIFT_RETRY_BACKOFF_MAX=str(LONG_BACKOFF),
        SQS_VISIBILITY_TIMEOUT=str(SHORT_VISIBILITY_TIMEOUT),
    )
    gifts: list[Gift] = []
    for _ in range(MAX_GIFTS_TO_DRAW_A_LONG_BACKOFF):
        smtp_sink.replies.append("451 4.3.0 Try again later")
        gift = post_gift(client)
        gifts.append(gift)
        wait_until(lambda gift=gift: retry_delay(gift) is not None, timeout=DELIVERY_TIMEOUT, message="no retry")
        if retry_delay(gift) >= SHORT_VISIBILITY_TIMEOUT + REDELIVERY_MARGIN:
            break
        wait_for_status(gift, GiftStatus.DELIVERED)  # one gift at a time, so the 451s go where meant
    else:
        pytest.fail(f"no backoff of {MAX_GIFTS_TO_DRAW_A_LONG_BACKOFF} gifts outlasted the visibility timeout")

    for gift in gifts:
        wait_until_settled(gift)
    # Every delivery message the worker took has run to its end: nothing is still waiting in memory.
    wait_until(
        lambda: task_log_lines(worker, "ended") == task_log_lines(worker, "received"),
        timeout=DELIVERY_TIMEOUT,
        message="a received delivery message never ran",
    )

    assert task_log_lines(worker, "received") == 2 * len(gifts)  # the first attempt and one retry each
    assert smtp_sink.data_commands == 2 * len(gifts)
    for gift in gifts:
        assert gift.status == GiftStatus.DELIVERED
        assert gift.attempts == 2
        assert len(smtp_sink.messages_for(gift.id)) == 1
        assert GiftEventType.DUPLICATE_IGNORED not in event_types(gift)


# --- 3. Two workers race on one gift's duplicated message -----------------------------------


@needs_postgresql
def test_two_workers_racing_on_a_duplicated_message_send_one_email(sqs, smtp_sink, start_workers, client):
    """The gift's row lock makes the second worker wait for the first, then find nothing left to do."""
    start_workers(2)
    smtp_sink.hold()
    gift = post_gift(client)
    publish_delivery(gift.id)  # the duplicate: SQS delivers at least once

    wait_until(smtp_sink.holding.is_set, timeout=DELIVERY_TIMEOUT, message="no worker started sending")
    wait_until(lock_waiters, timeout=DELIVERY_TIMEOUT, message="the second worker never waited for the gift")
    assert smtp_sink.data_commands == 1  # only the lock holder talks to SMTP
    smtp_sink.release()  # the first send ends in a 451: the second worker takes over

    wait_until_settled(gift)
    wait_until(lambda: GiftEventType.DUPLICATE_IGNORED in event_types(gift), message="the retry never ran")

    assert gift.status == GiftStatus.DELIVERED
    assert len(smtp_sink.messages_for(gift.id)) == 1
    assert Voucher.objects.filter(gift=gift).count() == 1
    assert event_types(gift).count(GiftEventType.DELIVERED) == 1
    assert gift.attempts == 2
    assert smtp_sink.data_commands == 2


# --- 4. PostgreSQL drops the worker's connection mid-delivery -------------------------------


@needs_postgresql
def test_database_connections_killed_mid_delivery_lose_nothing(sqs, smtp_sink, start_workers, client):
    """A dropped database connection is a transient error: the worker lives, the gift is retried and delivered."""
    smtp_sink.hold()
    [worker] = start_workers()
    child = the_pool_child(worker)
    gift = post_gift(client)
    wait_until(smtp_sink.holding.is_set, timeout=DELIVERY_TIMEOUT, message="worker never started sending")

    assert terminate_other_backends() >= 1  # the worker's session, with the gift's row locked
    smtp_sink.release()

    wait_until_settled(gift)
    assert gift.status == GiftStatus.DELIVERED
    assert worker.process.poll() is None
    assert pool_children(worker) == [child]  # not even the pool process was replaced
    assert len(smtp_sink.messages_for(gift.id)) == 1
    assert smtp_sink.data_commands == 2  # the attempt cut off mid-send, and the retry
    assert Voucher.objects.filter(gift=gift).count() == 1
    assert event_types(gift).count(GiftEventType.DELIVERED) == 1


# --- 5. An SMTP server that accepts and never answers ---------------------------------------


def test_a_silent_smtp_server_costs_one_bounded_attempt_per_try(sqs, start_workers, client):
    """EMAIL_TIMEOUT ends each hung send as a transient failure, well inside the visibility timeout.

    Two workers on PostgreSQL: a send that outlasted the visibility timeout would be
    handed to the other worker and counted twice. One on SQLite, which lets only one
    writer in: a retry taken by the second worker while the first still notes it fails
    with "database is locked" and costs an attempt.
    """
    tries = 1 + settings.GIFT_MAX_RETRIES
    silent = SilentSmtpServer()
    try:
        start_workers(
            2 if connection.vendor == "postgresql" else 1,
            EMAIL_URL=f"smtp://127.0.0.1:{silent.port}",
            EMAIL_TIMEOUT=str(SILENT_SMTP_TIMEOUT),
        )
        gift = post_gift(client)

        wait_for_status(gift, GiftStatus.FAILED)
        wait_until(lambda: GiftEventType.DEAD_LETTERED in event_types(gift), message="not dead-lettered")
        wait_until(lambda: len(silent.connections) >= tries, message="the worker never connected")
    finally:
        silent.close()

    assert gift.attempts == tries
    assert len(silent.connections) == tries
    retries = GiftEvent.objects.filter(gift=gift, type=GiftEventType.RETRY_SCHEDULED)
    assert [event.details["reason"] for event in retries] == ["The mail server could not be reached."] * (tries - 1)
    assert GiftEventType.DUPLICATE_IGNORED not in event_types(gift)
    assert gift.last_error == "Delivery kept failing; we stopped retrying."
    assert dlq_gift_ids() == [str(gift.id)]
    # Each attempt waited for the timeout before giving up: the server was silent, not refusing.
    timeline = list(GiftEvent.objects.filter(gift=gift).order_by("at", "id"))
    for started, ended in pairwise(timeline):
        if started.type == GiftEventType.DELIVERY_ATTEMPTED:
            assert (ended.at - started.at).total_seconds() >= SILENT_SMTP_TIMEOUT


# --- 6. Redis goes away ---------------------------------------------------------------------


def test_a_worker_delivers_while_its_redis_is_down(
    sqs, smtp_sink, start_workers, own_redis, client, settings, tmp_path
):
    """Delivery needs the database, SQS and SMTP, never the cache: a Redis outage stops no gift.

    The worker does touch Redis, with its heartbeat; a heartbeat that cannot reach
    it must not stop the event loop that also consumes the gift queue.
    """
    settings.WORKER_HEARTBEAT_DIR = str(tmp_path / "heartbeats")
    [worker] = start_workers(
        REDIS_URL=own_redis.url, WORKER_HEARTBEAT_DIR=settings.WORKER_HEARTBEAT_DIR, WORKER_HEARTBEAT_INTERVAL="1"
    )
    child = the_pool_child(worker)
    own_redis.stop()
    stopped_at = time.time()

    def last_beat_after(moment: float) -> float | None:
        return max((beat.at for beat in heartbeats_read() if beat.at > moment), default=None)

    first = wait_until(lambda: last_beat_after(stopped_at), message="no heartbeat since Redis stopped")
    wait_until(lambda: last_beat_after(first), message="the worker's loop stopped when Redis did not answer")
    gift = post_gift(client)  # through the test run's cache: only the worker's Redis is down

    wait_until_settled(gift)
    assert gift.status == GiftStatus.DELIVERED
    assert worker.process.poll() is None
    assert pool_children(worker) == [child]
    assert len(smtp_sink.messages_for(gift.id)) == 1


def test_the_api_refuses_gifts_with_503_while_redis_is_down(sqs, own_redis, settings, client):
    """Rate limits count in Redis; with it down the API refuses (503) rather than run unprotected."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": own_redis.url}}
    body = {"recipient_email": "bob@example.com", "amount": "25.00", "currency": "EUR"}
    accepted = client.post("/api/v1/gifts/", body, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))
    assert accepted.status_code == 202, accepted.content  # the same request, with Redis up

    own_redis.stop()
    response = client.post("/api/v1/gifts/", body, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))

    assert response.status_code == 503
    assert response.json()["code"] == "service_unavailable"
    assert int(response["Retry-After"]) >= 1
    assert Gift.objects.count() == 1  # only the gift accepted before Redis went away
