"""Single-use, expiring links by which a recipient confirms their address.

Only a hash of each link's token is stored, and each (re)send replaces it, so
a superseded link stops working. Writes here lock the verification row: the
caller must already hold its gift's row lock (the gift first, then what hangs
off it), which is the order delivery takes them in too.
"""

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from fraud.models import RecipientVerification

MAX_TOKEN_LENGTH = 100


class LinkState(StrEnum):
    UNKNOWN = "unknown"  # malformed, never issued, or superseded by a newer link
    USED = "used"
    EXPIRED = "expired"
    VALID = "valid"


@dataclass(frozen=True)
class Link:
    gift_id: uuid.UUID
    state: LinkState


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _well_formed(token: str) -> bool:
    return bool(token) and len(token) <= MAX_TOKEN_LENGTH


def _state(verification: RecipientVerification | None, *, now: datetime) -> LinkState:
    if verification is None:
        return LinkState.UNKNOWN
    if verification.confirmed_at is not None:
        return LinkState.USED
    if verification.expires_at <= now:
        return LinkState.EXPIRED
    return LinkState.VALID


def link_find(*, token: str, now: datetime | None = None) -> Link | None:
    """The gift a link names and the link's state, read without locks; None if the token is unknown."""
    if not _well_formed(token):
        return None
    verification = RecipientVerification.objects.filter(token_hash=_hash(token)).first()
    if verification is None:
        return None
    return Link(gift_id=verification.gift_id, state=_state(verification, now=now or timezone.now()))


def _lock(*, gift_id: uuid.UUID, token: str) -> RecipientVerification | None:
    """The gift's verification row, locked, if `token` is still its current token."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("lock the gift first, inside a transaction")
    if not _well_formed(token):
        return None
    return RecipientVerification.objects.select_for_update().filter(gift_id=gift_id, token_hash=_hash(token)).first()


def link_lock(*, gift_id: uuid.UUID, token: str, now: datetime) -> LinkState:
    """Lock the gift's verification row and say what `token` can still do (UNKNOWN once superseded)."""
    return _state(_lock(gift_id=gift_id, token=token), now=now)


def link_confirm(*, gift_id: uuid.UUID, token: str, now: datetime) -> None:
    """Mark the link used; call after link_lock answered VALID in the same transaction."""
    RecipientVerification.objects.filter(gift_id=gift_id, token_hash=_hash(token)).update(confirmed_at=now)


def link_issue(*, gift_id: uuid.UUID) -> str:
    """A fresh token for the gift's link (any older link stops working); call with the gift row locked."""
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    RecipientVerification.objects.update_or_create(
        gift_id=gift_id,
        defaults={
            "token_hash": _hash(token),
            "expires_at": now + timedelta(seconds=settings.FRAUD_VERIFICATION_TTL),
            "sent_at": now,
        },
    )
    return token
