"""`manage.py demo` against the running system: a real worker, moto's SQS server and an SMTP server."""

from io import StringIO

import pytest
from django.core.management import call_command

from core.sqs import GIFT_DLQ, queue_depth, sqs_client
from gifting.demo import DEMO_GIFTS
from gifting.models import Gift, GiftEvent

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def development_mode(settings):
    settings.DEBUG = True  # Django runs tests with DEBUG off; the demo is for development


def demo_gifts() -> dict[str, Gift]:
    gifts = {}
    for spec in DEMO_GIFTS:
        sent = Gift.objects.filter(sender__username=spec.sender)
        [gifts[spec.title]] = [gift for gift in sent if gift.message == spec.message]
    return gifts


def test_the_demo_ends_with_a_gift_in_every_state_through_the_worker(sqs, smtp_sink, start_worker):
    start_worker()
    out = StringIO()

    call_command("demo", wait=90, stdout=out)

    gifts = demo_gifts()
    assert {title: gift.state for title, gift in gifts.items()} == {spec.title: spec.expected for spec in DEMO_GIFTS}
    retried = gifts["retried, then delivered"]
    assert retried.attempts == 2
    assert list(GiftEvent.objects.filter(gift=retried).values_list("type", flat=True)) == [
        "created",
        "delivery_attempted",
        "retry_scheduled",
        "queued",
        "delivery_attempted",
        "delivered",
    ]
    # The worker sent the two vouchers (the 451 was the demo's own, in-process) and the confirmation link.
    assert len(smtp_sink.messages_for(gifts["delivered"].id)) == 1
    assert len(smtp_sink.messages_for(retried.id)) == 1
    assert any("confirm" in m["Subject"] for m in smtp_sink.messages)
    # The wallet gift failed for good in the worker, and its dead letter is on the DLQ.
    assert gifts["failed and dead-lettered"].last_error == "The voucher could not be delivered."
    assert queue_depth(sqs_client(), GIFT_DLQ)["visible"] == 1

    again = StringIO()
    call_command("demo", wait=90, stdout=again)
    assert "created " not in again.getvalue()
    assert Gift.objects.count() == len(DEMO_GIFTS)
