"""Masking personal data for responses and logs."""


def mask_email(email: str) -> str:
    """`recipient@example.com` → `r***@example.com`."""
    local, at, domain = email.rpartition("@")  # the domain follows the last @
    return f"{local[:1]}***@{domain}" if at and domain else "***"


def mask_wallet(wallet: str) -> str:
    """`0x1234…(40 hex)…abcd` → `0x12…abcd`."""
    return f"{wallet[:4]}…{wallet[-4:]}" if len(wallet) > 8 else "***"


def mask_recipient(*, email: str, wallet: str) -> str:
    return mask_email(email) if email else mask_wallet(wallet)
