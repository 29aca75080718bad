"""Reads of vouchers. A code is never compared with the stored (encrypted) code, only through its blind index."""

from vouchers.codes import code_index
from vouchers.models import Voucher


def voucher_find_by_code(*, code: str) -> Voucher | None:
    """The voucher with this code as a person types it (any case, spaces or dashes), or None."""
    return Voucher.objects.filter(code_index=code_index(code)).first()
