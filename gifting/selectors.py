"""Reads of gifts: the sender's own, the history fraud's policy asks for, and counts for operators."""

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Min, Q, QuerySet, Sum
from django.db.models.functions import TruncMinute

from core import crypto
from fraud.history import BASELINE_PERIOD, RECENT_GIFTS_CAP, RecentGifts, SenderHistory, Totals, Windows
from gifting.events import PUBLIC_DETAIL_KEYS, PUBLIC_EVENT_TYPES
from gifting.models import Gift, GiftEvent, GiftEventType, GiftStatus, HoldReason

# Gifts that count against quotas and history: everything not refused or failed.
LIVE_STATUSES = (GiftStatus.QUEUED, GiftStatus.HELD, GiftStatus.DELIVERED)


def gift_list_for_user(*, user: AbstractBaseUser) -> QuerySet[Gift]:
    """The user's own gifts, newest first."""
    return Gift.objects.filter(sender=user).order_by("-created_at", "-id")


def gift_get_for_user(*, user: AbstractBaseUser, gift_id: uuid.UUID) -> Gift | None:
    """One of the user's own gifts, or None (someone else's gift is as good as missing)."""
    return Gift.objects.filter(sender=user, id=gift_id).first()


def gift_public_timeline(*, gift: Gift) -> list[dict]:
    """The gift's events as the sender may see them: types, times and coarse details."""
    timeline = []
    for event in gift.events.filter(type__in=PUBLIC_EVENT_TYPES).order_by("at", "id"):
        entry = {"type": event.type, "at": event.at}
        details = {k: v for k, v in event.details.items() if k in PUBLIC_DETAIL_KEYS}
        if details:
            entry["details"] = details
        timeline.append(entry)
    return timeline


def gift_counts_by_status() -> dict[str, int]:
    """How many gifts are in each status (every status present, zero included)."""
    counts = dict.fromkeys(GiftStatus.values, 0)
    for row in Gift.objects.values("status").annotate(total=Count("id")):
        counts[row["status"]] = row["total"]
    return counts


def oldest_queued_gift_age_seconds(*, now: datetime) -> float:
    """Seconds since the oldest still-queued gift was accepted; 0 when none waits."""
    oldest = Gift.objects.filter(status=GiftStatus.QUEUED).aggregate(oldest=Min("created_at"))["oldest"]
    return (now - oldest).total_seconds() if oldest else 0.0


def _sender_totals(sender: AbstractBaseUser, windows: Windows) -> dict[str, Totals]:
    """Count and nominal value of the sender's live gifts per window (currencies summed as numbers).

    One query for the four windows (last hour, day, week, and the baseline that ends an hour ago):
    a single pass over the sender's rows since the earliest of them, each window a FILTER.
    """
    periods = {
        "last_hour": Q(created_at__gte=windows.last_hour_since),
        "last_day": Q(created_at__gte=windows.last_day_since),
        "last_week": Q(created_at__gte=windows.last_week_since),
        "baseline": Q(created_at__gte=windows.baseline_since, created_at__lt=windows.baseline_until),
    }
    since = min(windows.last_hour_since, windows.last_day_since, windows.last_week_since, windows.baseline_since)
    aggregates = {}
    for name, period in periods.items():
        # Not COUNT(id): counting a (non-null) column of gift_sender_created_idx keeps every column read in
        # the index, an index-only scan. (Django's Count("*") takes no filter.)
        aggregates[f"{name}_count"] = Count("created_at", filter=period)
        aggregates[f"{name}_value"] = Sum("amount", filter=period)
    row = Gift.objects.filter(sender=sender, status__in=LIVE_STATUSES, created_at__gte=since).aggregate(**aggregates)
    return {name: Totals(count=row[f"{name}_count"], value=row[f"{name}_value"] or Decimal("0")) for name in periods}


def _recent_gifts(sender: AbstractBaseUser, *, recipient: str, windows: Windows) -> RecentGifts:
    """The sender's pattern for fraud.anomaly: one query of at most RECENT_GIFTS_CAP rows, newest first."""
    rows = (
        Gift.objects.filter(
            sender=sender,
            status__in=LIVE_STATUSES,
            created_at__gte=windows.recent_since,
            created_at__lt=windows.baseline_until,
        )
        .order_by("-created_at")
        .values_list("amount", "created_at", "recipient_index")[:RECENT_GIFTS_CAP]
    )
    amounts, hours, recipients = [], [], set()
    for amount, created_at, index in rows:
        amounts.append(amount)
        hours.append(created_at.astimezone(UTC).hour)
        recipients.add(index)
    return RecentGifts(
        amounts=tuple(amounts),
        hours=tuple(hours),
        distinct_recipients=len(recipients),
        sent_to_recipient=recipient in recipients,
    )


def sender_history_for_assessment(
    *, sender: AbstractBaseUser, recipient_email: str, recipient_wallet: str, windows: Windows
) -> SenderHistory:
    """What fraud's policy asks about the sender and the recipient, for its windows. Run under sender_lock."""
    # The recipient in its canonical form (core.recipients), found by the blind index.
    recipient = crypto.recipient_index(email=recipient_email, wallet=recipient_wallet)
    others = (
        Gift.objects.filter(recipient_index=recipient, created_at__gte=windows.fan_in_since)
        .exclude(sender=sender)
        .values("sender")
        .distinct()
        .count()
    )
    totals = _sender_totals(sender, windows)
    return SenderHistory(
        account_age=windows.now - sender.date_joined,
        last_hour=totals["last_hour"],
        last_day=totals["last_day"],
        last_week=totals["last_week"],
        baseline=totals["baseline"],
        recipient_other_senders=others,
        recent=_recent_gifts(sender, recipient=recipient, windows=windows),
    )


# How far back the review queue's history columns look: the period over which fraud's policy takes a
# sender's normal (BASELINE_PERIOD), so reviewers see the span the rules judged the gift against. Bounded
# so that a page reads rows in proportion to a month of traffic, not to everything the table ever held;
# the fan-in window (FRAUD_FANIN_WINDOW, a day) is too short for context, and the fan_in signal's own
# reason already states the count within it.
REVIEW_HISTORY_PERIOD = BASELINE_PERIOD


def sender_histories(*, sender_ids: Iterable[int], since: datetime) -> dict[int, dict[str, int]]:
    """For reviewers: each sender's gifts created since `since`, counted by status; one query for all."""
    histories: dict[int, dict[str, int]] = {sender_id: {} for sender_id in sender_ids}
    rows = (
        Gift.objects.filter(sender_id__in=list(histories), created_at__gte=since)
        .values("sender_id", "status")
        .annotate(total=Count("*"))  # not COUNT(id): an index-only scan of gift_sender_created_idx
        .order_by()
    )
    for row in rows:
        histories[row["sender_id"]][row["status"]] = row["total"]
    return histories


def recipient_histories(*, recipient_indexes: Iterable[str], since: datetime) -> dict[str, dict[str, int]]:
    """For reviewers: gifts and distinct senders each recipient (a `recipient_index`) had since `since`; one query."""
    histories = {index: {"gifts": 0, "senders": 0} for index in recipient_indexes}
    rows = (
        Gift.objects.filter(recipient_index__in=[index for index in histories if index], created_at__gte=since)
        .values("recipient_index")
        .annotate(gifts=Count("*"), senders=Count("sender", distinct=True))  # gift_recipient_created_idx alone
        .order_by()
    )
    for row in rows:
        histories[row["recipient_index"]] = {"gifts": row["gifts"], "senders": row["senders"]}
    return histories


def held_gift_counts() -> dict[str, int]:
    """How many held gifts wait, by why (HoldReason value: approval, delay, recipient), zero included."""
    counts = dict.fromkeys([HoldReason.APPROVAL.value, HoldReason.DELAY.value, HoldReason.RECIPIENT.value], 0)
    for row in Gift.objects.filter(status=GiftStatus.HELD).values("hold").annotate(total=Count("id")).order_by():
        counts[row["hold"]] = row["total"]
    return counts


@dataclass(frozen=True)
class Bucket:
    """Deliveries and failures (`delivered` and `failed` audit events) in [start, start + the bucket's length)."""

    start: datetime
    delivered: int = 0
    failed: int = 0


def deliveries_per_bucket(*, since: datetime, until: datetime, bucket_seconds: int = 300) -> list[Bucket]:
    """`delivered` and `failed` events in [since, until), counted per bucket of `bucket_seconds`.

    Buckets are aligned to multiples of `bucket_seconds` since the epoch (UTC), so
    five-minute buckets start at :00, :05, …; every bucket from the one holding
    `since` to the one holding the last instant before `until` is returned, empty
    ones included, oldest first. The database counts per minute (TruncMinute, on
    SQLite and PostgreSQL alike: at most 1440 rows a day whatever the volume) and
    Python adds the minutes up, so `bucket_seconds` must be a multiple of 60.
    """
    if bucket_seconds < 60 or bucket_seconds % 60:
        raise ValueError("bucket_seconds must be a positive multiple of 60")
    if until <= since:
        return []
    first = _bucket_index(since, bucket_seconds)
    last = _bucket_index(until - timedelta(microseconds=1), bucket_seconds)
    counts = {index: {"delivered": 0, "failed": 0} for index in range(first, last + 1)}
    rows = (
        GiftEvent.objects.filter(type__in=[GiftEventType.DELIVERED, GiftEventType.FAILED], at__gte=since, at__lt=until)
        .annotate(minute=TruncMinute("at", tzinfo=UTC))
        .values("type", "minute")
        .annotate(total=Count("id"))
        .order_by()
    )
    for row in rows:
        counts[_bucket_index(row["minute"], bucket_seconds)][row["type"]] += row["total"]
    return [
        Bucket(
            start=datetime.fromtimestamp(index * bucket_seconds, tz=UTC),
            delivered=tally["delivered"],
            failed=tally["failed"],
        )
        for index, tally in counts.items()
    ]


def _bucket_index(moment: datetime, bucket_seconds: int) -> int:
    return int(moment.timestamp() // bucket_seconds)
