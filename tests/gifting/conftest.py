"""Fixtures shared by the gifting tests that send a voucher email (a module may define its own)."""

from decimal import Decimal

import pytest
from django.utils import timezone

from tests.factories import gift_row
from vouchers.models import Voucher


@pytest.fixture
def gift(user):
    """A 25.00 EUR gift to an email address (tests/factories.py's defaults)."""
    return gift_row(user, amount=Decimal("25.00"))


@pytest.fixture
def voucher(gift):
    """A voucher for `gift`, with a fixed code to look for in the email."""
    return Voucher.objects.create(
        gift=gift,
        code="K7QM-3XTA-B2CD-EFGH-JKMN",
        amount=gift.amount,
        currency=gift.currency,
        expires_at=timezone.now() + timezone.timedelta(days=1),
    )
