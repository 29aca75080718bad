"""Voucher codes people can read aloud and type: secure, unambiguous, grouped."""

import math
import re
import secrets
import unicodedata

from core.crypto import blind_index

# No 0/O, 1/I/L, U/V look-alikes: nothing a reader can confuse.
ALPHABET = "ABCDEFGHJKMNPQRSTWXYZ23456789"
GROUPS = 5
GROUP_SIZE = 4
CODE_LENGTH = GROUPS * GROUP_SIZE
ENTROPY_BITS = CODE_LENGTH * math.log2(len(ALPHABET))  # ~97 bits


def generate_code() -> str:
    """A random code like `K7QM-3XTA-…`, from the OS's CSPRNG."""
    chars = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    return "-".join(chars[i : i + GROUP_SIZE] for i in range(0, CODE_LENGTH, GROUP_SIZE))


def normalize_code(raw: str) -> str:
    """A code as typed (any case, spaces or dashes, full-width characters) in the form its index hashes."""
    return re.sub(r"[\s-]", "", unicodedata.normalize("NFKC", raw)).upper()


def code_index(code: str) -> str:
    """The blind index that stands in for a code in lookups and in its uniqueness (core.crypto)."""
    return blind_index(normalize_code(code), purpose="voucher-code")
