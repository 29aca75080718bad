"""Issuing vouchers."""

from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from vouchers.codes import generate_code
from vouchers.models import Voucher

_CODE_COLLISION_RETRIES = 3


def voucher_issue_for_gift(*, gift) -> Voucher:
    """The gift's voucher, issuing it on first call. Call with the gift row locked.

    Inserts first and looks for the gift's voucher only when the insert conflicts: a first attempt
    (almost every call) costs the insert alone, a retry a refused insert and a read. One voucher per
    gift is the database's constraint either way.
    """
    expires_at = timezone.now() + timedelta(days=settings.VOUCHER_VALIDITY_DAYS)
    for attempt in range(_CODE_COLLISION_RETRIES):
        voucher = Voucher(gift=gift, code=generate_code(), amount=gift.amount, currency=gift.currency)
        voucher.expires_at = expires_at
        try:
            # A savepoint, so a refused insert (the gift's voucher exists, or a vanishingly unlikely
            # code collision) leaves the caller's transaction usable.
            with transaction.atomic():
                voucher.save()
            return voucher
        except IntegrityError:
            existing = Voucher.objects.filter(gift=gift).first()
            if existing is not None:
                return existing
            if attempt == _CODE_COLLISION_RETRIES - 1:
                raise
    raise AssertionError("unreachable")
