"""The gift's state machine: which state may follow which, and the one locked way to change state.

    created ──► queued ──► delivered
       │          │ ▲ ╲──► failed ──► queued (redrive)
       │          │ │  ╲─► held:recipient ──► queued (confirmed or resent) / rejected
       ├──► held:delay ────► queued (period over, or approved) / rejected
       ├──► held:approval ─► queued (approved) / rejected
       └──► rejected

Lock order, everywhere: the sender's user row (intake only, before the gift
exists), then the gift's row, then rows that hang off the gift (its risk
assessment, its recipient verification, its voucher). Every write to a
gift's state goes through gift_lock() and gift_move(), so no two code paths
can take the same locks in different orders, and no write can skip the table.
"""

import uuid
from collections.abc import Collection
from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from gifting.models import STATUS_AND_HOLD, Gift, GiftState

INITIAL_STATES = frozenset(
    {GiftState.QUEUED, GiftState.HELD_FOR_PERIOD, GiftState.HELD_FOR_APPROVAL, GiftState.REJECTED}
)
TRANSITIONS: dict[GiftState, frozenset[GiftState]] = {
    GiftState.QUEUED: frozenset({GiftState.DELIVERED, GiftState.FAILED, GiftState.HELD_FOR_RECIPIENT}),
    GiftState.HELD_FOR_PERIOD: frozenset({GiftState.QUEUED, GiftState.REJECTED}),
    GiftState.HELD_FOR_APPROVAL: frozenset({GiftState.QUEUED, GiftState.REJECTED}),
    GiftState.HELD_FOR_RECIPIENT: frozenset({GiftState.QUEUED, GiftState.REJECTED}),
    GiftState.FAILED: frozenset({GiftState.QUEUED}),
    GiftState.DELIVERED: frozenset(),
    GiftState.REJECTED: frozenset(),
}
HELD_STATES = frozenset({GiftState.HELD_FOR_PERIOD, GiftState.HELD_FOR_APPROVAL, GiftState.HELD_FOR_RECIPIENT})


class WrongState(Exception):
    """The gift is not in a state this write starts from; `gift` is the locked gift, as found."""

    def __init__(self, gift: Gift) -> None:
        super().__init__(f"gift {gift.id} is {gift.state}")
        self.gift = gift


def _require_transaction() -> None:
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("a lock only lasts as long as its transaction: call inside transaction.atomic()")


def sender_lock(sender: AbstractBaseUser) -> None:
    """Serialise one sender's new gifts (quotas are counted under this lock), before any gift row."""
    _require_transaction()
    # NO KEY UPDATE: inserting rows that reference the user (gifts, events) is not blocked.
    get_user_model().objects.select_for_update(no_key=True).filter(pk=sender.pk).values_list("pk").get()


def gift_lock(*, gift_id: uuid.UUID, allowed_from: Collection[GiftState]) -> Gift:
    """The gift with its row locked until the transaction ends.

    Raises Gift.DoesNotExist for an unknown id, WrongState when the gift's
    state is not one of `allowed_from`.
    """
    _require_transaction()
    # of=("self",): lock the gift's row only, not its sender's (joined for the email's wording).
    gift = Gift.objects.select_for_update(of=("self",)).select_related("sender").get(id=gift_id)
    if gift.state not in allowed_from:
        raise WrongState(gift)
    return gift


def gift_move(gift: Gift, *, to: GiftState, hold_until: datetime | None = None, also: Collection[str] = ()) -> None:
    """Put a locked gift in state `to`, saving the fields named in `also` with it.

    A move the table does not allow is a bug in the caller: ValueError.
    """
    if to not in TRANSITIONS[gift.state]:
        raise ValueError(f"a gift cannot go from {gift.state} to {to}")
    gift.status, gift.hold = STATUS_AND_HOLD[to]
    gift.hold_until = hold_until
    gift.save(update_fields=["status", "hold", "hold_until", "updated_at", *also])


def gift_start(gift: Gift, *, state: GiftState, hold_until: datetime | None = None) -> None:
    """Set a new, unsaved gift's first state."""
    if state not in INITIAL_STATES:
        raise ValueError(f"a gift cannot start {state}")
    gift.status, gift.hold = STATUS_AND_HOLD[state]
    gift.hold_until = hold_until
