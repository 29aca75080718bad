"""Held gifts end to end: approval, rejection, the automatic end of a hold, recipient confirmation."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from config.celery import app
from gifting.models import GiftStatus
from gifting.services.holds import gift_approve, gift_reject
from gifting.services.intake import gift_create
from tests.integration.sqs_messages import receive_all
from tests.integration.test_delivery import event_types, wait_for_status
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def sender(transactional_db, make_user):
    """An established account: a new one would add its own risk signal."""
    return make_user(first_name="Sam", last_name="Sender", date_joined=timezone.now() - timedelta(days=90))


@pytest.fixture
def reviewer(transactional_db, make_user):
    reviewer = make_user(is_staff=True)
    reviewer.user_permissions.add(Permission.objects.get(codename="review_gift"))
    return type(reviewer).objects.get(pk=reviewer.pk)  # fresh permission cache


@pytest.fixture
def no_recipient_verification(settings):
    settings.FRAUD_VERIFY_RECIPIENT_THRESHOLD = 100_000


def test_held_gift_is_delivered_once_approved(
    sqs, smtp_sink, start_worker, sender, reviewer, no_recipient_verification
):
    start_worker()
    gift = gift_create(sender=sender, recipient_email="bob@example.com", amount="600.00", currency="EUR")
    assert gift.status == GiftStatus.HELD
    assert receive_all("gift-delivery") == []  # held gifts are not published

    gift_approve(gift_id=gift.id, reviewer=reviewer, reason="Known customer")

    wait_for_status(gift, GiftStatus.DELIVERED)
    assert len(smtp_sink.messages_for(gift.id)) == 1
    assert event_types(gift)[:5] == ["created", "held", "approved", "released", "queued"]


def test_rejected_gift_is_never_sent(sqs, smtp_sink, sender, reviewer, no_recipient_verification):
    gift = gift_create(sender=sender, recipient_email="bob@example.com", amount="600.00", currency="EUR")

    gift_reject(gift_id=gift.id, reviewer=reviewer, reason="Stolen card reported")

    gift.refresh_from_db()
    assert gift.status == GiftStatus.REJECTED
    assert receive_all("gift-delivery") == []
    assert smtp_sink.messages == []


def test_delayed_gift_goes_out_when_its_hold_ends_unless_blocked(
    sqs, smtp_sink, start_worker, settings, sender, reviewer, no_recipient_verification
):
    settings.FRAUD_HOLD_PERIOD = 0  # the hold has ended as soon as the gift exists
    released = gift_create(sender=sender, recipient_email="ann@example.com", amount="300.00", currency="EUR")
    blocked = gift_create(sender=sender, recipient_email="eve@example.com", amount="300.00", currency="EUR")
    assert released.status == blocked.status == GiftStatus.HELD
    gift_reject(gift_id=blocked.id, reviewer=reviewer, reason="Blocked during the hold")
    start_worker()

    app.send_task("gifting.sweep_ended_holds")  # what beat sends every GIFT_SWEEP_INTERVAL

    wait_for_status(released, GiftStatus.DELIVERED)
    blocked.refresh_from_db()
    assert blocked.status == GiftStatus.REJECTED
    assert smtp_sink.messages_for(blocked.id) == []


def test_high_value_gift_waits_for_the_recipient_to_confirm(sqs, smtp_sink, start_worker, sender, reviewer):
    start_worker()
    gift = gift_create(sender=sender, recipient_email="bob@example.com", amount="800.00", currency="EUR")
    gift_approve(gift_id=gift.id, reviewer=reviewer)

    def verification_email():
        return next((m for m in smtp_sink.messages if m["To"] == "bob@example.com"), None)

    email = wait_until(verification_email, timeout=60, message="no verification email")
    text = email.get_payload()[0].get_payload(decode=True).decode()
    link = re.search(r"https?://\S+/gifts/verify/(\S+)/", text)
    assert link, text
    wait_for_status(gift, GiftStatus.HELD)
    assert "verification_sent" in event_types(gift)

    response = Client().post(f"/gifts/verify/{link.group(1)}/")

    assert response.status_code == 200
    wait_for_status(gift, GiftStatus.DELIVERED)
    [voucher_email] = smtp_sink.messages_for(gift.id)
    assert "800.00 EUR" in voucher_email["Subject"]
    assert len(smtp_sink.messages) == 2  # the confirmation request, then the voucher
