"""End to end: API → PostgreSQL/SQLite → SQS (moto) → celery worker → SMTP (aiosmtpd)."""

import base64
import json
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from core import sqs as sqs_facts
from core.sqs import decode_task_message, queue_depth, queue_url, sqs_client
from gifting.models import Gift, GiftEvent, GiftEventType, GiftStatus
from gifting.publishing import publish_delivery
from gifting.services.outbox import gifts_republish_stale
from tests.integration.sqs_messages import receive_all
from tests.waiting import wait_until
from vouchers.models import Voucher

pytestmark = pytest.mark.integration

DELIVERY_TIMEOUT = 60


def post_gift(client: APIClient, **overrides) -> Gift:
    body = {"recipient_email": "bob@example.com", "amount": "25.00", "currency": "EUR", "message": "Enjoy!"}
    response = client.post(
        "/api/v1/gifts/", {**body, **overrides}, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4())
    )
    assert response.status_code == 202, response.content
    return Gift.objects.get(id=response.json()["id"])


def wait_for_status(gift: Gift, status: str) -> Gift:
    def reached():
        gift.refresh_from_db()
        return gift.status == status

    wait_until(reached, timeout=DELIVERY_TIMEOUT, message=f"gift stayed {gift.status}, expected {status}")
    return gift


def event_types(gift: Gift) -> list[str]:
    return list(GiftEvent.objects.filter(gift=gift).order_by("at", "id").values_list("type", flat=True))


def dlq_gift_ids() -> list[str]:
    ids = []
    for message in receive_all(sqs_facts.GIFT_DLQ):
        task, args = decode_task_message(message["Body"])
        assert task == "gifting.deliver_gift"
        ids.append(args[0])
    return ids


def test_gift_is_delivered_once_with_its_voucher(sqs, smtp_sink, start_worker, client):
    start_worker()
    gift = post_gift(client, amount="42.50", message="Happy birthday")

    wait_for_status(gift, GiftStatus.DELIVERED)

    voucher = Voucher.objects.get(gift=gift)
    [mail] = smtp_sink.messages_for(gift.id)
    assert mail["To"] == "bob@example.com"
    assert "42.50 EUR" in mail["Subject"]
    text = mail.get_payload()[0].get_payload(decode=True).decode()
    html = mail.get_payload()[1].get_payload(decode=True).decode()
    assert voucher.code in text and voucher.code in html
    assert "Alice Sender" in text and "Happy birthday" in text
    assert gift.attempts == 1
    assert event_types(gift) == ["created", "queued", "delivery_attempted", "delivered"]
    # The worker's events carry the request id of the API call that accepted the gift.
    [request_id] = set(GiftEvent.objects.filter(gift=gift).values_list("request_id", flat=True))
    assert len(request_id) == 32

    detail = client.get(f"/api/v1/gifts/{gift.id}/").json()
    assert detail["status"] == "delivered"
    assert [event["type"] for event in detail["events"]] == ["created", "queued", "delivery_attempted", "delivered"]


def test_transient_smtp_failures_are_retried_until_delivered(sqs, smtp_sink, start_worker, client):
    smtp_sink.replies.extend(["451 4.3.0 Try again later", "451 4.3.0 Try again later"])
    start_worker()
    gift = post_gift(client)

    wait_for_status(gift, GiftStatus.DELIVERED)

    assert gift.attempts == 3
    assert len(smtp_sink.messages_for(gift.id)) == 1
    assert event_types(gift).count(GiftEventType.RETRY_SCHEDULED) == 2
    assert Voucher.objects.filter(gift=gift).count() == 1


def test_permanent_smtp_failure_fails_at_once_and_dead_letters(sqs, smtp_sink, start_worker, client):
    smtp_sink.default_reply = "550 5.1.1 No such mailbox"
    start_worker()
    gift = post_gift(client)

    wait_for_status(gift, GiftStatus.FAILED)

    assert gift.attempts == 1
    assert gift.last_error == "The voucher could not be delivered."
    wait_until(lambda: GiftEventType.DEAD_LETTERED in event_types(gift), message="not dead-lettered")
    assert dlq_gift_ids() == [str(gift.id)]
    assert smtp_sink.messages == []


def test_exhausted_retries_fail_and_dead_letter(sqs, smtp_sink, start_worker, client):
    smtp_sink.default_reply = "451 4.3.0 Try again later"
    start_worker()
    gift = post_gift(client)

    wait_for_status(gift, GiftStatus.FAILED)

    assert gift.attempts == 1 + settings.GIFT_MAX_RETRIES
    assert smtp_sink.data_commands == 1 + settings.GIFT_MAX_RETRIES
    wait_until(lambda: GiftEventType.DEAD_LETTERED in event_types(gift), message="not dead-lettered")
    assert dlq_gift_ids() == [str(gift.id)]
    detail = client.get(f"/api/v1/gifts/{gift.id}/").json()
    assert detail["status"] == "failed"
    assert detail["last_error"] == "Delivery kept failing; we stopped retrying."


def test_dead_letter_is_redelivered_unchanged_by_a_redrive(sqs, smtp_sink, start_worker, client):
    smtp_sink.replies.append("550 5.1.1 No such mailbox")
    start_worker()
    gift = post_gift(client)
    wait_for_status(gift, GiftStatus.FAILED)
    wait_until(lambda: GiftEventType.DEAD_LETTERED in event_types(gift), message="not dead-lettered")
    sqs_api = sqs_client()
    sqs_api.send_message(QueueUrl=queue_url(sqs_api, sqs_facts.GIFT_DLQ), MessageBody="a stranger's message")

    output = StringIO()
    call_command("dlq", "redrive", "--all", stdout=output)

    assert "1 redriven, 1 left on the DLQ" in output.getvalue()
    wait_for_status(gift, GiftStatus.DELIVERED)
    assert len(smtp_sink.messages_for(gift.id)) == 1
    assert GiftEventType.REDRIVEN in event_types(gift)


def test_duplicate_message_for_a_delivered_gift_sends_nothing(sqs, smtp_sink, start_worker, client):
    start_worker()
    gift = post_gift(client)
    wait_for_status(gift, GiftStatus.DELIVERED)

    publish_delivery(gift.id)

    wait_until(lambda: GiftEventType.DUPLICATE_IGNORED in event_types(gift), message="duplicate not processed")
    assert len(smtp_sink.messages_for(gift.id)) == 1
    assert Voucher.objects.filter(gift=gift).count() == 1


def test_worker_killed_mid_send_redelivers_exactly_once(sqs, smtp_sink, start_worker, client):
    smtp_sink.hold()
    doomed = start_worker()
    gift = post_gift(client)
    wait_until(smtp_sink.holding.is_set, timeout=DELIVERY_TIMEOUT, message="worker never started sending")

    doomed.kill()
    smtp_sink.release()
    start_worker()

    # SQS hands the unacknowledged message out again after the visibility timeout.
    wait_for_status(gift, GiftStatus.DELIVERED)
    assert len(smtp_sink.messages_for(gift.id)) == 1
    assert Voucher.objects.filter(gift=gift).count() == 1
    assert gift.attempts == 1  # the killed attempt rolled back with its transaction


def test_gift_accepted_while_sqs_is_down_is_delivered_by_the_sweeper(sqs, smtp_sink, start_worker, client):
    sqs.stop()
    try:
        gift = post_gift(client)
        assert gift.status == GiftStatus.QUEUED
        wait_until(lambda: GiftEventType.PUBLISH_FAILED in event_types(gift), message="the publisher never tried")
    finally:
        sqs.start()  # back, empty: whatever it held is lost
    start_worker()

    republished = gifts_republish_stale(now=timezone.now() + timedelta(seconds=settings.GIFT_REPUBLISH_AFTER + 1))

    assert republished == 1
    wait_for_status(gift, GiftStatus.DELIVERED)
    assert len(smtp_sink.messages_for(gift.id)) == 1


def test_bad_messages_are_dropped_or_dead_lettered_and_never_block(sqs, smtp_sink, start_worker, client):
    sqs_api = sqs_client()
    gift_queue = queue_url(sqs_api, sqs_facts.GIFT_QUEUE)
    sqs_api.send_message(QueueUrl=gift_queue, MessageBody="this is not a celery message")
    publish_delivery(uuid.uuid4())  # a gift we never had: logged and dropped
    publish_delivery("not-a-uuid")  # a malformed id: logged and dropped
    start_worker()
    gift = post_gift(client)

    wait_for_status(gift, GiftStatus.DELIVERED)

    # Celery rejects what it cannot parse; on a queue with a RedrivePolicy kombu
    # leaves it to SQS, which moves it to the DLQ after SQS_MAX_RECEIVE_COUNT receives.
    def garbage_dead_lettered():
        return [m for m in receive_all(sqs_facts.GIFT_DLQ) if m["Body"] == "this is not a celery message"]

    wait_until(garbage_dead_lettered, timeout=DELIVERY_TIMEOUT, message="garbage never reached the DLQ")

    def drained():
        depth = queue_depth(sqs_api, sqs_facts.GIFT_QUEUE)
        return depth["visible"] == depth["in_flight"] == depth["delayed"] == 0

    wait_until(drained, message="bad messages were left on the gift queue")


def test_queue_messages_name_the_gift_and_carry_no_personal_data(sqs, client):
    gift = post_gift(client, recipient_email="secret.person@example.com", message="private words")

    [message] = receive_all(sqs_facts.GIFT_QUEUE)

    task, args = decode_task_message(message["Body"])
    assert (task, args) == ("gifting.deliver_gift", [str(gift.id)])
    envelope = json.loads(base64.b64decode(message["Body"]))
    everything = json.dumps(envelope) + base64.b64decode(envelope["body"]).decode()
    assert "secret.person" not in everything and "private words" not in everything
