"""Test data built straight in the database, bypassing services (no publishing, no events)."""

from decimal import Decimal

from django.utils import timezone

from accounts.models import ApiToken
from gifting.models import Gift, GiftStatus, HoldReason


def gift_row(sender, **fields) -> Gift:
    """A queued email gift of 10.00 EUR, unless `fields` say otherwise (a held one waits for approval)."""
    if fields.get("status") == GiftStatus.HELD:
        fields.setdefault("hold", HoldReason.APPROVAL)
    defaults = {
        "recipient_email": "recipient@example.com",
        "amount": Decimal("10.00"),
        "currency": "EUR",
        "next_attempt_at": timezone.now(),
    }
    return Gift.objects.create(sender=sender, **{**defaults, **fields})


def api_token(user) -> str:
    """A fresh API token for `user` (knox stores its digest; it expires after API_TOKEN_TTL)."""
    _, token = ApiToken.objects.create(user=user)
    return token
