"""fraud's entry points: assess a gift before it is stored, and keep its assessment and review.

Hard limits raise LimitExceeded (the API answers 422 and nothing is stored);
otherwise the rules and the decision table give a Verdict. The caller gathers
the SenderHistory under its own per-sender lock, so concurrent requests
cannot all slip under a quota.
"""

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser

from core.errors import ApplicationError, ErrorCode
from fraud import rules, selectors
from fraud.decisions import ReviewOutcome, Verdict, decide
from fraud.history import SenderHistory, Windows
from fraud.models import RiskAssessment


class LimitExceeded(ApplicationError):
    """A hard limit: the gift is refused and nothing is stored."""


class ReviewRefused(Exception):
    """A review fraud's records cannot take; the message says why, for the reviewer."""


def _check_hard_limits(*, sender_id: int, amount: Decimal, history: SenderHistory) -> None:
    effective = selectors.effective_limits(user_id=sender_id)
    if amount < settings.FRAUD_MIN_AMOUNT or amount > effective.max_amount:
        raise LimitExceeded(
            code=ErrorCode.AMOUNT_LIMIT,
            detail=f"A gift must be between {settings.FRAUD_MIN_AMOUNT} and {effective.max_amount}.",
        )
    for code, period, sent, count_limit, value_limit in (
        (ErrorCode.DAILY_QUOTA, "daily", history.last_day, effective.daily_count, effective.daily_value),
        (ErrorCode.WEEKLY_QUOTA, "weekly", history.last_week, effective.weekly_count, effective.weekly_value),
    ):
        if sent.count + 1 > count_limit or sent.value + amount > value_limit:
            raise LimitExceeded(
                code=code,
                detail=f"This gift would exceed your {period} limit of {count_limit} gifts or {value_limit} in value.",
            )


def gift_assess(
    *, sender_id: int, amount: Decimal, recipient_is_email: bool, history: SenderHistory, windows: Windows
) -> Verdict:
    """Refuse a gift over a hard limit (LimitExceeded), else decide allow / hold / reject."""
    _check_hard_limits(sender_id=sender_id, amount=amount, history=history)
    facts = gift_facts(amount=amount, history=history, windows=windows)
    return decide(amount=amount, signals=rules.evaluate(facts), recipient_is_email=recipient_is_email, now=windows.now)


def gift_facts(*, amount: Decimal, history: SenderHistory, windows: Windows) -> rules.GiftFacts:
    """What the rules see of a gift of `amount` with this history (also used by bench/evaluate_fraud_anomalies.py)."""
    hours = Decimal(windows.baseline_hours)
    return rules.GiftFacts(
        amount=amount,
        account_age=history.account_age,
        last_hour_count=history.last_hour.count + 1,
        last_hour_value=history.last_hour.value + amount,
        baseline_hourly_count=history.baseline.count / hours,
        baseline_hourly_value=history.baseline.value / hours,
        recipient_senders=history.recipient_other_senders + 1,
        hour=windows.now.astimezone(UTC).hour,
        recent=history.recent,
    )


def risk_assessment_record(*, gift_id: uuid.UUID, verdict: Verdict) -> RiskAssessment:
    """Store the verdict with every signal beside the gift."""
    assessment = RiskAssessment(
        gift_id=gift_id,
        decision=verdict.decision,
        score=verdict.score,
        signals=[signal.as_dict() for signal in verdict.signals],
        hold_tier=verdict.hold_tier,
        release_at=verdict.release_at,
        needs_recipient_verification=verdict.needs_recipient_verification,
    )
    # Not its check constraints: each would be a query (and a savepoint) of its own, and the database
    # enforces them on the INSERT below anyway. What they check is computed by decide(), not given
    # by a client: a violation is a bug, and its IntegrityError rolls the gift back with it.
    assessment.full_clean(exclude=["gift"], validate_constraints=False)
    assessment.save()
    return assessment


def risk_record_review(
    *, gift_id: uuid.UUID, outcome: str, reviewer: AbstractBaseUser, reason: str, now: datetime
) -> None:
    """Record a reviewer's decision on the gift's assessment; call with the gift row locked.

    An approval is refused (ReviewRefused) once the gift has been reviewed; a
    rejection may follow an approval (e.g. while the recipient has not confirmed).
    """
    risk = RiskAssessment.objects.select_for_update().get(gift_id=gift_id)
    if outcome == ReviewOutcome.APPROVED and risk.review_outcome:
        raise ReviewRefused("This gift has already been reviewed.")
    risk.review_outcome = outcome
    risk.reviewed_by = reviewer
    risk.reviewed_at = now
    risk.review_reason = reason
    risk.save(update_fields=["review_outcome", "reviewed_by", "reviewed_at", "review_reason"])


def risk_mark_released(*, gift_id: uuid.UUID, now: datetime) -> None:
    """Note when the gift's hold ended and delivery began (the first time only)."""
    RiskAssessment.objects.filter(gift_id=gift_id, released_at__isnull=True).update(released_at=now)
