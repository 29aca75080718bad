"""The background publisher: a request never waits for SQS, and nothing it cannot send is lost.

The thread's publishing is replaced by a fake that blocks until the test lets
it go (unit tests may use fakes; tests/integration runs the real one against a
real SQS server and worker). Gifts are committed (transactional_db): the
thread reads them through a connection of its own.
"""

import threading
import uuid

import pytest

from core.request_id import request_id_var
from gifting import instruments
from gifting.models import Gift, GiftStatus
from gifting.services import publisher
from gifting.services.publisher import BackgroundPublisher
from tests.waiting import wait_until

GIFTS = "/api/v1/gifts/"


class BlockedPublish:
    """Stands in for gift_publish: records each call and blocks until released."""

    def __init__(self) -> None:
        self.entered: list[tuple[uuid.UUID, str]] = []
        self.done: list[uuid.UUID] = []
        self.request_ids: list[str] = []
        self.release = threading.Event()

    def __call__(self, *, gift_id: uuid.UUID, actor_label: str) -> bool:
        self.entered.append((gift_id, actor_label))
        self.request_ids.append(request_id_var.get())
        self.release.wait(timeout=30)
        self.done.append(gift_id)
        return True


@pytest.fixture
def blocked(monkeypatch):
    fake = BlockedPublish()
    monkeypatch.setattr(publisher, "gift_publish", fake)
    yield fake
    fake.release.set()
    publisher.publisher_flush()


@pytest.fixture
def in_background(settings, transactional_db):
    settings.GIFT_PUBLISH_IN_BACKGROUND = True


@pytest.mark.usefixtures("in_background")
def test_the_202_goes_out_while_the_publish_is_still_waiting_on_sqs(auth_client, blocked):
    response = auth_client.post(
        GIFTS,
        {"recipient_email": "bea@example.com", "amount": "25.00", "currency": "EUR"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="key-1",
        HTTP_X_REQUEST_ID="req-publisher-1",
    )

    assert response.status_code == 202, response.content
    assert response["X-Request-ID"] == "req-publisher-1"
    gift_id = uuid.UUID(response.json()["id"])
    # Had the request published inline, it would still be blocked in the fake and never have answered.
    wait_until(lambda: blocked.entered, message="the publisher thread never took the gift")
    assert blocked.entered == [(gift_id, "api")]
    assert blocked.request_ids == ["req-publisher-1"]  # the message and `queued` event carry the request's id
    assert blocked.done == []
    assert Gift.objects.get(id=gift_id).status == GiftStatus.QUEUED
    blocked.release.set()
    wait_until(lambda: blocked.done == [gift_id], message="the publish never finished")


@pytest.mark.usefixtures("in_background")
def test_a_rolled_back_gift_is_never_handed_over(blocked, make_user):
    from django.db import transaction

    from gifting.services.intake import gift_create

    with pytest.raises(RuntimeError), transaction.atomic():
        gift_create(sender=make_user(), amount="25.00", currency="EUR", recipient_email="bea@example.com")
        raise RuntimeError("rolled back")

    blocked.release.set()
    assert publisher.publisher_flush()
    assert blocked.entered == []


def test_a_full_hand_over_queue_leaves_the_gift_to_the_sweeper(blocked):
    background = BackgroundPublisher(capacity=1)
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    deferred_before = instruments.PUBLISH_DEFERRED._value.get()

    background.submit(first, "api")
    wait_until(lambda: blocked.entered, message="the thread never took the first gift")
    background.submit(second, "api")  # waits in the queue, which is now full
    background.submit(third, "api")  # dropped: the gift is committed as queued, the sweeper sends it

    assert instruments.PUBLISH_DEFERRED._value.get() == deferred_before + 1
    blocked.release.set()
    assert background.flush(timeout=10)
    assert blocked.done == [first, second]


def test_flush_sends_what_is_pending_before_the_process_exits(blocked):
    background = BackgroundPublisher(capacity=10)
    gift_ids = [uuid.uuid4() for _ in range(3)]
    for gift_id in gift_ids:
        background.submit(gift_id, "reviewer")

    blocked.release.set()
    assert background.flush(timeout=10)

    assert blocked.done == gift_ids
    assert {label for _, label in blocked.entered} == {"reviewer"}


def test_a_publish_that_crashes_does_not_stop_the_thread(monkeypatch):
    calls: list[uuid.UUID] = []

    def crashing_then_fine(*, gift_id: uuid.UUID, actor_label: str) -> bool:
        calls.append(gift_id)
        if len(calls) == 1:
            raise RuntimeError("the database went away")
        return True

    monkeypatch.setattr(publisher, "gift_publish", crashing_then_fine)
    background = BackgroundPublisher(capacity=10)
    first, second = uuid.uuid4(), uuid.uuid4()
    background.submit(first, "api")
    background.submit(second, "api")

    assert background.flush(timeout=10)
    assert calls == [first, second]


def test_after_a_failed_publish_the_thread_backs_off_and_resets_once_one_succeeds(monkeypatch):
    """A broker that is down is not hammered: waits of 0.5, 1, 2 s..., back to none after a success."""
    outcomes = iter([False, False, False, True, False])
    monkeypatch.setattr(publisher, "gift_publish", lambda **kwargs: next(outcomes))
    waits: list[float] = []
    monkeypatch.setattr(publisher.time, "sleep", waits.append)
    background = BackgroundPublisher(capacity=10)
    for _ in range(5):
        background.submit(uuid.uuid4(), "api")

    assert background.flush(timeout=10)
    assert waits == [0.5, 1.0, 2.0, 0.5]
