"""The accept path's SQL, counted: a change that adds a query to every POST /api/v1/gifts/ fails here.

Upper bounds, not timings: the count does not drift with the machine's load. Each bound is what
one request costs today (the same on SQLite and PostgreSQL). When a change needs one more query,
raise the bound here, and say why in the list beside it.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from gifting import events
from gifting.models import Gift, GiftEvent, GiftEventType, GiftStatus
from gifting.services import outbox

GIFTS = "/api/v1/gifts/"
BODY = {"recipient_email": "recipient@example.com", "amount": "25.00", "currency": "EUR", "message": "Hi"}

# One accepted gift (allowed and queued), through knox's token authentication:
#   1      the token with its user (knox, select_related)
#   3      the Idempotency-Key claim: BEGIN, INSERT, COMMIT (stale records are looked for only on a conflict)
#   BEGIN  of the request's transaction (run_idempotently)
#   0      the gift's check constraints: judged in Python (core.checks); only a failing gift asks the database
#   1      SAVEPOINT of gift_create's transaction
#   1      the sender's row lock (quotas are counted under it)
#   3      the sender's history: fan-in count, the four windows' totals, the recent gifts
#   1      the sender's limits (fraud.selectors.effective_limits)
#   3      INSERT the gift, its `created` event (the first: no lock, no predecessor to read), its risk assessment
#   1      RELEASE SAVEPOINT
#   1      UPDATE the Idempotency-Key with the response
#   COMMIT
#   after commit (gift_publish): the gift's id, UPDATE last_published_at, and the `queued` event:
#   BEGIN, the gift's row lock, the chain head, INSERT, COMMIT (7)
ACCEPT_QUERIES = 24
# A replay: the token, the claim that conflicts (BEGIN, INSERT, ROLLBACK), the stored response.
REPLAY_QUERIES = 5


@pytest.fixture
def broker(monkeypatch) -> list:
    """SQS stands in as a list: the publish is no SQL query, and a failing one would add its own event."""
    sent = []

    def publish_delivery(gift_id, **kwargs) -> str:
        sent.append(gift_id)
        return f"message-{len(sent)}"

    monkeypatch.setattr(outbox, "publish_delivery", publish_delivery)
    return sent


def post(client, key: str):
    return client.post(GIFTS, BODY, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_one_accepted_gift_costs_a_bounded_number_of_queries(transactional_db, auth_client, broker):
    post(auth_client, "warm-up")  # first-use costs (content types, connection setup) are not per request

    with CaptureQueriesContext(connection) as queries:
        response = post(auth_client, "counted")

    assert response.status_code == 202, response.content
    count = len(queries.captured_queries)
    listing = "\n".join(query["sql"][:160] for query in queries.captured_queries)
    assert count <= ACCEPT_QUERIES, f"{count} queries, at most {ACCEPT_QUERIES} expected:\n{listing}"
    # The bound is not met by skipping work: the gift was queued, published once, and its audit chain holds.
    gift = Gift.objects.get(id=response.json()["id"])
    assert gift.status == GiftStatus.QUEUED
    assert broker.count(gift.id) == 1
    assert list(GiftEvent.objects.filter(gift=gift).order_by("id").values_list("type", flat=True)) == [
        GiftEventType.CREATED,
        GiftEventType.QUEUED,
    ]
    assert events.gift_event_chains_check().broken is None


def test_a_replay_costs_a_bounded_number_of_queries(transactional_db, auth_client, broker):
    first = post(auth_client, "replayed")

    with CaptureQueriesContext(connection) as queries:
        replay = post(auth_client, "replayed")

    assert (replay.status_code, replay.headers.get("Idempotent-Replayed")) == (202, "true")
    assert replay.json() == first.json()
    count = len(queries.captured_queries)
    listing = "\n".join(query["sql"][:160] for query in queries.captured_queries)
    assert count <= REPLAY_QUERIES, f"{count} queries, at most {REPLAY_QUERIES} expected:\n{listing}"
    assert Gift.objects.count() == 1
    assert len(broker) == 1
