"""The database guards: an append-only audit log, and one delivery per gift under concurrency."""

import threading

import pytest
from django.db import DatabaseError, connection, transaction

from gifting.errors import TransientDeliveryError
from gifting.models import GiftEvent, GiftStatus
from gifting.services.delivery import gift_deliver
from tests.factories import gift_row
from tests.waiting import wait_until
from vouchers.models import Voucher


@pytest.mark.django_db
def test_the_database_refuses_to_rewrite_the_audit_log(user):
    gift = gift_row(user)
    GiftEvent.objects.create(gift=gift, type="created", actor_label="user")

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        GiftEvent.objects.filter(gift=gift).update(type="delivered")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL guards deletes; SQLite only updates")
@pytest.mark.django_db
def test_postgresql_refuses_to_delete_from_the_audit_log(user):
    gift = gift_row(user)
    GiftEvent.objects.create(gift=gift, type="created", actor_label="user")

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        GiftEvent.objects.filter(gift=gift)._raw_delete(GiftEvent.objects.db)


def another_backend_waits_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        return cursor.fetchone()[0] > 0


class BlockingEmailBackend:
    """Holds the first send until the test lets it go, so a second delivery runs meanwhile."""

    sending = threading.Event()
    release = threading.Event()
    sent: list = []

    def __init__(self, **kwargs) -> None:
        pass

    def send_messages(self, messages) -> int:
        if not self.sending.is_set():
            self.sending.set()
            assert self.release.wait(timeout=30)
        self.sent.extend(messages)
        return len(messages)


def test_two_workers_on_one_gift_send_one_email(transactional_db, settings, user):
    settings.EMAIL_BACKEND = f"{__name__}.BlockingEmailBackend"
    BlockingEmailBackend.sending.clear()
    BlockingEmailBackend.release.clear()
    BlockingEmailBackend.sent.clear()
    gift = gift_row(user)
    outcomes = {}

    def deliver(name: str) -> None:
        try:
            outcomes[name] = gift_deliver(gift_id=gift.id)
        except (TransientDeliveryError, DatabaseError) as exc:  # SQLite refuses the second writer
            outcomes[name] = type(exc).__name__
        finally:
            connection.close()

    first = threading.Thread(target=deliver, args=("first",))
    first.start()
    assert BlockingEmailBackend.sending.wait(timeout=30)
    second = threading.Thread(target=deliver, args=("second",))
    second.start()
    if connection.vendor == "postgresql":
        wait_until(another_backend_waits_for_a_lock, message="the second delivery did not wait for the claim")
    BlockingEmailBackend.release.set()
    first.join(timeout=30)
    second.join(timeout=30)

    assert outcomes["first"] is True
    assert outcomes["second"] in (False, "OperationalError")
    assert len(BlockingEmailBackend.sent) == 1
    gift.refresh_from_db()
    assert gift.status == GiftStatus.DELIVERED
    assert Voucher.objects.filter(gift=gift).count() == 1
