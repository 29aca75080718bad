"""Least privilege, checked both ways: core/aws_actions.py against the code, and against the template's roles.

The code side runs each process kind's representative paths against a real moto
SQS server and records every SQS call it makes (tests/test_deploy_recorder.py):
web and admin in this process (the API, /readyz, /metrics, the operations page,
the DLQ tools), worker and beat as real `celery` processes (a delivery, a retry, a
permanent failure, a lost pool child, the monitor and the sweeper; beat's
periodic publishes). What was recorded must equal the static list: a call missing
from it would be denied in production, and a listed action never made is a
privilege to take away.

The template side reads ops/aws/gift-a-voucher.yaml's task roles and compares
them with the same list, and shows that a role missing an action (or holding one
too many) fails the comparison.
"""

import copy
import json
import os
import signal
import subprocess
import sys
import uuid
from functools import partial
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from kombu import pools

from config.celery import app as celery_app
from core import aws_actions
from core import sqs as sqs_facts
from gifting import events
from gifting.dead_letters import dead_letters_list, dead_letters_redrive
from gifting.models import Gift, GiftStatus
from gifting.publishing import publish_delivery
from gifting.services.outbox import gift_dead_letter
from tests.factories import gift_row
from tests.integration.conftest import _database_url
from tests.test_deploy_recorder import CALLS_FILE_ENV, Recorded, read_calls_file, recording
from tests.test_deploy_template import ROLE_OF_PROCESS, load_template, role_grants
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RUNNER = "from tests.test_deploy_recorder import run_recorded; run_recorded()"


def fresh_broker_connections() -> None:
    """Close the process's broker connections, so the next publish opens a channel as a new process would."""
    pools.reset()  # closes every pooled connection and producer, and forgets the pools
    celery_app._after_fork()  # what Celery does in a new process: the app's own pool references go too


def staff_client(make_user, *codenames: str) -> Client:
    user = make_user(username=f"staff-{uuid.uuid4().hex[:8]}", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="gifting", codename__in=codenames))
    browser = Client()
    browser.force_login(user)
    return browser


def failed_gift_with_dead_letter(sender) -> Gift:
    gift = gift_row(sender, status=GiftStatus.FAILED, last_error="Delivery failed.")
    events.gift_failed(gift, reason="Delivery failed.", cause="permanent_error")
    gift_dead_letter(gift_id=gift.id)
    return gift


def web_paths(client, make_user) -> None:
    """What the public web service does with SQS: accept a gift, answer probes and scrapes, show the ops page."""
    response = client.post(
        "/api/v1/gifts/",
        {"recipient_email": "bob@example.com", "amount": "25.00", "currency": "EUR"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    )
    assert response.status_code == 202, response.content
    assert Client().get("/readyz").status_code == 200
    assert b"sqs_up 1.0" in Client().get("/metrics").content
    assert staff_client(make_user).get("/admin/operations/").status_code == 200


def test_web_makes_exactly_its_listed_calls(sqs, client, make_user, settings):
    settings.GIFT_PUBLISH_IN_BACKGROUND = False
    recorded = Recorded()
    with recording(recorded):
        fresh_broker_connections()
        web_paths(client, make_user)
    assert_same(recorded.calls, aws_actions.WEB)


def test_admin_makes_exactly_its_listed_calls(sqs, client, make_user, settings):
    settings.GIFT_PUBLISH_IN_BACKGROUND = False
    gift = failed_gift_with_dead_letter(make_user())
    recorded = Recorded()
    with recording(recorded):
        fresh_broker_connections()
        web_paths(client, make_user)
        assert [row.gift_id for row in dead_letters_list()] == [str(gift.id)]
        report = dead_letters_redrive(gift_ids=[gift.id], operator="iam-test")
    assert [result.outcome for result in report.results] == ["redriven"]
    assert_same(recorded.calls, aws_actions.ADMIN)


def celery_process(tmp_path: Path, name: str, *args: str, **env: str) -> subprocess.Popen:
    """`celery -A config …` with its SQS calls recorded to tmp_path/<name>.calls (see run_recorded)."""
    environment = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "PYTHONUNBUFFERED": "1",
        CALLS_FILE_ENV: str(tmp_path / f"{name}.calls"),
        **env,
    }
    log = (tmp_path / f"{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, "celery", "-A", "config", *args],
        cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def pool_children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:  # a thread that just ended
            continue
    return children


def count(path: Path, call: tuple[str, str]) -> int:
    """How many times a recorded process made `call`."""
    return sum(1 for line in path.read_text().splitlines() if tuple(json.loads(line)) == call) if path.exists() else 0


def assert_same(recorded: set, listed: frozenset, *, log: Path | None = None) -> None:
    """The calls made are exactly the listed ones; else say which are unlisted and which were never made."""
    difference = {"made but not listed": recorded - listed, "listed but never made": listed - recorded}
    assert recorded == listed, f"{difference} (log: {log})"


def lost_while_running(worker: subprocess.Popen, smtp_sink, gift: Gift, *, queue: str) -> None:
    """Kill the pool child while it sends the gift's email (a delivery message taken from `queue`)."""
    smtp_sink.reset()
    smtp_sink.hold()
    publish_delivery(gift.id, queue=queue)
    wait_until(smtp_sink.holding.is_set, timeout=60, message="the send never started")
    for child in pool_children(worker.pid):
        os.kill(child, signal.SIGKILL)
    smtp_sink.release()


def settled(gift: Gift, *statuses: str) -> bool:
    gift.refresh_from_db()
    return gift.status in statuses


def test_worker_makes_exactly_its_listed_calls(sqs, smtp_sink, transactional_db, make_user, tmp_path):
    sender = make_user()
    worker = celery_process(
        tmp_path, "worker", "worker", "--loglevel", "INFO", "--concurrency", "1", "--without-mingle",
        "--without-gossip", "--without-heartbeat", "--queues", f"{sqs_facts.GIFT_QUEUE},{sqs_facts.MAINTENANCE_QUEUE}",
    )  # fmt: skip
    try:
        # A delivery, then a retry (SMTP 451) that succeeds, then a permanent failure (550): dead-lettered.
        delivered, retried, failed = (gift_row(sender) for _ in range(3))
        publish_delivery(delivered.id)
        wait_until(lambda: settled(delivered, GiftStatus.DELIVERED), timeout=60, message="no delivery")
        smtp_sink.replies.append("451 4.3.0 Try again later")
        publish_delivery(retried.id)
        wait_until(lambda: settled(retried, GiftStatus.DELIVERED), timeout=60, message="no retried delivery")
        smtp_sink.replies.append("550 5.1.1 No such user")
        publish_delivery(failed.id)
        wait_until(lambda: settled(failed, GiftStatus.FAILED), timeout=60, message="no permanent failure")
        # The maintenance tasks beat sends: the monitor reads every queue, the sweeper re-publishes.
        celery_app.send_task("gifting.monitor_queues", queue=sqs_facts.MAINTENANCE_QUEUE)
        celery_app.send_task("gifting.sweep_stale_gifts", queue=sqs_facts.MAINTENANCE_QUEUE)
        calls = tmp_path / "worker.calls"
        wait_until(lambda: count(calls, ("DeleteMessage", sqs_facts.MAINTENANCE_QUEUE)) == 2, timeout=60)
        # A pool child lost mid-task puts its message back (reject_on_worker_lost), as does a worker
        # stopping with messages it has not run: the same kombu path on either consumed queue.
        for queue in sqs_facts.CONSUMED_QUEUES:
            lost = gift_row(sender)
            lost_while_running(worker, smtp_sink, lost, queue=queue)
            wait_until(partial(count, calls, ("ChangeMessageVisibility", queue)), timeout=60)
            wait_until(partial(settled, lost, GiftStatus.DELIVERED), timeout=60, message="lost, never redelivered")
    finally:
        stop(worker)
    assert_same(read_calls_file(calls), aws_actions.WORKER, log=tmp_path / "worker.log")


def test_beat_makes_exactly_its_listed_calls(sqs, tmp_path):
    beat = celery_process(
        tmp_path, "beat", "beat", "--loglevel", "INFO", "--schedule", str(tmp_path / "celerybeat-schedule"),
        GIFT_SWEEP_INTERVAL="1", MONITOR_INTERVAL="1",
    )  # fmt: skip
    calls = tmp_path / "beat.calls"
    try:
        wait_until(lambda: ("SendMessage", sqs_facts.MAINTENANCE_QUEUE) in read_calls_file(calls), timeout=60)
    finally:
        stop(beat)
    assert_same(read_calls_file(calls), aws_actions.BEAT, log=tmp_path / "beat.log")


# --- the template's roles -----------------------------------------------------


def mismatches(template: dict) -> dict[str, dict[str, set]]:
    """Per process kind, what its role lacks and what it has that the code never does."""
    found = {}
    for process, expected in aws_actions.PROCESS_ACTIONS.items():
        granted = role_grants(template, ROLE_OF_PROCESS[process])
        if granted != expected:
            found[process] = {"missing": set(expected - granted), "extra": set(granted - expected)}
    return found


def test_each_role_grants_exactly_what_its_process_calls():
    assert mismatches(load_template()) == {}


def test_the_cross_check_fails_when_a_role_loses_an_action():
    template = copy.deepcopy(load_template())
    statements = template["Resources"][ROLE_OF_PROCESS["worker"]]["Properties"]["Policies"][0]["PolicyDocument"]
    statement = next(s for s in statements["Statement"] if "sqs:DeleteMessage" in s["Action"])
    statement["Action"] = [action for action in statement["Action"] if action != "sqs:DeleteMessage"]

    found = mismatches(template)

    assert set(found) == {"worker"}
    assert ("DeleteMessage", sqs_facts.GIFT_QUEUE) in found["worker"]["missing"]


def test_the_cross_check_fails_when_a_role_gains_an_action():
    template = copy.deepcopy(load_template())
    statements = template["Resources"][ROLE_OF_PROCESS["web"]]["Properties"]["Policies"][0]["PolicyDocument"]
    statements["Statement"][0]["Action"] = [*statements["Statement"][0]["Action"], "sqs:PurgeQueue"]

    found = mismatches(template)

    assert set(found) == {"web"}
    assert found["web"]["extra"] and not found["web"]["missing"]
