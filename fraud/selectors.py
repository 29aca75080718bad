"""Reads the fraud rules and reviewers need: a sender's recent gifts, a recipient's senders."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Q, Sum

from fraud.models import SenderLimits
from gifting.models import Gift, GiftStatus

# Gifts that count against quotas and history: everything not refused or failed.
LIVE_STATUSES = (GiftStatus.QUEUED, GiftStatus.HELD, GiftStatus.DELIVERED)
BASELINE_PERIOD = timedelta(days=30)


@dataclass(frozen=True)
class Totals:
    count: int
    value: Decimal


@dataclass(frozen=True)
class HourlyRate:
    count: Decimal
    value: Decimal


@dataclass(frozen=True)
class EffectiveLimits:
    max_amount: Decimal
    daily_count: int
    daily_value: Decimal
    weekly_count: int
    weekly_value: Decimal


def effective_limits(*, limits: SenderLimits | None) -> EffectiveLimits:
    """The sender's overrides where staff set them, the settings' defaults elsewhere."""

    def pick(name: str, default):
        value = getattr(limits, name, None) if limits is not None else None
        return default if value is None else value

    return EffectiveLimits(
        max_amount=pick("max_amount", settings.FRAUD_MAX_AMOUNT),
        daily_count=pick("daily_count", settings.FRAUD_DAILY_COUNT),
        daily_value=pick("daily_value", settings.FRAUD_DAILY_VALUE),
        weekly_count=pick("weekly_count", settings.FRAUD_WEEKLY_COUNT),
        weekly_value=pick("weekly_value", settings.FRAUD_WEEKLY_VALUE),
    )


def sender_totals_since(*, sender: AbstractBaseUser, since: datetime) -> Totals:
    """Count and nominal value of the sender's live gifts since `since` (currencies summed as numbers)."""
    row = Gift.objects.filter(sender=sender, status__in=LIVE_STATUSES, created_at__gte=since).aggregate(
        count=Count("id"), value=Sum("amount")
    )
    return Totals(count=row["count"], value=row["value"] or Decimal("0"))


def sender_baseline_hourly(*, sender: AbstractBaseUser, now: datetime) -> HourlyRate:
    """The sender's average gifts per hour over the baseline period before the last hour."""
    window_end = now - timedelta(hours=1)
    totals = Gift.objects.filter(
        sender=sender, status__in=LIVE_STATUSES, created_at__gte=window_end - BASELINE_PERIOD, created_at__lt=window_end
    ).aggregate(count=Count("id"), value=Sum("amount"))
    hours = Decimal(int(BASELINE_PERIOD.total_seconds() // 3600))
    return HourlyRate(count=totals["count"] / hours, value=(totals["value"] or Decimal("0")) / hours)


def _to_recipient(*, email: str, wallet: str) -> Q:
    """Gifts to this recipient: emails compared case-insensitively, wallets as stored (checksummed)."""
    return Q(recipient_email__iexact=email) if email else Q(recipient_wallet=wallet)


def recipient_distinct_senders(
    *, email: str, wallet: str, since: datetime, exclude_sender: AbstractBaseUser | None = None
) -> int:
    """How many different senders (other than `exclude_sender`) gifted this recipient since `since`."""
    gifts = Gift.objects.filter(_to_recipient(email=email, wallet=wallet), created_at__gte=since)
    if exclude_sender is not None:
        gifts = gifts.exclude(sender=exclude_sender)
    return gifts.values("sender").distinct().count()


def sender_history(*, sender_id: int) -> dict[str, int]:
    """Counts of a sender's gifts by status, for reviewers."""
    rows = Gift.objects.filter(sender_id=sender_id).values("status").annotate(total=Count("id"))
    return {row["status"]: row["total"] for row in rows}


def recipient_history(*, email: str, wallet: str) -> dict[str, int]:
    """How many gifts and distinct senders a recipient has had, for reviewers."""
    row = Gift.objects.filter(_to_recipient(email=email, wallet=wallet)).aggregate(
        gifts=Count("id"), senders=Count("sender", distinct=True)
    )
    return {"gifts": row["gifts"], "senders": row["senders"]}
