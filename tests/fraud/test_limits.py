"""Hard limits and risk decisions as the API applies them to POST /api/v1/gifts/."""

import json
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from fraud.decisions import HoldTier
from fraud.models import RiskAssessment, SenderLimits
from gifting.models import Gift, GiftStatus, IdempotencyKey
from gifting.services import outbox
from tests.factories import gift_row

GIFTS = "/api/v1/gifts/"
RULE_NAMES = ("velocity", "fan_in", "new_account", "high_value")


@pytest.fixture(autouse=True)
def no_rate_limits(settings):
    """These tests are about fraud limits: the API's rate limits (tested on their own) stay out of the way."""
    settings.RATELIMIT_ENABLE = False


def post_gift(client, amount="25.00", recipient="bob@example.com", key=None):
    body = {"recipient_email": recipient, "amount": amount, "currency": "EUR"}
    return client.post(GIFTS, body, format="json", HTTP_IDEMPOTENCY_KEY=key or str(uuid.uuid4()))


def aged_gift(sender, *, age: timedelta, **fields) -> Gift:
    """A gift row created `age` ago (created_at is auto_now_add, so it is moved afterwards)."""
    gift = gift_row(sender, **fields)
    Gift.objects.filter(pk=gift.pk).update(created_at=timezone.now() - age)
    return gift


def assert_refused(response, code: str, *, key: str, gifts_before: int) -> None:
    assert response.status_code == 422
    body = response.json()
    assert set(body) == {"code", "detail"}
    assert body["code"] == code
    assert isinstance(body["detail"], str) and body["detail"]
    assert Gift.objects.count() == gifts_before
    assert not IdempotencyKey.objects.filter(key=key).exists()


@pytest.mark.parametrize(
    ("min_amount", "max_amount", "amount"),
    [("5", "100", "4.99"), ("5", "100", "100.01"), ("1", "2000", "0.99"), ("1", "2000", "2000.01")],
)
def test_amounts_outside_the_limits_are_refused(auth_client, settings, min_amount, max_amount, amount):
    settings.FRAUD_MIN_AMOUNT, settings.FRAUD_MAX_AMOUNT = Decimal(min_amount), Decimal(max_amount)
    response = post_gift(auth_client, amount, key="too-much")
    assert_refused(response, "amount_limit", key="too-much", gifts_before=0)
    assert max_amount in response.json()["detail"]


@pytest.mark.parametrize("amount", ["5.00", "100.00"])
def test_amounts_at_the_limits_are_accepted(auth_client, settings, amount):
    settings.FRAUD_MIN_AMOUNT, settings.FRAUD_MAX_AMOUNT = Decimal("5"), Decimal("100")
    assert post_gift(auth_client, amount).status_code == 202


@pytest.mark.parametrize(
    ("setting", "value", "existing", "refused", "accepted", "code"),
    [
        pytest.param("FRAUD_DAILY_COUNT", 2, [(1, "10")] * 2, "10", None, "daily_quota", id="daily-count"),
        pytest.param("FRAUD_DAILY_VALUE", Decimal(100), [(1, "80")], "20.01", "20", "daily_quota", id="daily-value"),
        pytest.param("FRAUD_WEEKLY_COUNT", 2, [(72, "10")] * 2, "10", None, "weekly_quota", id="weekly-count"),
        pytest.param(
            "FRAUD_WEEKLY_VALUE", Decimal(100), [(72, "90")], "10.01", "10", "weekly_quota", id="weekly-value"
        ),
    ],
)
def test_quotas_refuse_the_gift_that_would_exceed_them(
    auth_client, user, settings, setting, value, existing, refused, accepted, code
):
    setattr(settings, setting, value)
    for hours, amount in existing:
        aged_gift(user, age=timedelta(hours=hours), amount=Decimal(amount))
    before = Gift.objects.count()

    assert_refused(post_gift(auth_client, refused, key="over"), code, key="over", gifts_before=before)
    if accepted:  # reaching the quota exactly is fine
        assert post_gift(auth_client, accepted).status_code == 202


def test_a_count_quota_can_be_reached(auth_client, user, settings):
    settings.FRAUD_DAILY_COUNT = settings.FRAUD_WEEKLY_COUNT = 3
    aged_gift(user, age=timedelta(hours=1))
    aged_gift(user, age=timedelta(days=3))
    assert post_gift(auth_client).status_code == 202
    assert post_gift(auth_client).json()["code"] == "weekly_quota"


@pytest.mark.parametrize(
    ("setting", "age"),
    [("FRAUD_DAILY_COUNT", timedelta(hours=25)), ("FRAUD_WEEKLY_COUNT", timedelta(days=8))],
)
def test_gifts_older_than_the_quota_window_do_not_count(auth_client, user, settings, setting, age):
    setattr(settings, setting, 1)
    aged_gift(user, age=age)
    assert post_gift(auth_client).status_code == 202


def test_another_senders_gifts_do_not_count(auth_client, settings, make_user):
    settings.FRAUD_DAILY_COUNT = 1
    gift_row(make_user())
    assert post_gift(auth_client).status_code == 202


@pytest.mark.parametrize(
    ("status", "counts"),
    [("queued", True), ("held", True), ("delivered", True), ("rejected", False), ("failed", False)],
)
def test_only_live_gifts_count_toward_quotas(auth_client, user, settings, status, counts):
    settings.FRAUD_DAILY_COUNT = 1
    gift_row(user, status=status, delivered_at=timezone.now() if status == "delivered" else None)
    assert post_gift(auth_client).status_code == (422 if counts else 202)


def test_a_gift_the_rules_rejected_does_not_use_up_the_quota(auth_client, settings):
    settings.FRAUD_DAILY_COUNT = 1
    settings.FRAUD_REJECT_SCORE = 30  # a new account alone is refused
    assert post_gift(auth_client).json()["status"] == "rejected"
    settings.FRAUD_REJECT_SCORE = 100
    assert post_gift(auth_client).json()["status"] == "queued"


def test_staff_can_lower_a_senders_limits(auth_client, user):
    SenderLimits.objects.create(user=user, daily_count=1, max_amount=Decimal("20"), note="chargebacks")

    assert_refused(post_gift(auth_client, "20.01", key="big"), "amount_limit", key="big", gifts_before=0)
    assert "20.00" in post_gift(auth_client, "20.01").json()["detail"]
    assert post_gift(auth_client, "20.00").status_code == 202
    assert_refused(post_gift(auth_client, "5", key="second"), "daily_quota", key="second", gifts_before=1)


def test_staff_can_raise_a_senders_limits(auth_client, user, settings):
    settings.FRAUD_MAX_AMOUNT = Decimal("50")
    settings.FRAUD_DAILY_COUNT = 1
    assert post_gift(auth_client, "80").json()["code"] == "amount_limit"

    SenderLimits.objects.create(user=user, max_amount=Decimal("100"), daily_count=3)

    assert [post_gift(auth_client, "80").status_code for _ in range(3)] == [202, 202, 202]
    assert post_gift(auth_client, "80").json()["code"] == "daily_quota"


@pytest.fixture
def fan_in_and_velocity(user, settings, make_user):
    """Two other senders gifted bob today, and the sender sent two gifts this hour: with a new account, a reject."""
    settings.FRAUD_FANIN_SENDERS = 3
    settings.FRAUD_VELOCITY_MIN_COUNT = 3
    for _ in range(2):
        gift_row(make_user(), recipient_email="bob@example.com")
        gift_row(user, recipient_email="someone@example.com")


def test_a_gift_the_rules_reject_is_accepted_as_rejected_without_saying_why(auth_client, fan_in_and_velocity):
    response = post_gift(auth_client, "25.00", "BOB@example.com")

    assert response.status_code == 202
    assert response.json()["status"] == "rejected"
    risk = RiskAssessment.objects.get(gift_id=response.json()["id"])
    assert (risk.decision, risk.score) == ("reject", 150)
    assert [s["rule"] for s in risk.signals] == ["velocity", "fan_in", "new_account"]

    detail = auth_client.get(f"{GIFTS}{response.json()['id']}/")
    assert detail.json()["status"] == "rejected"
    assert [e["type"] for e in detail.json()["events"]] == ["created", "rejected"]
    text = json.dumps([response.json(), detail.json()])
    for hint in (*RULE_NAMES, "score", "risk rules", "signal"):
        assert hint not in text


@pytest.mark.parametrize(
    ("account_age", "amount", "tier", "rules"),
    [
        pytest.param(timedelta(0), "600.00", HoldTier.APPROVAL, ["new_account", "high_value"], id="approval"),
        pytest.param(timedelta(days=30), "250.00", HoldTier.DELAY, ["high_value"], id="delay"),
    ],
)
def test_a_held_gift_is_accepted_as_held_with_its_assessment(auth_client, user, account_age, amount, tier, rules):
    type(user).objects.filter(pk=user.pk).update(date_joined=timezone.now() - account_age)

    response = post_gift(auth_client, amount)

    assert response.status_code == 202
    assert response.json()["status"] == "held"
    gift = Gift.objects.get(id=response.json()["id"])
    assert gift.status == GiftStatus.HELD
    risk = gift.risk
    assert (risk.decision, risk.hold_tier) == ("hold", tier)
    assert [s["rule"] for s in risk.signals] == rules
    assert all(set(s) == {"rule", "score", "reason"} and s["reason"] for s in risk.signals)
    assert risk.score == sum(s["score"] for s in risk.signals)
    assert (risk.release_at is not None) == (tier == HoldTier.DELAY)
    assert risk.needs_recipient_verification == (Decimal(amount) >= Decimal("500"))

    detail = auth_client.get(f"{GIFTS}{gift.id}/").json()
    assert detail["events"][-1] == {
        "type": "held",
        "at": detail["events"][-1]["at"],
        "details": {"reason": "Held for review."},
    }
    text = json.dumps(detail)
    for hint in (*RULE_NAMES, "approval", "delay", "release_at"):
        assert hint not in text


@pytest.mark.parametrize(
    ("amount", "reject_score", "status", "published"),
    [("25.00", 100, "queued", 1), ("600.00", 100, "held", 0), ("25.00", 30, "rejected", 0)],
)
def test_only_an_allowed_gift_is_published_on_commit(
    auth_client, settings, django_capture_on_commit_callbacks, amount, reject_score, status, published
):
    settings.FRAUD_REJECT_SCORE = reject_score
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post_gift(auth_client, amount)

    assert response.json()["status"] == status
    assert len(callbacks) == published
    if published:
        assert callbacks[0].func is outbox.gift_publish
        assert callbacks[0].keywords == {"gift_id": uuid.UUID(response.json()["id"]), "actor_label": "api"}
