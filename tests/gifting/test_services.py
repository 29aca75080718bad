"""Gift state transitions and model invariants, without a broker."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from gifting import events as gift_events
from gifting.errors import PermanentDeliveryError, TransientDeliveryError
from gifting.models import AppendOnlyError, Gift, GiftEvent, GiftStatus, HoldReason
from gifting.services import delivery, intake, outbox
from vouchers.models import Voucher

WALLET = "0x12" + "3" * 34 + "abcd"
VALID = {"recipient_email": "recipient@example.com", "amount": Decimal("25.00"), "currency": "EUR"}


def event_types(gift):
    return list(GiftEvent.objects.filter(gift=gift).values_list("type", flat=True))


@pytest.fixture
def make_gift(user):
    def make(status=GiftStatus.QUEUED, **fields):
        gift = intake.gift_create(sender=user, **{**VALID, **fields})
        if status != GiftStatus.QUEUED:
            hold = HoldReason.APPROVAL if status == GiftStatus.HELD else HoldReason.NONE
            Gift.objects.filter(id=gift.id).update(status=status, hold=hold, delivered_at=timezone.now())
        return gift

    return make


@pytest.fixture
def gift(make_gift):
    return make_gift(message="Happy birthday!")


@pytest.fixture
def publisher(monkeypatch):
    """A fake broker: records the gift ids published; `publisher.fail = True` makes it raise."""

    class FakePublisher:
        def __init__(self):
            self.fail, self.calls = False, []

        def __call__(self, gift_id, **kwargs):
            if self.fail:
                raise ConnectionError("broker down")
            self.calls.append(gift_id)
            return f"message-{len(self.calls)}"

    monkeypatch.setattr(outbox, "publish_delivery", FakePublisher())
    return outbox.publish_delivery


def test_gift_create_stores_a_queued_gift_and_its_created_event(user, gift):
    gift = Gift.objects.get(id=gift.id)
    assert (gift.sender, gift.status, gift.attempts, gift.amount) == (user, "queued", 0, Decimal("25.00"))
    assert gift.next_attempt_at is not None
    assert gift.last_published_at is None
    [event] = GiftEvent.objects.filter(gift=gift)
    assert (event.type, event.actor, event.actor_label) == ("created", user, "user")


def test_gift_create_publishes_only_once_the_transaction_commits(user, publisher, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        gift = intake.gift_create(sender=user, **VALID)
        assert publisher.calls == []
    assert publisher.calls == [gift.id]
    assert event_types(gift) == ["created", "queued"]
    assert GiftEvent.objects.get(gift=gift, type="queued").details == {"message_id": "message-1"}
    assert Gift.objects.get(id=gift.id).last_published_at is not None


def test_the_timeline_reads_queued_first_even_when_a_worker_records_its_attempt_before_the_publish_returns(
    user, publisher, monkeypatch
):
    gift = intake.gift_create(sender=user, **VALID)
    fake = outbox.publish_delivery

    def fast_worker_publish(gift_id, **kwargs):
        message_id = fake(gift_id, **kwargs)
        # The worker picks the message up before the publish call returns.

        gift_events.gift_delivery_attempted(Gift.objects.get(id=gift_id), attempt=1)
        return message_id

    monkeypatch.setattr(outbox, "publish_delivery", fast_worker_publish)
    outbox.gift_publish(gift_id=gift.id)

    timeline = GiftEvent.objects.filter(gift=gift).order_by("at", "id").values_list("type", flat=True)
    assert list(timeline) == ["created", "queued", "delivery_attempted"]


@pytest.mark.parametrize(
    ("fields", "error_key"),
    [
        ({"amount": Decimal("0")}, NON_FIELD_ERRORS),
        ({"amount": Decimal("-5")}, NON_FIELD_ERRORS),
        ({"amount": Decimal("1.001")}, "amount"),
        ({"currency": "eur"}, NON_FIELD_ERRORS),
        ({"recipient_email": "not-an-email"}, "recipient_email"),
        # What the API refuses, the service refuses too (core.recipients): no dotless or IP hosts.
        ({"recipient_email": "bob@localhost"}, "recipient_email"),
        ({"recipient_email": "bob@[127.0.0.1]"}, "recipient_email"),
        ({"recipient_wallet": WALLET}, NON_FIELD_ERRORS),
        ({"recipient_email": ""}, NON_FIELD_ERRORS),
        ({"message": "x" * 501}, "message"),
    ],
)
def test_gift_create_refuses_an_invalid_gift_and_stores_nothing(user, fields, error_key):
    with pytest.raises(ValidationError) as raised:
        intake.gift_create(sender=user, **{**VALID, **fields})
    assert error_key in raised.value.message_dict
    assert Gift.objects.count() == 0
    assert GiftEvent.objects.count() == 0


def test_gift_deliver_issues_the_voucher_and_emails_it(outbox, gift):
    assert delivery.gift_deliver(gift_id=gift.id) is True

    gift.refresh_from_db()
    assert (gift.status, gift.attempts, gift.last_error) == ("delivered", 1, "")
    assert gift.delivered_at is not None
    assert event_types(gift) == ["created", "delivery_attempted", "delivered"]
    voucher = Voucher.objects.get(gift=gift)
    assert (voucher.amount, voucher.currency, voucher.status) == (Decimal("25.00"), "EUR", "issued")
    assert voucher.expires_at > timezone.now() + timedelta(days=settings.VOUCHER_VALIDITY_DAYS - 1)
    [email] = outbox
    assert email.to == ["recipient@example.com"]
    assert str(gift.id) in email.message()["Message-ID"]
    [(html, mimetype)] = email.alternatives
    assert mimetype == "text/html"
    for text in (email.subject, email.body, html):
        assert "25.00 EUR" in text
    for text in (email.body, html):
        assert voucher.code in text
        assert "Alice Sender" in text
        assert "Happy birthday!" in text


def test_gift_deliver_twice_sends_no_second_email(outbox, gift):
    delivery.gift_deliver(gift_id=gift.id)

    assert delivery.gift_deliver(gift_id=gift.id) is False
    assert len(outbox) == 1
    assert Voucher.objects.filter(gift=gift).count() == 1
    assert Gift.objects.get(id=gift.id).attempts == 1
    last = GiftEvent.objects.filter(gift=gift).last()
    assert (last.type, last.details) == ("duplicate_ignored", {"status": "delivered"})


@pytest.mark.parametrize("status", [GiftStatus.FAILED, GiftStatus.HELD, GiftStatus.REJECTED])
def test_gift_deliver_leaves_a_gift_that_is_not_queued_alone(outbox, make_gift, status):
    gift = make_gift(status=status)
    assert delivery.gift_deliver(gift_id=gift.id) is False
    assert outbox == []
    assert not Voucher.objects.filter(gift=gift).exists()
    assert event_types(gift) == ["created", "duplicate_ignored"]


def test_a_failed_attempt_is_recorded_and_the_retry_reuses_the_voucher(outbox, gift, monkeypatch):
    def busy_server(**kwargs):
        raise TransientDeliveryError("Busy.")

    with monkeypatch.context() as patch:
        patch.setattr(delivery, "deliver_voucher", busy_server)
        with pytest.raises(TransientDeliveryError):
            delivery.gift_deliver(gift_id=gift.id)
    gift.refresh_from_db()
    assert (gift.status, gift.attempts, gift.last_error) == ("queued", 1, "Busy.")
    first_code = Voucher.objects.get(gift=gift).code

    assert delivery.gift_deliver(gift_id=gift.id) is True
    gift.refresh_from_db()
    assert (gift.status, gift.attempts, gift.last_error) == ("delivered", 2, "")
    assert Voucher.objects.filter(gift=gift).count() == 1
    assert first_code in outbox[0].body


def test_a_wallet_gift_fails_permanently(make_gift):
    gift = make_gift(recipient_email="", recipient_wallet=WALLET)
    with pytest.raises(PermanentDeliveryError):
        delivery.gift_deliver(gift_id=gift.id)
    gift.refresh_from_db()
    assert (gift.status, gift.attempts) == ("queued", 1)
    assert gift.last_error


def test_an_unknown_gift_is_neither_delivered_nor_failed(db):
    unknown = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(Gift.DoesNotExist):
        delivery.gift_deliver(gift_id=unknown)
    assert delivery.gift_fail(gift_id=unknown, reason="r", cause="c") is False


def test_gift_fail_marks_a_queued_gift_failed(gift):
    assert delivery.gift_fail(gift_id=gift.id, reason="Could not deliver.", cause="permanent_error") is True
    gift.refresh_from_db()
    assert (gift.status, gift.last_error) == ("failed", "Could not deliver.")
    last = GiftEvent.objects.filter(gift=gift).last()
    assert (last.type, last.details) == ("failed", {"reason": "Could not deliver.", "cause": "permanent_error"})


@pytest.mark.parametrize("status", [GiftStatus.DELIVERED, GiftStatus.FAILED, GiftStatus.HELD, GiftStatus.REJECTED])
def test_gift_fail_only_fails_a_queued_gift(make_gift, status):
    gift = make_gift(status=status)
    assert delivery.gift_fail(gift_id=gift.id, reason="No.", cause="x") is False
    gift.refresh_from_db()
    assert (gift.status, gift.last_error) == (status, "")
    assert event_types(gift) == ["created"]


def test_gift_record_retry_postpones_the_next_attempt(gift):
    before = timezone.now()
    outbox.gift_record_retry(gift_id=gift.id, reason="Busy.", delay_seconds=30)
    gift.refresh_from_db()
    assert before + timedelta(seconds=30) <= gift.next_attempt_at <= timezone.now() + timedelta(seconds=30)
    assert gift.last_published_at >= before
    last = GiftEvent.objects.filter(gift=gift).last()
    assert last.type == "retry_scheduled"
    assert last.details == {"reason": "Busy.", "retry_at": gift.next_attempt_at.isoformat(), "delay_seconds": 30}


def test_gift_record_retry_ignores_a_gift_that_is_not_queued(make_gift):
    gift = make_gift(status=GiftStatus.DELIVERED)
    outbox.gift_record_retry(gift_id=gift.id, reason="Busy.", delay_seconds=30)
    assert Gift.objects.get(id=gift.id).next_attempt_at == gift.next_attempt_at
    assert event_types(gift) == ["created"]


def test_the_sweeper_republishes_only_overdue_queued_gifts(make_gift, publisher):
    now = timezone.now()
    overdue_at = now - timedelta(seconds=settings.GIFT_REPUBLISH_AFTER + 60)
    overdue, recent, waiting = make_gift(), make_gift(), make_gift()
    finished = [make_gift(status=status) for status in (GiftStatus.DELIVERED, GiftStatus.FAILED, GiftStatus.HELD)]
    Gift.objects.filter(id__in=[overdue.id, *(g.id for g in finished)]).update(next_attempt_at=overdue_at)
    Gift.objects.filter(id=waiting.id).update(next_attempt_at=now + timedelta(seconds=60))

    assert outbox.gifts_republish_stale(now=now) == 1

    assert publisher.calls == [overdue.id]
    overdue.refresh_from_db()
    assert overdue.next_attempt_at >= now
    assert overdue.last_published_at >= now
    event = GiftEvent.objects.filter(gift=overdue).last()
    assert (event.type, event.actor_label, event.details) == ("republished", "sweeper", {"message_id": "message-1"})
    assert all(event_types(g) == ["created"] for g in [recent, waiting, *finished])


def test_a_failed_republish_keeps_the_gift_queued_for_a_later_sweep(make_gift, publisher):
    gift, now = make_gift(), timezone.now()
    Gift.objects.filter(id=gift.id).update(next_attempt_at=now - timedelta(hours=1))
    publisher.fail = True

    assert outbox.gifts_republish_stale(now=now) == 0
    gift.refresh_from_db()
    assert gift.status == "queued"
    assert gift.last_published_at is None
    event = GiftEvent.objects.filter(gift=gift).last()
    assert (event.type, event.details) == ("publish_failed", {"error": "ConnectionError"})

    publisher.fail = False
    assert outbox.gifts_republish_stale(now=now) == 0  # not overdue again straight away
    later = now + timedelta(seconds=settings.GIFT_REPUBLISH_AFTER + 1)
    assert outbox.gifts_republish_stale(now=later) == 1
    assert publisher.calls == [gift.id]


def unsaved_gift(user, **fields):
    return Gift(sender=user, **{**VALID, "next_attempt_at": timezone.now(), **fields})


INVALID_ROWS = [{"amount": Decimal("0")}, {"amount": Decimal("-1")}, {"recipient_wallet": WALLET}]
INVALID_ROWS += [{"recipient_email": ""}, {"currency": "eur"}, {"status": GiftStatus.DELIVERED}]  # no delivered_at


@pytest.mark.parametrize("fields", INVALID_ROWS)
def test_the_database_refuses_an_invalid_gift(user, fields):
    with pytest.raises(IntegrityError), transaction.atomic():
        unsaved_gift(user, **fields).save()


def test_the_database_allows_one_voucher_per_gift(user):
    gift = unsaved_gift(user)
    gift.save()
    expires_at = timezone.now() + timedelta(days=1)
    Voucher.objects.create(gift=gift, code="AAAA", amount=gift.amount, currency="EUR", expires_at=expires_at)
    with pytest.raises(IntegrityError), transaction.atomic():
        Voucher.objects.create(gift=gift, code="BBBB", amount=gift.amount, currency="EUR", expires_at=expires_at)


def test_gift_events_are_append_only(gift):
    event = GiftEvent.objects.get(gift=gift)
    event.details = {"rewritten": True}
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    assert GiftEvent.objects.get(gift=gift).details == {}


def test_the_sweeper_waits_longer_before_each_copy_of_a_gift_that_keeps_waiting(make_gift, publisher):
    """A gift waiting in a deep queue is not copied every sweep: each copy waits as long as the gift has."""
    gift, start = make_gift(), timezone.now()
    after = timedelta(seconds=settings.GIFT_REPUBLISH_AFTER)
    Gift.objects.filter(id=gift.id).update(created_at=start - timedelta(minutes=10), next_attempt_at=start - after * 2)

    assert outbox.gifts_republish_stale(now=start) == 1
    gift.refresh_from_db()
    assert gift.next_attempt_at == start + timedelta(minutes=10)  # as long as it has waited
    assert outbox.gifts_republish_stale(now=start + after * 2) == 0  # a plain interval would copy it again
    assert outbox.gifts_republish_stale(now=start + timedelta(minutes=10) + after * 2) == 1
    assert publisher.calls == [gift.id, gift.id]


def test_the_sweeper_sends_a_dead_letter_that_never_reached_the_dlq(make_gift, publisher):
    """gift_fail committed, then SQS was down (or the worker died) before gift_dead_letter: the sweeper sends it."""
    lost, sent, fresh = make_gift(), make_gift(), make_gift()
    for gift in (lost, sent, fresh):
        delivery.gift_fail(gift_id=gift.id, reason="No.", cause="permanent_error")
    outbox.gift_dead_letter(gift_id=sent.id)
    long_ago = timezone.now() - timedelta(seconds=settings.GIFT_REPUBLISH_AFTER + 60)
    Gift.objects.filter(id__in=[lost.id, sent.id]).update(updated_at=long_ago)
    publisher.calls.clear()

    assert outbox.gifts_republish_stale() == 1

    assert publisher.calls == [lost.id]
    assert event_types(lost)[-2:] == ["failed", "dead_lettered"]
    assert outbox.gifts_republish_stale() == 0  # accounted for now
