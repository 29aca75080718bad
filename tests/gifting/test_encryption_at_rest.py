"""Encryption at rest: nothing personal or secret in any column, key rotation, lookups by blind index."""

import hashlib
import json
import threading
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from audit.models import AuditEntry
from core import crypto
from core.masking import recipient_tag
from fraud.models import RiskAssessment
from gifting import selectors
from gifting.management.commands import rotate_encryption_keys
from gifting.models import Gift, GiftStatus, IdempotencyKey
from gifting.services import delivery
from gifting.services.intake import gift_create
from tests.eth_chain import LocalChain, token_contracts
from tests.factories import gift_row
from tests.waiting import wait_until
from tests.wallet_provider import CHECKSUMMED, SECRET, WalletProviderStub
from vouchers.models import Voucher
from vouchers.selectors import voucher_find_by_code
from vouchers.services import voucher_issue_for_gift

KEY_A, KEY_B, KEY_C = (Fernet.generate_key().decode() for _ in range(3))
ADDRESS = "Dana.Private+Birthday@Example.org"
MESSAGE = "A Secret birthday note for Dana"
BODY = {"recipient_email": ADDRESS, "amount": "25.00", "currency": "EUR", "message": MESSAGE}


def every_value_in_the_database() -> dict[str, list[str]]:
    """Every column of every table, read with raw SQL, as text: {"table.column": [values]}."""
    found: dict[str, list[str]] = {}
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            columns = [column.name for column in connection.introspection.get_table_description(cursor, table)]
            quoted = ", ".join(connection.ops.quote_name(column) for column in columns)
            cursor.execute(f"SELECT {quoted} FROM {connection.ops.quote_name(table)}")  # names from introspection
            for row in cursor.fetchall():
                for column, value in zip(columns, row, strict=True):
                    if isinstance(value, bytes | memoryview):
                        value = bytes(value).decode("latin-1")
                    found.setdefault(f"{table}.{column}", []).append("" if value is None else str(value))
    return found


def columns_containing(needle: str, values: dict[str, list[str]]) -> list[str]:
    """The columns where `needle` turns up, in any letter case."""
    return [column for column, texts in values.items() if any(needle.lower() in text.lower() for text in texts)]


# --- (a) Nothing in clear -------------------------------------------------------------------------------


@pytest.fixture
def wallet_server(settings):
    """A provider stub that credits on a local chain, and the settings that verify its credits there."""
    chain = LocalChain()
    tokens = chain.deploy_currency_tokens()
    stub = WalletProviderStub(chain=chain, tokens=tokens)
    settings.WALLET_PROVIDER_URL, settings.WALLET_PROVIDER_SECRET = stub.url, SECRET
    settings.ETH_RPC_URL, settings.ETH_MIN_CONFIRMATIONS = chain.rpc_url, 1
    settings.WALLET_TOKEN_CONTRACTS = token_contracts(tokens)
    yield stub
    stub.stop()
    chain.stop()


def test_delivered_gifts_leave_no_recipient_message_or_code_in_any_column(auth_client, user, outbox, wallet_server):
    by_email = auth_client.post("/api/v1/gifts/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="scan-1")
    assert by_email.status_code == 202, by_email.content
    by_wallet = gift_create(
        sender=user, recipient_wallet=CHECKSUMMED, amount=Decimal("30"), currency="EUR", message=MESSAGE
    )
    for gift_id in (by_email.json()["id"], by_wallet.id):
        assert delivery.gift_deliver(gift_id=gift_id) is True
    assert Gift.objects.filter(status=GiftStatus.DELIVERED).count() == 2
    codes = list(Voucher.objects.values_list("code", flat=True))
    sent = outbox[0].body + wallet_server.requests[0].body.decode()
    assert len(codes) == 2 and all(code in sent for code in codes)

    values = every_value_in_the_database()

    assert columns_containing(user.username, values), "the scan must see the rows it scans"
    assert {"gifting_gift.recipient_email", "gifting_gift.message", "vouchers_voucher.code"} <= set(values)
    needles = [ADDRESS, ADDRESS.lower(), "dana.private", MESSAGE, CHECKSUMMED, CHECKSUMMED.lower()]
    needles += codes + [code.replace("-", "") for code in codes]
    assert {needle: columns_containing(needle, values) for needle in needles} == {needle: [] for needle in needles}
    # The remembered request's fingerprint is keyed: a plain hash of the body would confirm a guessed recipient.
    canonical = json.dumps(BODY, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert columns_containing(hashlib.sha256(canonical.encode()).hexdigest(), values) == []


def test_the_orm_reads_what_it_wrote(user):
    gift = gift_row(user, recipient_email=ADDRESS, message=MESSAGE)
    voucher = voucher_issue_for_gift(gift=gift)

    again = Gift.objects.get(id=gift.id)
    assert (again.recipient_email, again.message, again.recipient_wallet) == (ADDRESS, MESSAGE, "")
    assert Voucher.objects.get(id=voucher.id).code == voucher.code
    assert again.masked_recipient == "D***@Example.org"


# --- (b) Key rotation -------------------------------------------------------------------------------------


@pytest.fixture
def data_under_key_a(settings, make_user):
    """Seven gifts (email and wallet), two vouchers and a remembered response, all encrypted under key A."""
    settings.FIELD_ENCRYPTION_KEYS = [KEY_A]
    sender = make_user()
    gifts = [gift_row(sender, recipient_email=f"friend{n}@example.com", message=f"note {n}") for n in range(6)]
    gifts.append(gift_row(sender, recipient_email="", recipient_wallet=CHECKSUMMED, message=""))
    vouchers = [voucher_issue_for_gift(gift=gift) for gift in gifts[:2]]
    IdempotencyKey.objects.create(
        user=sender, key="k", request_fingerprint="f", response_status=202, response_body={"message": "note 0"}
    )
    return {
        "gifts": {g.id: (g.recipient_email, g.recipient_wallet, g.message) for g in gifts},
        "codes": {v.id: v.code for v in vouchers},
        "body": {"message": "note 0"},
    }


def raw_values() -> list[str]:
    """Every non-empty encrypted value as stored."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT recipient_email, recipient_wallet, message FROM gifting_gift")
        values = [value for row in cursor.fetchall() for value in row]
        cursor.execute("SELECT code FROM vouchers_voucher")
        values += [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT response_body FROM gifting_idempotencykey")
        values += [row[0] for row in cursor.fetchall()]
    return [value for value in values if value]


def under(key: str) -> int:
    return sum(value.startswith(crypto.key_id(key) + "$") for value in raw_values())


def everything_reads(data) -> bool:
    gifts = {g.id: (g.recipient_email, g.recipient_wallet, g.message) for g in Gift.objects.all()}
    codes = {v.id: v.code for v in Voucher.objects.all()}
    return (
        gifts == data["gifts"] and codes == data["codes"] and IdempotencyKey.objects.get().response_body == data["body"]
    )


def rotate(*args: str) -> str:
    out = StringIO()
    call_command("rotate_encryption_keys", *args, stdout=out)
    return out.getvalue()


def test_rotation_moves_every_value_to_the_new_key_so_the_old_one_can_go(settings, data_under_key_a):
    total = len(raw_values())
    assert total == 7 + 6 + 2 + 1 and under(KEY_A) == total
    settings.FIELD_ENCRYPTION_KEYS = [KEY_B, KEY_A]

    output = rotate("--batch-size", "3")

    assert under(KEY_B) == total
    assert "10 rows to re-encrypt" in output  # 7 gifts, 2 vouchers, 1 response
    assert "gifting.Gift: 3/7 [" in output and "gifting.Gift: 7/7 [" in output and "100%" in output
    assert "Done: re-encrypted 10 rows" in output
    settings.FIELD_ENCRYPTION_KEYS = [KEY_B]
    assert everything_reads(data_under_key_a)
    assert "Nothing to do: every encrypted value is under the newest key" in rotate()
    [entry] = AuditEntry.objects.filter(kind="encryption_keys_rotated")
    assert (entry.actor_label, entry.details) == (
        "manage.py",
        {
            "key_id": crypto.key_id(KEY_B),
            "rows": 10,
            "by_model": {"gifting.Gift": 7, "gifting.IdempotencyKey": 1, "vouchers.Voucher": 2},
            "rows_left": 0,
        },
    )


def test_an_interrupted_rotation_resumes_where_it_stopped(settings, data_under_key_a, monkeypatch):
    settings.FIELD_ENCRYPTION_KEYS = [KEY_C, KEY_A]

    assert "Re-encrypted 4 rows; 6 left: run the command again." in rotate("--limit", "4", "--batch-size", "3")
    assert "6 rows to re-encrypt" in rotate("--dry-run")

    real_batch = rotate_encryption_keys.reencrypt_batch
    calls = []

    def crash_on_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the machine went down")
        return real_batch(*args, **kwargs)

    monkeypatch.setattr(rotate_encryption_keys, "reencrypt_batch", crash_on_second_batch)
    with pytest.raises(RuntimeError):
        rotate("--batch-size", "2")
    monkeypatch.undo()
    assert "4 rows to re-encrypt" in rotate("--dry-run")  # the first batch of that run stayed done

    assert "Done: re-encrypted 4 rows" in rotate()
    settings.FIELD_ENCRYPTION_KEYS = [KEY_C]
    assert everything_reads(data_under_key_a)
    runs = AuditEntry.objects.filter(kind="encryption_keys_rotated").order_by("id")
    assert [(e.details["rows"], e.details["rows_left"]) for e in runs] == [(4, 6), (2, 4), (4, 0)]


def test_rotation_stops_at_a_row_it_cannot_decrypt_naming_it(settings, data_under_key_a):
    gift_id = next(iter(data_under_key_a["gifts"]))
    with connection.cursor() as cursor:
        cursor.execute("SELECT message FROM gifting_gift WHERE id = %s", [gift_id.hex])
        stored = cursor.fetchone()[0]
        tampered = stored[:-10] + ("A" if stored[-10] != "A" else "B") + stored[-9:]
        cursor.execute("UPDATE gifting_gift SET message = %s WHERE id = %s", [tampered, gift_id.hex])
    settings.FIELD_ENCRYPTION_KEYS = [KEY_B, KEY_A]

    with pytest.raises(CommandError, match=f"gifting.Gift {gift_id}, column message: .*altered or is corrupt"):
        rotate("--batch-size", "100")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "--batch-size must be between 1 and 10000, not 0"),
        (["--batch-size", "10001"], "--batch-size must be between 1 and 10000"),
        (["--limit", "0"], "--limit must be at least 1, not 0"),
        (["--batch-size", "lots"], "invalid int value: 'lots'"),
    ],
)
def test_rotation_options_are_checked(db, args, message):
    with pytest.raises(CommandError, match=message):
        rotate(*args)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL; SQLite locks the file")
@pytest.mark.django_db(transaction=True)
def test_rotation_waits_for_a_transaction_holding_a_row_and_does_not_overwrite_its_change(settings, make_user):
    """A batch locks its rows before reading them: it cannot write back a value read before another's commit."""
    settings.FIELD_ENCRYPTION_KEYS = [KEY_A]
    gift = gift_row(make_user(), recipient_email="held@example.com", message="in flight")
    settings.FIELD_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    outcome = {}

    def run_rotation():
        try:
            outcome["output"] = rotate()
        except BaseException as exc:
            outcome["error"] = exc
            raise
        finally:
            connection.close()

    with transaction.atomic():
        locked = Gift.objects.select_for_update().get(id=gift.id)  # as gift_lock() does, e.g. while sending
        rotation = threading.Thread(target=run_rotation)
        rotation.start()
        wait_until(lambda: _waits_for_a_row_lock() or outcome, message="the rotation did not wait for the row lock")
        assert not outcome, outcome
        locked.attempts = 1
        locked.message = "changed meanwhile"  # an encrypted column, written under the new key
        locked.save(update_fields=["attempts", "message"])
    rotation.join(timeout=30)

    assert "Done: re-encrypted 1 rows" in outcome["output"]
    settings.FIELD_ENCRYPTION_KEYS = [KEY_B]
    gift.refresh_from_db()
    assert (gift.attempts, gift.recipient_email, gift.message) == (1, "held@example.com", "changed meanwhile")


def _waits_for_a_row_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # else a transaction sees one snapshot of the activity
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


# --- (c) Lookups by blind index -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variants",
    [
        ["yan+a@example.com", "yan+b@example.com", "Yan+c@Example.com"],
        ["J.O.Hn@GoogleMail.com", "john+x@gmail.com", "john@gmail.com"],
        ["yan@example.com", "YAN@example.com", "Yan@EXAMPLE.com"],
    ],
    ids=["plus-tags", "gmail-dots", "letter-case"],
)
def test_fan_in_counts_address_variants_as_one_recipient(make_user, settings, variants):
    settings.FRAUD_FANIN_SENDERS = 3
    gifts = [
        gift_create(sender=make_user(), recipient_email=address, amount=Decimal("10"), currency="EUR")
        for address in variants
    ]

    signals = [[s["rule"] for s in RiskAssessment.objects.get(gift=gift).signals] for gift in gifts]
    assert ["fan_in" in rules for rules in signals] == [False, False, True]
    assert len({gift.recipient_index for gift in gifts}) == 1
    index = gifts[0].recipient_index
    since = timezone.now() - selectors.REVIEW_HISTORY_PERIOD
    assert selectors.recipient_histories(recipient_indexes=[index], since=since)[index] == {"gifts": 3, "senders": 3}


def test_the_review_queue_counts_variants_of_a_recipient_as_one(make_user, admin_client, settings):
    settings.FRAUD_FANIN_SENDERS = 3
    month_ago = timezone.now() - timedelta(days=30)  # old accounts: fan-in holds the third gift, not rejects it

    def send(address):
        sender = make_user(date_joined=month_ago)
        return gift_create(sender=sender, recipient_email=address, amount=Decimal("600"), currency="EUR")

    held = [send(address) for address in ["yan+a@example.com", "yan+b@example.com", "Yan+c@Example.com"]]
    send("someone.else@example.com")
    assert {gift.status for gift in held} == {GiftStatus.HELD}

    queue = admin_client.get("/admin/gifting/giftreview/").content.decode()
    gift_page = admin_client.get(f"/admin/gifting/giftreview/{held[0].pk}/change/").content.decode()

    # One pseudonym for the three spellings, in the list; the recipient's history on each gift's page.
    tags = {recipient_tag(email=gift.recipient_email, wallet="") for gift in held}
    assert len(tags) == 1
    assert queue.count(f"#{tags.pop()}") == 3
    assert "3 gifts from 3 senders" in gift_page


def test_a_recipient_index_is_not_the_same_for_different_recipients(user):
    first = gift_row(user, recipient_email="ann@example.com")
    second = gift_row(user, recipient_email="anne@example.com")
    wallet = gift_row(user, recipient_email="", recipient_wallet=CHECKSUMMED)

    assert len({first.recipient_index, second.recipient_index, wallet.recipient_index}) == 3
    assert all(len(gift.recipient_index) == 64 for gift in (first, second, wallet))


def test_a_voucher_is_found_by_its_code_as_typed_and_codes_stay_unique(user):
    voucher = voucher_issue_for_gift(gift=gift_row(user))
    typed = " " + voucher.code.lower().replace("-", " - ") + " "

    assert voucher_find_by_code(code=typed) == voucher
    assert voucher_find_by_code(code="AAAA-BBBB-CCCC-DDDD-EEEE") is None
    other = gift_row(user)
    with pytest.raises(IntegrityError), transaction.atomic():
        Voucher.objects.create(gift=other, code=voucher.code, amount=1, currency="EUR", expires_at=voucher.expires_at)
