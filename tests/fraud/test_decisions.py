"""The decision table: from signals and amount to allow, hold (delay or approval) or reject."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from fraud.decisions import Decision, HoldTier, decide
from fraud.rules import Signal

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
HOLD_PERIOD = 3600


@pytest.fixture(autouse=True)
def thresholds(settings):
    settings.FRAUD_REVIEW_SCORE = 50
    settings.FRAUD_REJECT_SCORE = 100
    settings.FRAUD_DELAY_THRESHOLD = Decimal("200")
    settings.FRAUD_APPROVAL_THRESHOLD = Decimal("500")
    settings.FRAUD_VERIFY_RECIPIENT_THRESHOLD = Decimal("500")
    settings.FRAUD_HOLD_PERIOD = HOLD_PERIOD


def signals(*scores: int) -> list[Signal]:
    return [Signal(f"rule{i}", score, f"reason {i}") for i, score in enumerate(scores)]


def verdict_for(amount: str, *scores: int, email: bool = False):
    return decide(amount=Decimal(amount), signals=signals(*scores), recipient_is_email=email, now=NOW)


@pytest.mark.parametrize(
    ("amount", "scores", "decision", "tier"),
    [
        pytest.param("10", (100,), Decision.REJECT, HoldTier.NONE, id="reject-at-reject-score"),
        pytest.param("10", (60, 60), Decision.REJECT, HoldTier.NONE, id="reject-scores-add-up"),
        pytest.param("1000", (70, 30), Decision.REJECT, HoldTier.NONE, id="reject-wins-over-amount"),
        pytest.param("10", (99,), Decision.HOLD, HoldTier.APPROVAL, id="approval-just-below-reject"),
        pytest.param("10", (50,), Decision.HOLD, HoldTier.APPROVAL, id="approval-at-review-score"),
        pytest.param("250", (30, 20), Decision.HOLD, HoldTier.APPROVAL, id="approval-score-beats-delay"),
        pytest.param("500", (), Decision.HOLD, HoldTier.APPROVAL, id="approval-at-approval-threshold"),
        pytest.param("1999.99", (20,), Decision.HOLD, HoldTier.APPROVAL, id="approval-by-amount-with-signal"),
        pytest.param("499.99", (), Decision.HOLD, HoldTier.DELAY, id="delay-just-below-approval"),
        pytest.param("200", (), Decision.HOLD, HoldTier.DELAY, id="delay-at-delay-threshold"),
        pytest.param("200", (49,), Decision.HOLD, HoldTier.DELAY, id="delay-score-below-review"),
        pytest.param("199.99", (), Decision.ALLOW, HoldTier.NONE, id="allow-just-below-delay"),
        pytest.param("10", (49,), Decision.ALLOW, HoldTier.NONE, id="allow-score-below-review"),
        pytest.param("10", (), Decision.ALLOW, HoldTier.NONE, id="allow-nothing"),
    ],
)
def test_the_decision_table(amount, scores, decision, tier):
    verdict = verdict_for(amount, *scores)

    assert (verdict.decision, verdict.hold_tier) == (decision, tier)
    assert verdict.score == sum(scores)
    assert [s.score for s in verdict.signals] == list(scores)
    if tier == HoldTier.DELAY:
        assert verdict.release_at == NOW + timedelta(seconds=HOLD_PERIOD)
    else:
        assert verdict.release_at is None


def test_the_hold_period_comes_from_settings(settings):
    settings.FRAUD_HOLD_PERIOD = 60
    assert verdict_for("300").release_at == NOW + timedelta(seconds=60)


def test_the_score_thresholds_come_from_settings(settings):
    settings.FRAUD_REVIEW_SCORE = 20
    settings.FRAUD_REJECT_SCORE = 40
    assert verdict_for("10", 20).decision == Decision.HOLD
    assert verdict_for("10", 20, 20).decision == Decision.REJECT


@pytest.mark.parametrize(
    ("amount", "scores", "email", "verify"),
    [
        pytest.param("500", (), True, True, id="email-at-threshold"),
        pytest.param("2000", (), True, True, id="email-above-threshold"),
        pytest.param("499.99", (), True, False, id="email-below-threshold"),
        pytest.param("500", (), False, False, id="wallet-never"),
        pytest.param("2000", (20,), False, False, id="wallet-never-high"),
        pytest.param("600", (60, 60), True, False, id="never-on-reject"),
        pytest.param("600", (60,), True, True, id="held-for-approval-too"),
    ],
)
def test_recipient_verification_only_for_email_recipients_at_the_threshold(amount, scores, email, verify):
    assert verdict_for(amount, *scores, email=email).needs_recipient_verification is verify


def test_recipient_verification_is_independent_of_the_hold_tiers(settings):
    settings.FRAUD_VERIFY_RECIPIENT_THRESHOLD = Decimal("100")

    allowed = verdict_for("150", email=True)
    delayed = verdict_for("300", email=True)

    assert (allowed.decision, allowed.needs_recipient_verification) == (Decision.ALLOW, True)
    assert (delayed.hold_tier, delayed.needs_recipient_verification) == (HoldTier.DELAY, True)
    assert verdict_for("99.99", email=True).needs_recipient_verification is False
