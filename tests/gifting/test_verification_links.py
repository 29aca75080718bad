"""Expired confirmation links: the recipient can ask for a new one, which the worker sends."""

from datetime import timedelta

from django.test import Client
from django.utils import timezone

from fraud.models import RecipientVerification, RiskAssessment
from fraud.verification import link_issue
from gifting.models import GiftStatus, HoldReason
from tests.factories import gift_row


def held_for_recipient(user):
    gift = gift_row(user, amount="800.00", status=GiftStatus.HELD, hold=HoldReason.RECIPIENT)
    RiskAssessment.objects.create(gift=gift, decision="allow", needs_recipient_verification=True)
    return gift, link_issue(gift_id=gift.id)


def expire(gift):
    RecipientVerification.objects.filter(gift=gift).update(expires_at=timezone.now() - timedelta(seconds=1))


def test_an_expired_link_offers_a_new_one(user):
    gift, token = held_for_recipient(user)
    expire(gift)

    response = Client().get(f"/gifts/verify/{token}/")

    assert response.status_code == 410
    assert b'name="resend"' in response.content


def test_asking_for_a_new_link_queues_the_gift_again(user, django_capture_on_commit_callbacks):
    gift, token = held_for_recipient(user)
    expire(gift)

    with django_capture_on_commit_callbacks() as publishes:
        response = Client().post(f"/gifts/verify/{token}/", {"resend": "1"})

    assert response.status_code == 200
    gift.refresh_from_db()
    assert gift.status == GiftStatus.QUEUED
    assert len(publishes) == 1


def test_a_live_link_cannot_be_used_to_ask_for_another(user):
    gift, token = held_for_recipient(user)

    response = Client().post(f"/gifts/verify/{token}/", {"resend": "1"})

    assert response.status_code == 400
    gift.refresh_from_db()
    assert gift.status == GiftStatus.HELD
