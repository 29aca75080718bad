"""The gift state machine: the table of moves, the lock helper, and the columns that store a state."""

import uuid

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from gifting.models import STATUS_AND_HOLD, Gift, GiftState, GiftStatus, HoldReason
from gifting.transitions import INITIAL_STATES, TRANSITIONS, WrongState, gift_lock, gift_move
from tests.factories import gift_row

TERMINAL = {GiftState.DELIVERED, GiftState.REJECTED}


def test_every_state_maps_onto_one_of_the_five_api_statuses_and_has_a_row_in_the_table():
    assert set(STATUS_AND_HOLD) == set(GiftState) == set(TRANSITIONS)
    assert {status for status, _ in STATUS_AND_HOLD.values()} == set(GiftStatus)
    assert {state for state, moves in TRANSITIONS.items() if not moves} == TERMINAL
    assert INITIAL_STATES.isdisjoint({GiftState.DELIVERED, GiftState.FAILED, GiftState.HELD_FOR_RECIPIENT})


@pytest.mark.parametrize(
    ("start", "to"),
    [(GiftState.DELIVERED, GiftState.QUEUED), (GiftState.REJECTED, GiftState.QUEUED),
     (GiftState.QUEUED, GiftState.REJECTED), (GiftState.HELD_FOR_APPROVAL, GiftState.DELIVERED),
     (GiftState.FAILED, GiftState.DELIVERED)],
)  # fmt: skip
def test_a_move_the_table_forbids_is_refused_and_nothing_is_saved(user, start, to):
    status, hold = STATUS_AND_HOLD[start]
    gift = gift_row(user, status=status, hold=hold, delivered_at=timezone.now())
    with transaction.atomic():
        locked = gift_lock(gift_id=gift.id, allowed_from={start})
        with pytest.raises(ValueError, match="cannot go from"):
            gift_move(locked, to=to)
    gift.refresh_from_db()
    assert gift.state == start


def test_a_move_the_table_allows_saves_status_hold_and_the_named_fields(user):
    gift = gift_row(user)
    with transaction.atomic():
        locked = gift_lock(gift_id=gift.id, allowed_from={GiftState.QUEUED})
        locked.attempts = 3
        gift_move(locked, to=GiftState.HELD_FOR_RECIPIENT, also=["attempts"])
    gift.refresh_from_db()
    assert (gift.status, gift.hold, gift.attempts) == (GiftStatus.HELD, HoldReason.RECIPIENT, 3)


def test_the_lock_says_which_state_it_found_when_it_is_not_one_the_write_starts_from(user):
    gift = gift_row(user, status=GiftStatus.DELIVERED, delivered_at=timezone.now())
    with transaction.atomic(), pytest.raises(WrongState) as wrong:
        gift_lock(gift_id=gift.id, allowed_from={GiftState.QUEUED})
    assert wrong.value.gift.state == GiftState.DELIVERED


@pytest.mark.django_db(transaction=True)
def test_the_lock_needs_a_transaction_and_a_known_gift(user):
    gift = gift_row(user)
    with pytest.raises(RuntimeError, match="transaction"):
        gift_lock(gift_id=gift.id, allowed_from={GiftState.QUEUED})
    with transaction.atomic(), pytest.raises(Gift.DoesNotExist):
        gift_lock(gift_id=uuid.uuid4(), allowed_from={GiftState.QUEUED})


@pytest.mark.parametrize(
    ("status", "hold"),
    [(GiftStatus.HELD, HoldReason.NONE), (GiftStatus.QUEUED, HoldReason.APPROVAL)],
)
def test_the_database_refuses_a_hold_reason_that_does_not_match_the_status(user, status, hold):
    with pytest.raises(IntegrityError), transaction.atomic():
        gift_row(user, status=status, hold=hold)


def test_the_database_refuses_a_hold_period_without_an_end(user):
    with pytest.raises(IntegrityError), transaction.atomic():
        gift_row(user, status=GiftStatus.HELD, hold=HoldReason.DELAY, hold_until=None)
