"""Test data built straight in the database, bypassing services (no publishing, no events)."""

from decimal import Decimal

from django.utils import timezone

from gifting.models import Gift


def gift_row(sender, **fields) -> Gift:
    """A queued email gift of 10.00 EUR, unless `fields` say otherwise."""
    defaults = {
        "recipient_email": "recipient@example.com",
        "amount": Decimal("10.00"),
        "currency": "EUR",
        "next_attempt_at": timezone.now(),
    }
    return Gift.objects.create(sender=sender, **{**defaults, **fields})
