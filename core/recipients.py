"""One canonical form of a recipient, for every rule, quota, history and blind index.

STUB: the interface is fixed; the implementation is being written.
"""


class InvalidRecipient(ValueError):
    """The address cannot be a recipient (the message says why, for the API's field error)."""


def canonical_email(address: str) -> str:
    """The canonical form of an email address; raises InvalidRecipient for one we refuse."""
    return address.strip().lower()


def canonical_wallet(address: str) -> str:
    """The canonical form of a wallet address (lower-case hex); raises InvalidRecipient."""
    return address.strip().lower()


def canonical_recipient(*, email: str = "", wallet: str = "") -> str:
    """`email:<canonical>` or `wallet:<canonical>`: what blind indexes and fraud history key on."""
    if bool(email) == bool(wallet):
        raise InvalidRecipient("Give exactly one of an email address or a wallet address.")
    return f"email:{canonical_email(email)}" if email else f"wallet:{canonical_wallet(wallet)}"
