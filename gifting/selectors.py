"""Reads of gifts, always scoped to the user asking."""

import uuid
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Min, QuerySet

from gifting.events import PUBLIC_DETAIL_KEYS, PUBLIC_EVENT_TYPES
from gifting.models import Gift, GiftStatus


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
