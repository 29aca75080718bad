"""Operators' surface against a real SQS server: queue setup, readiness, metrics, the sweeper."""

import json
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from config.celery import app
from core import sqs as sqs_facts
from core.sqs import queue_url, sqs_client, sqs_name
from gifting.models import GiftStatus
from tests.factories import gift_row
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


def queue_attributes(queue: str) -> dict[str, str]:
    client = sqs_client()
    return client.get_queue_attributes(QueueUrl=queue_url(client, queue), AttributeNames=["All"])["Attributes"]


def test_setup_queues_is_idempotent_and_sets_the_redrive_policy(sqs, capsys):
    call_command("setup_queues")
    call_command("setup_queues")

    names = [line.split(":")[0] for line in capsys.readouterr().out.splitlines()]
    assert sorted(set(names)) == sorted(sqs_name(q) for q in ("gift-delivery", "gift-delivery-dlq", "gift-maintenance"))
    gift_queue = queue_attributes(sqs_facts.GIFT_QUEUE)
    redrive = json.loads(gift_queue["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == queue_attributes(sqs_facts.GIFT_DLQ)["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == settings.SQS_MAX_RECEIVE_COUNT
    assert int(gift_queue["VisibilityTimeout"]) == settings.SQS_VISIBILITY_TIMEOUT
    assert "RedrivePolicy" not in queue_attributes(sqs_facts.GIFT_DLQ)


def test_setup_queues_reports_an_unreachable_sqs(settings):
    settings.SQS_ENDPOINT_URL = "http://127.0.0.1:9"  # discard port: nothing listens

    with pytest.raises(CommandError, match="SQS is not reachable"):
        call_command("setup_queues", "--wait", "0")


def test_setup_queues_refuses_a_negative_wait():
    with pytest.raises(CommandError, match="--wait"):
        call_command("setup_queues", "--wait", "-1")


def test_readyz_reports_each_dependency(sqs, transactional_db, client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "cache": "ok", "sqs": "ok"}}

    sqs.stop()
    try:
        response = client.get("/readyz")
    finally:
        sqs.start()
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "cache": "ok", "sqs": "unavailable"}


def test_metrics_show_gifts_and_queue_depth(sqs, transactional_db, client, make_user):
    gift_row(make_user())

    body = client.get("/metrics").content.decode()

    assert 'gifts{status="queued"} 1.0' in body
    assert f'sqs_queue_messages{{queue="{sqs_name(sqs_facts.GIFT_QUEUE)}",state="visible"}} 0.0' in body
    assert "sqs_up 1.0" in body


def test_sweeper_task_runs_on_the_maintenance_queue_and_republishes(sqs, smtp_sink, start_worker, make_user):
    lost_long_ago = timezone.now() - timedelta(seconds=settings.GIFT_REPUBLISH_AFTER + 60)
    gift = gift_row(make_user(), next_attempt_at=lost_long_ago)
    start_worker()

    app.send_task("gifting.sweep_stale_gifts")

    def delivered():
        gift.refresh_from_db()
        return gift.status == GiftStatus.DELIVERED

    wait_until(delivered, timeout=60, message="the sweeper did not re-publish the gift")
    assert len(smtp_sink.messages_for(gift.id)) == 1
