"""Reads of gifts, always scoped to the user asking."""

import uuid

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from gifting.events import PUBLIC_DETAIL_KEYS, PUBLIC_EVENT_TYPES
from gifting.models import Gift


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
