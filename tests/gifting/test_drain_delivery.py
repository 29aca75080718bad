"""One delivery's SQL, counted, and the audit chain it leaves: a change that adds a query to every
delivery fails here (upper bounds, not timings; see docs/benchmarks-drain.md).
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from gifting import events
from gifting.models import GiftEventType, GiftStatus
from gifting.services import delivery
from tests.factories import gift_row

# One email gift delivered (PostgreSQL; SQLite has no row locks, so fewer):
#   BEGIN
#   1  the gift's row lock, with its sender (transitions.gift_lock)
#   3  `delivery_attempted`: the row lock again (events take it themselves), the chain head, INSERT
#   1  does the recipient have to confirm first (fraud.selectors.recipient_must_confirm)
#   3  the voucher: SAVEPOINT, INSERT, RELEASE (its lookup only when the insert conflicts: a retry)
#   1  UPDATE the gift: delivered, attempts, delivered_at in one save
#   1  `delivered`: INSERT only, it follows the attempt's event under the lock still held
#   COMMIT
DELIVERY_QUERIES = 12


@pytest.fixture
def gift(user):
    gift = gift_row(user)
    events.gift_created(gift, actor=user)
    return gift


def test_one_delivery_costs_at_most_its_queries(outbox, gift):
    with CaptureQueriesContext(connection) as queries:
        assert delivery.gift_deliver(gift_id=gift.id) is True
    assert len(queries.captured_queries) <= DELIVERY_QUERIES, "\n".join(q["sql"] for q in queries.captured_queries)
    assert len(outbox) == 1


def test_the_delivered_event_follows_the_attempt_in_an_unbroken_chain(outbox, gift):
    delivery.gift_deliver(gift_id=gift.id)
    gift.refresh_from_db()
    assert gift.status == GiftStatus.DELIVERED
    assert [event.type for event in gift.events.order_by("id")] == [
        GiftEventType.CREATED,
        GiftEventType.DELIVERY_ATTEMPTED,
        GiftEventType.DELIVERED,
    ]
    check = events.gift_event_chains_check()
    assert check.broken is None
    assert check.events == 3


def test_an_event_cannot_follow_another_gifts_event(user, gift):
    other = gift_row(user)
    foreign = events.gift_created(other, actor=user)
    with pytest.raises(ValueError, match="its own gift"):
        events.gift_delivered(gift, channel="email", previous=foreign)
