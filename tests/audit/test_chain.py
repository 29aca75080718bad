"""The audit chains: gift events (one chain per gift) and the security audit log (one chain), and verify_audit_log."""

import threading
from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.test import RequestFactory
from django.utils import timezone

from audit.chain import AUDIT_LOG_ANCHOR, chain_key, gift_anchor, link_hash
from audit.models import AppendOnlyError, AuditEntry
from audit.services import audit_record, entry_link_fields
from gifting import events
from gifting.events import event_link_fields
from gifting.models import GiftEvent
from tests.factories import gift_row
from tests.migrating import migrate
from tests.waiting import wait_until

needs_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row and advisory locks need PostgreSQL; SQLite serialises writers"
)


def verify(*args: str) -> str:
    """verify_audit_log's output when the chains hold."""
    out = StringIO()
    call_command("verify_audit_log", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def verify_broken() -> str:
    """verify_audit_log's report of a broken chain (it must exit 1)."""
    err = StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("verify_audit_log", stdout=StringIO(), stderr=err)
    assert failure.value.returncode == 1
    return err.getvalue()


def tamper(table: str, sql: str, params: list) -> None:
    """Run `sql` past the append-only trigger, as someone with write access to the database could."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # ALTER TABLE refuses pending foreign-key checks
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            cursor.execute(sql, params)
            cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        else:  # SQLite guards updates only; the test's transaction brings the trigger back
            cursor.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            cursor.execute(sql, params)


def three_events(gift, user) -> list[GiftEvent]:
    events.gift_created(gift, actor=user)
    events.gift_queued(gift, message_id="m-1", actor_label="api", sent_at=timezone.now())
    events.gift_delivery_attempted(gift, attempt=1)
    return list(GiftEvent.objects.filter(gift=gift).order_by("id"))


def predecessors_are_the_events_before(rows: list[GiftEvent]) -> bool:
    """Each event's hash is the one its immediate predecessor (or the gift's anchor) gives."""
    previous = gift_anchor(rows[0].gift_id)
    for row in rows:
        if link_hash(previous, event_link_fields(row), key=chain_key()) != row.chain_hash:
            return False
        previous = row.chain_hash
    return True


# --- Intact chains --------------------------------------------------------------------


@pytest.mark.django_db
def test_intact_chains_verify_with_their_counts(user):
    for _ in range(3):
        three_events(gift_row(user), user)
    audit_record(kind="encryption_keys_rotated", actor_label="manage.py", rows=12)
    head = audit_record(kind="admin_login", actor=user, actor_label=user.username).chain_hash

    output = verify("--batch-size", "2")  # more than one batch of each

    assert "gift events: intact (9 events of 3 gifts)" in output
    assert f"audit log: intact (2 entries, head {head})" in output
    assert output.rstrip().endswith("ok")


@pytest.mark.django_db
def test_each_event_is_chained_to_the_one_before_it_under_a_key(user, settings):
    rows = three_events(gift_row(user), user)

    assert all(len(row.chain_hash) == 64 for row in rows)
    assert len({row.chain_hash for row in rows}) == 3
    assert predecessors_are_the_events_before(rows)
    settings.BLIND_INDEX_KEY = "another-key-" + "x" * 40  # without the app's key, no hash can be recomputed
    assert not predecessors_are_the_events_before(rows)


@pytest.mark.django_db
def test_audit_entries_keep_who_what_where_and_chain_from_the_anchor(user):
    request = RequestFactory().post("/admin/login/", REMOTE_ADDR="2001:db8::1")
    first = audit_record(
        kind="recipient_address_viewed",
        actor=user,
        actor_label=user.username,
        subject="a-gift-id",
        request=request,
        when=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        ids=("a", "b"),
    )
    second = audit_record(kind="encryption_keys_rotated", actor_label="manage.py")

    stored = AuditEntry.objects.get(id=first.id)
    assert (stored.kind, stored.actor, stored.subject, stored.ip) == (
        "recipient_address_viewed",
        user,
        "a-gift-id",
        "2001:db8::1",
    )
    assert stored.details == {"when": "2026-01-02T03:04:05Z", "ids": ["a", "b"]}
    assert stored.chain_hash == link_hash(AUDIT_LOG_ANCHOR, entry_link_fields(stored), key=chain_key())
    assert AuditEntry.objects.get(id=second.id).chain_hash == link_hash(
        stored.chain_hash, entry_link_fields(AuditEntry.objects.get(id=second.id)), key=chain_key()
    )


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["", "Admin Login", "admin-login", "x" * 65, "1st"])
def test_an_audit_kind_is_snake_case(kind):
    with pytest.raises(ValueError, match="snake_case"):
        audit_record(kind=kind, actor_label="test")
    assert not AuditEntry.objects.exists()


@pytest.mark.django_db
def test_audit_entries_are_append_only_in_the_model_and_the_database():
    entry = audit_record(kind="admin_login", actor_label="alice")

    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEntry.objects.filter(id=entry.id).update(subject="someone else")


# --- Tampering --------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_altered_event_is_reported_as_exactly_that_link(user):
    three_events(gift_row(user), user)
    gift = gift_row(user)
    first, middle, _ = three_events(gift, user)

    tamper(
        "gifting_giftevent",
        "UPDATE gifting_giftevent SET details = %s WHERE id = %s",
        ['{"message_id": "m-2"}', middle.id],
    )

    report = verify_broken()
    altered = GiftEvent.objects.get(id=middle.id)
    expected = link_hash(first.chain_hash, event_link_fields(altered), key=chain_key())
    assert f"gift events: broken at gift {gift.id}, event {middle.id}: " in report
    assert f"expected chain_hash {expected}, found {middle.chain_hash}" in report
    assert "audit log" not in report  # the other chain still holds


@pytest.mark.django_db
def test_an_event_given_a_new_hash_without_the_key_is_reported(user):
    gift = gift_row(user)
    _, middle, _ = three_events(gift, user)
    forged = link_hash(gift_anchor(gift.id), event_link_fields(middle), key=b"a guess")

    tamper("gifting_giftevent", "UPDATE gifting_giftevent SET chain_hash = %s WHERE id = %s", [forged, middle.id])

    assert f"broken at gift {gift.id}, event {middle.id}: " in verify_broken()


@pytest.mark.django_db
def test_a_deleted_middle_event_is_detected_at_the_event_after_it(user):
    gift = gift_row(user)
    _, middle, last = three_events(gift, user)

    tamper("gifting_giftevent", "DELETE FROM gifting_giftevent WHERE id = %s", [middle.id])

    report = verify_broken()
    assert f"gift events: broken at gift {gift.id}, event {last.id}: " in report
    assert f"found {last.chain_hash}" in report


@pytest.mark.django_db
def test_a_gift_whose_whole_trail_was_deleted_is_reported(user):
    three_events(gift_row(user), user)
    gift = gift_row(user)
    trail = [event.id for event in three_events(gift, user)]

    tamper("gifting_giftevent", "DELETE FROM gifting_giftevent WHERE id IN (%s, %s, %s)", trail)

    assert f"gift events: gift {gift.id} has no events" in verify_broken()


@pytest.mark.django_db
def test_an_altered_audit_entry_is_reported_as_exactly_that_link(user):
    first = audit_record(kind="admin_login", actor=user, actor_label=user.username)
    second = audit_record(kind="recipient_address_viewed", actor=user, actor_label=user.username, subject="gift-1")
    audit_record(kind="admin_logout", actor=user, actor_label=user.username)

    tamper("audit_auditentry", "UPDATE audit_auditentry SET subject = %s WHERE id = %s", ["gift-2", second.id])

    report = verify_broken()
    altered = AuditEntry.objects.get(id=second.id)
    expected = link_hash(first.chain_hash, entry_link_fields(altered), key=chain_key())
    assert (
        f"audit log: broken at entry {second.id}: expected chain_hash {expected}, found {second.chain_hash}" in report
    )
    assert "gift events" not in report


@pytest.mark.django_db
def test_a_deleted_audit_entry_is_detected_at_the_entry_after_it(user):
    audit_record(kind="admin_login", actor_label="alice")
    middle = audit_record(kind="admin_login_failed", actor_label="anonymous", subject="alice")
    last = audit_record(kind="admin_login", actor_label="alice")

    tamper("audit_auditentry", "DELETE FROM audit_auditentry WHERE id = %s", [middle.id])

    assert f"audit log: broken at entry {last.id}: " in verify_broken()


# --- The command's options ------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "--batch-size must be between 1 and 10000, not 0"),
        (["--batch-size", "10001"], "--batch-size must be between 1 and 10000"),
        (["--batch-size", "many"], "invalid int value: 'many'"),
        (["--gifts-only"], "unrecognized arguments: --gifts-only"),
    ],
)
def test_bad_options_are_a_clear_command_error(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("verify_audit_log", *args, stdout=StringIO(), stderr=StringIO())


@pytest.mark.django_db
def test_an_option_out_of_range_exits_2_like_a_usage_error():
    with pytest.raises(CommandError) as failure:
        call_command("verify_audit_log", "--batch-size", "0", stdout=StringIO(), stderr=StringIO())
    assert failure.value.returncode == 2


# --- Concurrency (PostgreSQL) ----------------------------------------------------------------


def another_backend_waits_for_a_lock() -> bool:
    """A session of this test database is waiting for a lock (a row lock or an advisory lock)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


def race(first_write, second_write) -> None:
    """`first_write` in an open transaction; `second_write` meanwhile; the first commits once the second waits.

    If the second does not wait (nothing serialises them), it finishes before the
    first commits, reading the chain's head as it was: the race the chain must not lose.
    """
    holding, release, second_done = threading.Event(), threading.Event(), threading.Event()
    errors = []

    def first() -> None:
        try:
            with transaction.atomic():
                first_write()
                holding.set()
                assert release.wait(timeout=30)
        except Exception as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
        finally:
            holding.set()
            connection.close()

    def second() -> None:
        try:
            assert holding.wait(timeout=30)
            second_write()
        except Exception as exc:
            errors.append(exc)
        finally:
            second_done.set()
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    wait_until(lambda: second_done.is_set() or another_backend_waits_for_a_lock(), message="the second write hung")
    release.set()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors


@needs_postgresql
def test_two_concurrent_events_of_one_gift_never_share_a_predecessor(transactional_db, user):
    gift = gift_row(user)
    events.gift_created(gift, actor=user)

    # Neither caller holds the gift's lock (publishing runs after commit): _record must take it.
    race(
        lambda: events.gift_publish_failed(gift, error="EndpointConnectionError", actor_label="api"),
        lambda: events.gift_publish_failed(gift, error="EndpointConnectionError", actor_label="sweeper"),
    )

    rows = list(GiftEvent.objects.filter(gift=gift).order_by("id"))
    assert [row.actor_label for row in rows] == ["user", "api", "sweeper"]
    assert predecessors_are_the_events_before(rows)
    assert "gift events: intact (3 events of 1 gifts)" in verify()


@needs_postgresql
def test_two_concurrent_audit_entries_never_share_a_predecessor(transactional_db):
    audit_record(kind="admin_login", actor_label="alice")

    race(
        lambda: audit_record(kind="admin_login", actor_label="bob"),
        lambda: audit_record(kind="admin_login", actor_label="carol"),
    )

    assert list(AuditEntry.objects.order_by("id").values_list("actor_label", flat=True)) == ["alice", "bob", "carol"]
    assert "audit log: intact (3 entries" in verify()


# --- The migration chains the events written before it --------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_chains_existing_events_and_keeps_the_log_append_only():
    old = migrate([("gifting", "0004_dead_letter_events")])
    Gift, Event = old.get_model("gifting", "Gift"), old.get_model("gifting", "GiftEvent")
    sender = old.get_model("auth", "User").objects.create(username="sender")
    now = datetime.now(tz=UTC)
    for _ in range(3):
        gift = Gift.objects.create(
            sender=sender, recipient_email="r@example.com", amount="5", currency="EUR", next_attempt_at=now
        )
        for type_ in ("created", "queued", "delivery_attempted"):
            Event.objects.create(gift=gift, type=type_, actor_label="worker", details={"attempt": 1, "ids": ["a"]})

    migrate()

    assert "gift events: intact (9 events of 3 gifts)" in verify()
    assert GiftEvent.objects.exclude(chain_hash="").count() == 9
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        GiftEvent.objects.update(actor_label="someone")
