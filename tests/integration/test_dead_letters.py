"""`manage.py dlq` (list, redrive, purge) and the Gift admin's redrive action, against moto's SQS server.

Dead letters are made as the worker makes them (outbox.gift_dead_letter on a
failed gift) without waiting for deliveries to fail; a real worker delivers
where a test is about delivering once.
"""

import json
import uuid
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from core import sqs as sqs_facts
from core.sqs import queue_depth, queue_url, sqs_client
from gifting import events
from gifting.dead_letters import dead_letters_purge, dead_letters_redrive, is_older_than, sent_at_from_attributes
from gifting.models import Gift, GiftEvent, GiftEventType, GiftStatus
from gifting.publishing import publish_delivery
from gifting.services.outbox import gift_dead_letter
from tests.factories import gift_row
from tests.integration.sqs_messages import receive_all
from tests.integration.test_delivery import event_types, wait_for_status
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

GIFTS = "/admin/gifting/gift/"
RECIPIENT = "private.person@example.com"
REASON = "The voucher could not be delivered."


@pytest.fixture
def sender(transactional_db, make_user):
    return make_user(first_name="Sam", last_name="Sender")


def failed_gift(sender, *, dead_letters: int = 1) -> Gift:
    """A gift failed for good, as the worker leaves it: `failed`, its `failed` event, its dead letter(s)."""
    gift = gift_row(
        sender, recipient_email=RECIPIENT, message="private words", status=GiftStatus.FAILED, last_error=REASON
    )
    events.gift_failed(gift, reason=REASON, cause="permanent_error")
    for _ in range(dead_letters):
        gift_dead_letter(gift_id=gift.id)
    return gift


def send_foreign_message() -> None:
    client = sqs_client()
    client.send_message(QueueUrl=queue_url(client, sqs_facts.GIFT_DLQ), MessageBody="a stranger's message")


def dlq_with_stderr(*args: str) -> tuple[str, str]:
    """Run `manage.py dlq ARGS`; what it printed on stdout and stderr, neither with any personal data."""
    out, err = StringIO(), StringIO()
    call_command("dlq", *args, stdout=out, stderr=err)
    assert RECIPIENT not in out.getvalue() + err.getvalue()
    assert "private words" not in out.getvalue() + err.getvalue()
    return out.getvalue(), err.getvalue()


def dlq(*args: str) -> str:
    return dlq_with_stderr(*args)[0]


def dlq_list() -> list[dict]:
    return json.loads(dlq("list", "--json"))


def dlq_gift_ids() -> list[str]:
    """The gifts the DLQ's letters name, read with `dlq list` (which, unlike a plain receive, hides nothing)."""
    return sorted(row["gift_id"] or "foreign" for row in dlq_list())


def status_of(gift: Gift) -> str:
    return Gift.objects.get(id=gift.id).status


def events_of(gift: Gift, type_: str) -> list[GiftEvent]:
    return list(GiftEvent.objects.filter(gift=gift, type=type_).order_by("at", "id"))


def drained(queue: str) -> bool:
    depth = queue_depth(sqs_client(), queue)
    return depth["visible"] == depth["in_flight"] == depth["delayed"] == 0


# --- list ---------------------------------------------------------------------


def test_list_shows_each_dead_letter_with_its_failure_and_consumes_nothing(sqs, sender):
    first, second = failed_gift(sender), failed_gift(sender)
    send_foreign_message()

    rows = dlq_list()

    assert sorted(row["gift_id"] or "foreign" for row in rows) == sorted([str(first.id), str(second.id), "foreign"])
    [row] = [row for row in rows if row["gift_id"] == str(first.id)]
    assert row["foreign"] is False
    assert row["gift_status"] == "failed"
    assert (row["reason"], row["cause"]) == (REASON, "permanent_error")
    assert 0 <= row["age_seconds"] < 120
    assert row["receive_count"] >= 1
    [foreign] = [row for row in rows if row["foreign"]]
    assert (foreign["gift_id"], foreign["gift_status"]) == (None, None)
    # Nothing was consumed or left hidden: a second listing and the table show the same letters at once.
    assert {row["message_id"] for row in dlq_list()} == {row["message_id"] for row in rows}
    table = dlq("list")
    assert str(first.id) in table and str(second.id) in table and "foreign" in table
    assert "3 dead letter(s), 1 foreign" in table
    assert len(dlq_list()) == 3
    assert len(json.loads(dlq("list", "--json", "--limit", "1"))) == 1
    assert len(dlq_list()) == 3


# --- redrive ------------------------------------------------------------------


def test_redrive_all_delivers_each_failed_gift_once_and_audits_the_operator(sqs, smtp_sink, start_worker, sender):
    first, second = failed_gift(sender), failed_gift(sender)
    send_foreign_message()

    output = dlq("redrive", "--all", "--operator", "olga")
    start_worker()  # after the redrive: on SQLite a delivering worker locks the whole database

    assert "2 redriven, 1 left on the DLQ" in output
    assert "foreign message" in output
    for gift in (first, second):
        wait_for_status(gift, GiftStatus.DELIVERED)
        assert len(smtp_sink.messages_for(gift.id)) == 1
        [redriven] = events_of(gift, GiftEventType.REDRIVEN)
        assert redriven.actor_label == "operator" and redriven.actor is None
        assert redriven.details["operator"] == "olga"
        assert redriven.details["message_id"]
    assert [row["foreign"] for row in dlq_list()] == [True]


def test_redrive_without_operator_names_the_os_user(sqs, sender, monkeypatch):
    monkeypatch.setattr("getpass.getuser", lambda: "deploy-bot")
    gift = failed_gift(sender)

    dlq("redrive", "--gift", str(gift.id))

    [redriven] = events_of(gift, GiftEventType.REDRIVEN)
    assert redriven.details["operator"] == "deploy-bot"


def test_redrive_one_gift_leaves_the_others_on_the_dlq(sqs, sender):
    chosen, other = failed_gift(sender), failed_gift(sender)

    output = dlq("redrive", "--gift", str(chosen.id))

    assert "1 redriven, 0 left on the DLQ" in output
    assert status_of(chosen) == GiftStatus.QUEUED
    assert status_of(other) == GiftStatus.FAILED
    assert dlq_gift_ids() == [str(other.id)]
    [moved] = receive_all(sqs_facts.GIFT_QUEUE)
    assert str(chosen.id) in json.dumps(sqs_facts.decode_task_message(moved["Body"]))
    assert events_of(other, GiftEventType.REDRIVEN) == []


def test_dry_run_changes_nothing(sqs, sender):
    gift = failed_gift(sender, dead_letters=2)

    output = dlq("redrive", "--all", "--dry-run")

    assert "1 would be redriven, 0 left on the DLQ, 1 duplicate copies would be deleted" in output
    assert f"  gift {gift.id} (+1 duplicate copies)" in output and "would move" in output
    assert status_of(gift) == GiftStatus.FAILED
    assert events_of(gift, GiftEventType.REDRIVEN) == []
    assert receive_all(sqs_facts.GIFT_QUEUE) == []
    assert dlq_gift_ids() == [str(gift.id)] * 2


def test_duplicate_dead_letters_of_one_gift_are_delivered_once(sqs, smtp_sink, start_worker, sender):
    gift = failed_gift(sender, dead_letters=3)
    start_worker()

    output = dlq("redrive", "--all")  # one gift: nothing for the worker to lock meanwhile

    assert "1 redriven, 0 left on the DLQ, 2 duplicate copies deleted" in output
    wait_for_status(gift, GiftStatus.DELIVERED)
    wait_until(lambda: drained(sqs_facts.GIFT_QUEUE), message="the gift queue was not drained")
    assert len(smtp_sink.messages_for(gift.id)) == 1
    assert GiftEventType.DUPLICATE_IGNORED not in event_types(gift)  # the copies never reached a worker
    assert dlq_list() == []
    [redriven] = events_of(gift, GiftEventType.REDRIVEN)
    assert redriven.details["duplicates_deleted"] == 2


def test_message_of_a_gift_that_is_not_failed_is_left_and_reported(sqs, sender):
    delivered = gift_row(sender, status=GiftStatus.DELIVERED, delivered_at=timezone.now())
    publish_delivery(delivered.id, queue=sqs_facts.GIFT_DLQ)
    failed = failed_gift(sender)

    output = dlq("redrive", "--all")

    assert "1 redriven, 1 left on the DLQ" in output
    assert f"gift {delivered.id} is delivered, not failed" in output
    assert status_of(delivered) == GiftStatus.DELIVERED
    assert status_of(failed) == GiftStatus.QUEUED
    assert dlq_gift_ids() == [str(delivered.id)]
    assert events_of(delivered, GiftEventType.REDRIVEN) == []
    # Asked for by id, it is left all the same.
    assert "0 redriven, 1 left on the DLQ" in dlq("redrive", "--gift", str(delivered.id))
    # A second redrive of the now queued gift finds nothing to move: no second message.
    with pytest.raises(CommandError, match="No dead letter of gift"):
        dlq("redrive", "--gift", str(failed.id))
    assert len(receive_all(sqs_facts.GIFT_QUEUE)) == 1


def test_redrive_of_a_large_batch_shows_progress_on_stderr(sqs, sender, monkeypatch):
    monkeypatch.setattr("gifting.management.commands.dlq.PROGRESS_EVERY", 2)
    gifts = [failed_gift(sender) for _ in range(4)]

    output, progress = dlq_with_stderr("redrive", "--all")

    assert "4 redriven, 0 left on the DLQ" in output
    assert "dlq read: 4 messages read" in progress
    assert "dlq redrive: 2/4 gifts handled" in progress and "dlq redrive: 4/4 gifts handled" in progress
    assert {status_of(gift) for gift in gifts} == {GiftStatus.QUEUED}


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((), "Say which: --gift ID for one gift, or --all"),
        (("--all", "--gift", "0c4b8a3e-3f4e-4a59-9d3b-6c1c1e7f1a01"), "not allowed with argument"),
        (("--gift", "not-a-gift"), "'not-a-gift' is not a gift id"),
        (("--all", "--operator", " "), "--operator must be a name"),
    ],
)
def test_redrive_refuses_unclear_arguments(sqs, args, error):
    with pytest.raises(CommandError, match=error):
        dlq("redrive", *args)


# --- purge --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("--older-than", "7"), "Refusing to purge without --yes"),
        (("--older-than", "0", "--yes"), "'0' must be a positive whole number"),
        (("--older-than", "-3", "--yes"), "must be a positive whole number"),
        (("--older-than", "soon", "--yes"), "'soon' is not a whole number"),
        (("--yes",), "--older-than"),
    ],
)
def test_purge_refuses_without_yes_or_a_positive_number_of_days(sqs, sender, args, error):
    gift = failed_gift(sender)

    with pytest.raises(CommandError, match=error):
        dlq("purge", *args)

    assert dlq_gift_ids() == [str(gift.id)]


def test_purge_keeps_dead_letters_younger_than_its_days(sqs, sender):
    gift = failed_gift(sender)
    send_foreign_message()

    output = dlq("purge", "--older-than", "1", "--yes")

    assert "0 dead letter(s) older than 1 days purged (0 gifts, 0 foreign), 2 kept" in output
    assert len(dlq_list()) == 2
    assert status_of(gift) == GiftStatus.FAILED
    assert events_of(gift, GiftEventType.DEAD_LETTER_PURGED) == []


def test_purge_deletes_old_dead_letters_and_audits_each_gift(sqs, sender):
    # SQS sets SentTimestamp itself: the letters are made old by purging as if two days had passed.
    gift = failed_gift(sender, dead_letters=2)
    send_foreign_message()

    report = dead_letters_purge(older_than_days=1, operator="petra", now=timezone.now() + timedelta(days=2))

    assert (report.purged, report.kept, report.gift_ids, report.foreign) == (3, 0, (gift.id,), 1)
    assert dlq_list() == []
    assert status_of(gift) == GiftStatus.FAILED
    [purged] = events_of(gift, GiftEventType.DEAD_LETTER_PURGED)
    assert purged.actor_label == "operator"
    assert purged.details["operator"] == "petra"
    assert purged.details["older_than_days"] == 1
    assert len(purged.details["message_ids"]) == 2


def test_age_filter_reads_sent_timestamp_and_compares_whole_days():
    sent_at = sent_at_from_attributes({"SentTimestamp": "1700000000000"})
    assert sent_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)

    assert is_older_than(sent_at, days=3, now=sent_at + timedelta(days=3, seconds=1))
    assert not is_older_than(sent_at, days=3, now=sent_at + timedelta(days=3))
    assert not is_older_than(sent_at, days=3, now=sent_at + timedelta(days=2, hours=23))


# --- the admin action ---------------------------------------------------------


def staff(make_user, *codenames: str):
    user = make_user(username=f"staff-{uuid.uuid4().hex[:8]}", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="gifting", codename__in=codenames))
    return type(user).objects.get(pk=user.pk)  # a fresh permission cache


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def redrive_action(client: Client, *gifts: Gift):
    data = {"action": "redrive_selected", "_selected_action": [str(gift.id) for gift in gifts]}
    return client.post(GIFTS, data, follow=True)


def test_admin_redrive_needs_the_permission(sqs, sender, make_user):
    gift = failed_gift(sender)
    viewer = staff(make_user, "view_gift")
    client = logged_in(viewer)

    assert "redrive_selected" not in client.get(GIFTS).content.decode()
    response = redrive_action(client, gift)

    assert response.status_code == 200
    assert "dead letter" not in response.content.decode()
    with pytest.raises(PermissionDenied):  # the service checks too, whoever calls it
        dead_letters_redrive(gift_ids=[gift.id], operator=viewer.username, actor=viewer)
    assert status_of(gift) == GiftStatus.FAILED
    assert events_of(gift, GiftEventType.REDRIVEN) == []
    assert dlq_gift_ids() == [str(gift.id)]


def test_admin_redrive_is_not_offered_where_the_dlq_tools_are_off(sqs, sender, make_user, settings):
    """The public web service on AWS (ADMIN_DLQ_TOOLS=false): its IAM role may not touch dead letters."""
    settings.ADMIN_DLQ_TOOLS = False
    gift = failed_gift(sender)
    client = logged_in(staff(make_user, "view_gift", "redrive_gift"))

    assert "redrive_selected" not in client.get(GIFTS).content.decode()
    response = redrive_action(client, gift)

    assert response.status_code == 200
    assert "dead letter" not in response.content.decode()
    assert status_of(gift) == GiftStatus.FAILED
    assert dlq_gift_ids() == [str(gift.id)]


def test_admin_redrive_moves_dead_letters_or_republishes_and_delivers_once(
    sqs, smtp_sink, start_worker, sender, make_user
):
    with_letter = failed_gift(sender, dead_letters=2)
    letter_gone = failed_gift(sender, dead_letters=0)  # as if purged, or lost by SQS
    delivered = gift_row(sender, status=GiftStatus.DELIVERED, delivered_at=timezone.now())
    operator = logged_in(staff(make_user, "view_gift", "redrive_gift"))
    assert "redrive_selected" in operator.get(GIFTS).content.decode()

    response = redrive_action(operator, with_letter, letter_gone, delivered)
    start_worker()  # after the action: on SQLite a delivering worker locks the whole database

    said = [str(message) for message in response.context["messages"]]
    moved = f"Gift {with_letter.id}: its dead letter went back to the gift queue. 1 duplicate copies were deleted."
    assert moved in said
    assert f"Gift {letter_gone.id}: no dead letter was left on the DLQ; a fresh delivery message was published." in said
    assert f"Gift {delivered.id} is delivered, not failed: left alone." in said
    assert RECIPIENT not in response.content.decode()
    for gift in (with_letter, letter_gone):
        wait_for_status(gift, GiftStatus.DELIVERED)
        [redriven] = events_of(gift, GiftEventType.REDRIVEN)
        assert redriven.actor is not None and redriven.actor.is_staff
        assert redriven.details["operator"] == redriven.actor.username
    assert events_of(with_letter, GiftEventType.REDRIVEN)[0].details["message_id"]
    assert events_of(letter_gone, GiftEventType.REDRIVEN)[0].details["message_id"] is None
    assert events_of(letter_gone, GiftEventType.QUEUED)[-1].actor_label == "operator"
    wait_until(lambda: drained(sqs_facts.GIFT_QUEUE), message="the gift queue was not drained")
    assert len(smtp_sink.messages_for(with_letter.id)) == 1
    assert len(smtp_sink.messages_for(letter_gone.id)) == 1
    assert dlq_list() == []
    assert status_of(delivered) == GiftStatus.DELIVERED
