"""Assessing a gift before it is stored: hard limits (refused with 422) and risk rules."""

from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from rest_framework import status

from config.errors import ApplicationError
from fraud import rules, selectors
from fraud.decisions import Verdict, decide
from fraud.models import RiskAssessment, SenderLimits


class LimitExceeded(ApplicationError):
    """A hard limit: the gift is refused and nothing is stored."""

    def __init__(self, *, code: str, detail: str) -> None:
        super().__init__(code=code, detail=detail, status_code=status.HTTP_422_UNPROCESSABLE_ENTITY)


def _lock_sender(sender: AbstractBaseUser) -> SenderLimits:
    """Lock the sender's limits row (creating it once), so one sender's gifts are assessed one at a time."""
    SenderLimits.objects.get_or_create(user=sender)
    return SenderLimits.objects.select_for_update().get(user=sender)


def _check_hard_limits(*, sender: AbstractBaseUser, limits: SenderLimits, amount: Decimal, now: datetime) -> None:
    effective = selectors.effective_limits(limits=limits)
    if amount < settings.FRAUD_MIN_AMOUNT or amount > effective.max_amount:
        raise LimitExceeded(
            code="amount_limit",
            detail=f"A gift must be between {settings.FRAUD_MIN_AMOUNT} and {effective.max_amount}.",
        )
    for code, period, days, count_limit, value_limit in (
        ("daily_quota", "daily", 1, effective.daily_count, effective.daily_value),
        ("weekly_quota", "weekly", 7, effective.weekly_count, effective.weekly_value),
    ):
        sent = selectors.sender_totals_since(sender=sender, since=now - timedelta(days=days))
        if sent.count + 1 > count_limit or sent.value + amount > value_limit:
            raise LimitExceeded(
                code=code,
                detail=f"This gift would exceed your {period} limit of {count_limit} gifts or {value_limit} in value.",
            )


def gift_assess(
    *, sender: AbstractBaseUser, amount: Decimal, recipient_email: str, recipient_wallet: str, now: datetime
) -> Verdict:
    """Refuse a gift over a hard limit (LimitExceeded), else decide allow / hold / reject.

    Must run inside the transaction that stores the gift: the sender's row
    lock is held until it commits, so concurrent requests cannot all slip
    under a quota.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("gift_assess must run inside the gift's transaction")
    limits = _lock_sender(sender)
    _check_hard_limits(sender=sender, limits=limits, amount=amount, now=now)
    hour = selectors.sender_totals_since(sender=sender, since=now - timedelta(hours=1))
    baseline = selectors.sender_baseline_hourly(sender=sender, now=now)
    facts = rules.GiftFacts(
        amount=amount,
        account_age=now - sender.date_joined,
        last_hour_count=hour.count + 1,
        last_hour_value=hour.value + amount,
        baseline_hourly_count=baseline.count,
        baseline_hourly_value=baseline.value,
        recipient_senders=_recipient_senders_with(
            sender=sender, email=recipient_email, wallet=recipient_wallet, now=now
        ),
    )
    return decide(amount=amount, signals=rules.evaluate(facts), recipient_is_email=bool(recipient_email), now=now)


def _recipient_senders_with(*, sender: AbstractBaseUser, email: str, wallet: str, now: datetime) -> int:
    """Distinct senders to the recipient in the fan-in window, counting this sender."""
    since = now - timedelta(seconds=settings.FRAUD_FANIN_WINDOW)
    others = selectors.recipient_distinct_senders(email=email, wallet=wallet, since=since, exclude_sender=sender)
    return others + 1


def risk_assessment_record(*, gift, verdict: Verdict) -> RiskAssessment:
    """Store the verdict with every signal beside the gift."""
    assessment = RiskAssessment(
        gift=gift,
        decision=verdict.decision,
        score=verdict.score,
        signals=[signal.as_dict() for signal in verdict.signals],
        hold_tier=verdict.hold_tier,
        release_at=verdict.release_at,
        needs_recipient_verification=verdict.needs_recipient_verification,
    )
    assessment.full_clean(exclude=["gift"])
    assessment.save()
    return assessment
