"""Held gifts: reviewers approve and reject, hold periods end, recipients confirm their address."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from fraud.decisions import HoldTier
from fraud.models import RecipientVerification, RiskAssessment
from gifting.models import Gift, GiftEvent, GiftStatus
from gifting.services import delivery, holds, intake, outbox
from vouchers.models import Voucher


def event_types(gift) -> list[str]:
    return list(GiftEvent.objects.filter(gift=gift).values_list("type", flat=True))


def give_review_permission(user):
    user.user_permissions.add(Permission.objects.get(codename="review_gift"))
    return type(user).objects.get(pk=user.pk)  # a fresh permission cache


@pytest.fixture
def sender(user):
    """`user` (whose token auth_client holds), a month old: only amounts decide the hold tier."""
    type(user).objects.filter(pk=user.pk).update(date_joined=timezone.now() - timedelta(days=30))
    return type(user).objects.get(pk=user.pk)


@pytest.fixture
def reviewer(make_user):
    return give_review_permission(make_user(is_staff=True))


@pytest.fixture
def send(sender):
    def send(amount="600.00", by=None, **fields):
        fields = {"recipient_email": "bob@example.com", "currency": "EUR", **fields}
        return intake.gift_create(sender=by or sender, amount=Decimal(amount), **fields)

    return send


@pytest.fixture
def held(send):
    """Held for approval (600 >= FRAUD_APPROVAL_THRESHOLD); its recipient must confirm (>= 500)."""
    gift = send("600.00")
    assert (gift.status, gift.risk.hold_tier) == (GiftStatus.HELD, HoldTier.APPROVAL)
    return gift


def assert_unreviewed(gift) -> None:
    gift.refresh_from_db()
    risk = RiskAssessment.objects.get(gift=gift)
    assert (gift.status, risk.review_outcome, risk.reviewed_by, risk.released_at) == ("held", "", None, None)


def review_as(reviewer, action: str, gift):
    if action == "approve":
        return holds.gift_approve(gift_id=gift.id, reviewer=reviewer)
    return holds.gift_reject(gift_id=gift.id, reviewer=reviewer, reason="Looks odd")


@pytest.mark.parametrize("action", ["approve", "reject"])
def test_reviewing_needs_the_review_permission(held, make_user, action):
    with pytest.raises(holds.ReviewError, match="permission"):
        review_as(make_user(is_staff=True), action, held)
    assert_unreviewed(held)


@pytest.mark.parametrize("action", ["approve", "reject"])
def test_a_reviewer_cannot_review_their_own_gift(send, reviewer, action):
    own = send("600.00", by=reviewer)
    with pytest.raises(holds.ReviewError, match="your own gift"):
        review_as(reviewer, action, own)
    assert_unreviewed(own)


@pytest.mark.parametrize("action", ["approve", "reject"])
def test_only_held_gifts_can_be_reviewed(send, reviewer, action):
    queued = send("10.00")
    with pytest.raises(holds.ReviewError, match="Only held gifts"):
        review_as(reviewer, action, queued)
    assert Gift.objects.get(id=queued.id).status == GiftStatus.QUEUED


def test_approving_releases_the_gift_and_publishes_it_on_commit(held, reviewer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        holds.gift_approve(gift_id=held.id, reviewer=reviewer, reason="  Known customer  ")

    held.refresh_from_db()
    assert held.status == GiftStatus.QUEUED
    risk = held.risk
    assert (risk.review_outcome, risk.reviewed_by, risk.review_reason) == ("approved", reviewer, "Known customer")
    assert risk.reviewed_at is not None and risk.released_at is not None
    assert event_types(held) == ["created", "held", "approved", "released"]
    approved = GiftEvent.objects.get(gift=held, type="approved")
    assert (approved.actor, approved.details) == (reviewer, {"review_reason": "Known customer"})
    assert GiftEvent.objects.get(gift=held, type="released").actor_label == "reviewer"
    [publish] = callbacks
    assert publish.func is outbox.gift_publish
    assert publish.keywords == {"gift_id": held.id, "actor_label": "reviewer"}


def test_a_gift_cannot_be_approved_twice(held, reviewer, outbox, make_user):
    holds.gift_approve(gift_id=held.id, reviewer=reviewer)
    with pytest.raises(holds.ReviewError):
        holds.gift_approve(gift_id=held.id, reviewer=reviewer)

    delivery.gift_deliver(gift_id=held.id)  # held again, now waiting for its recipient
    assert Gift.objects.get(id=held.id).status == GiftStatus.HELD
    with pytest.raises(holds.ReviewError, match="already been reviewed"):
        holds.gift_approve(gift_id=held.id, reviewer=give_review_permission(make_user(is_staff=True)))
    assert event_types(held).count("approved") == 1


@pytest.mark.parametrize("reason", ["", "   \n\t", "x" * 501])
def test_rejecting_needs_a_reason_of_at_most_500_characters(held, reviewer, reason):
    with pytest.raises(holds.ReviewError, match="reason"):
        holds.gift_reject(gift_id=held.id, reviewer=reviewer, reason=reason)
    assert_unreviewed(held)
    assert event_types(held) == ["created", "held"]


def test_a_500_character_reason_is_fine(held, reviewer):
    holds.gift_reject(gift_id=held.id, reviewer=reviewer, reason="x" * 500)
    assert Gift.objects.get(id=held.id).status == GiftStatus.REJECTED


def test_rejecting_keeps_the_reason_from_the_sender(held, reviewer, auth_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        holds.gift_reject(gift_id=held.id, reviewer=reviewer, reason=" Stolen card reported ")

    assert callbacks == []
    held.refresh_from_db()
    assert held.status == GiftStatus.REJECTED
    risk = held.risk
    assert (risk.review_outcome, risk.reviewed_by, risk.review_reason) == ("rejected", reviewer, "Stolen card reported")
    assert risk.released_at is None
    rejected = GiftEvent.objects.get(gift=held, type="rejected")
    assert rejected.actor == reviewer
    assert rejected.details == {"reason": "The gift was declined.", "review_reason": "Stolen card reported"}

    body = auth_client.get(f"/api/v1/gifts/{held.id}/").json()
    assert body["status"] == "rejected"
    assert body["events"][-1]["details"] == {"reason": "The gift was declined."}
    assert "Stolen card" not in str(body)


def test_ended_holds_release_only_due_gifts_still_in_their_hold_period(
    send, reviewer, django_capture_on_commit_callbacks
):
    due, future, blocked = (send("250.00") for _ in range(3))
    approval = send("600.00")
    assert {due.risk.hold_tier, approval.risk.hold_tier} == {HoldTier.DELAY, HoldTier.APPROVAL}
    now = timezone.now()
    Gift.objects.filter(id__in=[due.id, blocked.id]).update(hold_until=now)
    Gift.objects.filter(id=future.id).update(hold_until=now + timedelta(seconds=1))
    holds.gift_reject(gift_id=blocked.id, reviewer=reviewer, reason="Blocked before release")

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert holds.gifts_release_ended_holds(now=now) == 1

    statuses = dict(Gift.objects.values_list("id", "status"))
    assert statuses[due.id] == GiftStatus.QUEUED
    assert {statuses[g.id] for g in (future, approval)} == {GiftStatus.HELD}
    assert statuses[blocked.id] == GiftStatus.REJECTED
    assert event_types(due)[-1] == "released"
    assert GiftEvent.objects.get(gift=due, type="released").actor_label == "sweeper"
    assert RiskAssessment.objects.get(gift=due).released_at >= now
    assert [c.keywords["gift_id"] for c in callbacks] == [due.id]
    assert holds.gifts_release_ended_holds(now=now) == 0


def test_a_delayed_gift_waits_for_the_hold_period(send, settings):
    gift = send("250.00")
    assert gift.risk.release_at == gift.next_attempt_at + timedelta(seconds=settings.FRAUD_HOLD_PERIOD)
    assert holds.gifts_release_ended_holds(now=gift.risk.release_at - timedelta(seconds=1)) == 0
    assert holds.gifts_release_ended_holds(now=gift.risk.release_at) == 1


# --- recipient verification ----------------------------------------------------


@pytest.fixture
def awaiting_recipient(held, reviewer, outbox, settings):
    """An approved 600 EUR gift whose delivery sent the recipient a confirmation link: (gift, token)."""
    settings.SITE_URL = "https://gifts.example.com/"
    holds.gift_approve(gift_id=held.id, reviewer=reviewer)
    assert delivery.gift_deliver(gift_id=held.id) is True
    [email] = outbox
    match = re.search(r"https://gifts\.example\.com/gifts/verify/([A-Za-z0-9_-]+)/", email.body)
    assert match, email.body
    return held, match.group(1)


def test_a_high_value_gift_first_asks_the_recipient_to_confirm(awaiting_recipient, outbox):
    gift, token = awaiting_recipient

    [email] = outbox
    assert email.to == ["bob@example.com"]
    assert f"/gifts/verify/{token}/" in email.alternatives[0][0]
    assert not Voucher.objects.filter(gift=gift).exists()
    gift.refresh_from_db()
    assert (gift.status, gift.attempts) == (GiftStatus.HELD, 1)
    assert event_types(gift)[-2:] == ["delivery_attempted", "verification_sent"]


def test_the_recipient_confirms_once_and_then_gets_the_voucher(awaiting_recipient, outbox, client):
    gift, token = awaiting_recipient
    link = f"/gifts/verify/{token}/"

    page = client.get(link)
    assert page.status_code == 200
    assert b"<form" in page.content and b"600.00 EUR" in page.content
    assert Gift.objects.get(id=gift.id).status == GiftStatus.HELD  # looking confirms nothing

    confirmed = client.post(link)
    assert confirmed.status_code == 200
    assert b"confirmed" in confirmed.content
    assert Gift.objects.get(id=gift.id).status == GiftStatus.QUEUED
    assert event_types(gift)[-2:] == ["recipient_confirmed", "released"]

    assert delivery.gift_deliver(gift_id=gift.id) is True
    voucher = Voucher.objects.get(gift=gift)
    verification_email, voucher_email = outbox
    assert voucher.code in voucher_email.body
    assert voucher.code not in verification_email.body + verification_email.alternatives[0][0]
    assert Gift.objects.get(id=gift.id).status == GiftStatus.DELIVERED

    again = client.post(link)
    assert again.status_code == 400
    assert b"already been used" in again.content
    assert client.get(link).status_code == 404


def test_an_expired_link_cannot_confirm(awaiting_recipient, client):
    gift, token = awaiting_recipient
    RecipientVerification.objects.filter(gift=gift).update(expires_at=timezone.now() - timedelta(seconds=1))

    response = client.post(f"/gifts/verify/{token}/")

    assert response.status_code == 400
    assert b"expired" in response.content
    assert Gift.objects.get(id=gift.id).status == GiftStatus.HELD
    assert RecipientVerification.objects.get(gift=gift).confirmed_at is None


def test_a_link_to_a_rejected_gift_cannot_confirm(awaiting_recipient, client, make_user):
    gift, token = awaiting_recipient
    holds.gift_reject(gift_id=gift.id, reviewer=give_review_permission(make_user()), reason="Mule account")

    assert client.post(f"/gifts/verify/{token}/").status_code == 400
    assert Gift.objects.get(id=gift.id).status == GiftStatus.REJECTED


@pytest.mark.parametrize("token", ["not-a-real-token", "x" * 101])
def test_a_garbage_token_is_not_found(db, client, token):
    assert client.get(f"/gifts/verify/{token}/").status_code == 404
    assert client.post(f"/gifts/verify/{token}/").status_code == 400
