"""Single-use, expiring links by which a recipient confirms their address."""

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from fraud.models import RecipientVerification


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def verification_issue_token(*, gift) -> str:
    """A fresh token for the gift's verification link; any older link stops working."""
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    RecipientVerification.objects.update_or_create(
        gift=gift,
        defaults={
            "token_hash": _hash(token),
            "expires_at": now + timedelta(seconds=settings.FRAUD_VERIFICATION_TTL),
            "sent_at": now,
        },
    )
    return token


def verification_find(*, token: str) -> RecipientVerification | None:
    """The verification a link's token belongs to, if the token is well-formed and known."""
    if not token or len(token) > 100:
        return None
    return RecipientVerification.objects.select_related("gift").filter(token_hash=_hash(token)).first()


def is_recipient_verified(*, gift) -> bool:
    return RecipientVerification.objects.filter(gift=gift, confirmed_at__isnull=False).exists()
