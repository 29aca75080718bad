"""Masking personal data for responses and logs, and the pseudonyms reviewers tell recipients apart by."""

from core.crypto import blind_index
from core.recipients import InvalidRecipient, canonical_recipient

# The pseudonym's tag: a keyed hash of the canonical recipient under a purpose of its own, so it
# matches no blind index (a prefix of `recipient_index` would let anyone holding the index table
# link tags to rows). Four hex digits tell apart the few recipients that share a masked address on
# a page (same first letter, same domain); they are far too few to single out one address.
PSEUDONYM_PURPOSE = "recipient-pseudonym"
PSEUDONYM_TAG_LENGTH = 4


def mask_email(email: str) -> str:
    """`recipient@example.com` → `r***@example.com`."""
    local, at, domain = email.rpartition("@")  # the domain follows the last @
    return f"{local[:1]}***@{domain}" if at and domain else "***"


def mask_wallet(wallet: str) -> str:
    """`0x1234…(40 hex)…abcd` → `0x12…abcd`."""
    return f"{wallet[:4]}…{wallet[-4:]}" if len(wallet) > 8 else "***"


def mask_recipient(*, email: str, wallet: str) -> str:
    return mask_email(email) if email else mask_wallet(wallet)


def recipient_tag(*, email: str, wallet: str) -> str:
    """`4f1a`: the same for every spelling of one recipient (its canonical form), different for others.

    Keyed (BLIND_INDEX_KEY), so nobody without the key can check a guessed address against it.
    """
    try:
        canonical = canonical_recipient(email=email, wallet=wallet)
    except InvalidRecipient:
        # Stored before today's rules refused it: the address as typed is still one stable recipient.
        canonical = f"raw:{email or wallet}"
    return blind_index(canonical, purpose=PSEUDONYM_PURPOSE)[:PSEUDONYM_TAG_LENGTH]


def pseudonymous_recipient(*, email: str, wallet: str) -> str:
    """What reviewers see: `c***@example.com · #4f1a`, `0x12…abcd · #9c0e`."""
    return f"{mask_recipient(email=email, wallet=wallet)} · #{recipient_tag(email=email, wallet=wallet)}"
