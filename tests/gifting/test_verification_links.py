"""Expired confirmation links: the recipient can ask for a new one, which the worker sends."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from fraud.models import RecipientVerification, RiskAssessment
from fraud.verification import link_find, link_issue
from gifting.models import GiftState, GiftStatus, HoldReason
from gifting.services import holds
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


@pytest.mark.parametrize("action", [{}, {"resend": "1"}])
def test_a_link_superseded_while_its_request_waits_can_never_act(user, monkeypatch, action):
    """The worker sends a new link between the page's lookup and its lock: the old link acts on nothing."""
    gift, old_token = held_for_recipient(user)
    if action:
        expire(gift)
    new_tokens = []

    def lookup_then_worker_sends_a_new_link(**kwargs):
        found = link_find(**kwargs)
        new_tokens.append(link_issue(gift_id=gift.id))
        return found

    monkeypatch.setattr(holds, "link_find", lookup_then_worker_sends_a_new_link)

    response = Client().post(f"/gifts/verify/{old_token}/", action)

    assert response.status_code == 400
    assert b"not valid" in response.content
    gift.refresh_from_db()
    assert gift.state == GiftState.HELD_FOR_RECIPIENT
    assert RecipientVerification.objects.get(gift=gift).confirmed_at is None
    monkeypatch.undo()
    newest = Client().post(f"/gifts/verify/{new_tokens[0]}/")
    assert newest.status_code == 200, newest.content.decode()[-300:]  # the newest link still works
