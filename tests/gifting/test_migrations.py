"""Migrating a database populated under the old layout (review queue in fraud, `held` without a reason)."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from core import crypto
from gifting import models as current
from tests.migrating import migrate
from vouchers.selectors import voucher_find_by_code

OLD = [("gifting", "0002_gift_event_append_only_trigger"), ("fraud", "0001_initial"), ("vouchers", "0001_initial")]


@pytest.mark.django_db(transaction=True)
def test_old_rows_and_permission_assignments_survive_the_move():
    old = migrate(OLD)
    User = old.get_model("auth", "User")
    Permission = old.get_model("auth", "Permission")
    ContentType = old.get_model("contenttypes", "ContentType")
    Gift, Risk = old.get_model("gifting", "Gift"), old.get_model("fraud", "RiskAssessment")
    sender = User.objects.create(username="sender")
    reviewer = User.objects.create(username="reviewer", is_staff=True)
    queue_type = ContentType.objects.get(app_label="fraud", model="giftreview")
    reviewer.user_permissions.add(
        Permission.objects.get(codename="review_gift", content_type__app_label="fraud"),
        Permission.objects.get(codename="view_giftreview", content_type=queue_type),
    )
    now = timezone.now()

    def gift(status, **risk):
        row = Gift.objects.create(
            sender=sender, recipient_email="r@example.com", amount="300", currency="EUR", status=status,
            next_attempt_at=now, delivered_at=now if status == "delivered" else None,
        )  # fmt: skip
        Risk.objects.create(gift=row, **risk)
        return row.id

    delayed = gift("held", decision="hold", hold_tier="delay", release_at=now + timedelta(hours=1))
    approval = gift("held", decision="hold", hold_tier="approval")
    recipient = gift("held", decision="hold", hold_tier="approval", released_at=now, needs_recipient_verification=True)
    delivered = gift("delivered", decision="allow")

    new = migrate()

    Gift = new.get_model("gifting", "Gift")
    holds = {row.id: (row.status, row.hold, row.hold_until) for row in Gift.objects.all()}
    assert holds[delayed] == ("held", "delay", now + timedelta(hours=1))
    assert holds[approval] == ("held", "approval", None)
    assert holds[recipient] == ("held", "recipient", None)
    assert holds[delivered] == ("delivered", "", None)
    assert new.get_model("fraud", "RiskAssessment").objects.count() == 4
    reviewer = get_user_model().objects.get(username="reviewer")
    assert reviewer.has_perm("gifting.review_gift")
    assert reviewer.has_perm("gifting.view_giftreview")
    assert not new.get_model("contenttypes", "ContentType").objects.filter(app_label="fraud", model="giftreview")


BEFORE_ENCRYPTION = [("gifting", "0005_gift_event_chain"), ("vouchers", "0001_initial")]


def raw_rows(sql: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


@pytest.mark.django_db(transaction=True)
def test_plaintext_rows_end_up_encrypted_and_findable_by_their_index():
    old = migrate(BEFORE_ENCRYPTION)
    sender = old.get_model("auth", "User").objects.create(username="sender")
    Gift, Voucher = old.get_model("gifting", "Gift"), old.get_model("vouchers", "Voucher")
    now = timezone.now()

    def gift(**fields):
        return Gift.objects.create(sender=sender, amount="25", currency="EUR", next_attempt_at=now, **fields)

    by_email = gift(recipient_email="Yan+Old@Example.com", message="Happy birthday, Yan")
    by_wallet = gift(recipient_wallet="0x52908400098527886E0F7030069857D2E4169EE7")
    legacy = gift(recipient_email="bob@localhost")  # accepted before the canonical rules refused dotless hosts
    Voucher.objects.create(gift=by_email, code="K7QM-3XTA-B2CD-EFGH-JKMN", amount="25", currency="EUR",
                           expires_at=now + timedelta(days=365))  # fmt: skip
    old.get_model("gifting", "IdempotencyKey").objects.create(
        user=sender,
        key="k",
        request_fingerprint="f",
        response_status=202,
        response_body={"message": "Happy birthday, Yan"},
    )
    plaintext = ("Yan+Old@Example.com", "Happy birthday, Yan", "0x52908400098527886E0F7030069857D2E4169EE7",
                 "bob@localhost", "K7QM-3XTA-B2CD-EFGH-JKMN")  # fmt: skip

    migrate()

    stored = raw_rows("SELECT recipient_email, recipient_wallet, message, recipient_index FROM gifting_gift")
    stored += raw_rows("SELECT code, code_index FROM vouchers_voucher")
    stored += raw_rows("SELECT response_body FROM gifting_idempotencykey")
    text = repr(stored).lower()
    assert not [value for value in plaintext if value.lower() in text]
    assert "happy birthday" not in text
    assert current.Gift.objects.get(recipient_index=crypto.recipient_index(email="yan@example.com")).id == by_email.id
    assert (
        current.Gift.objects.get(recipient_index=crypto.recipient_index(wallet=by_wallet.recipient_wallet)).message
        == ""
    )
    assert current.Gift.objects.get(id=legacy.id).recipient_index  # indexed on its lower-case form
    decrypted = current.Gift.objects.get(id=by_email.id)
    assert (decrypted.recipient_email, decrypted.message) == ("Yan+Old@Example.com", "Happy birthday, Yan")
    assert voucher_find_by_code(code="k7qm 3xta b2cd efgh jkmn").gift_id == by_email.id
    assert current.IdempotencyKey.objects.get().response_body == {"message": "Happy birthday, Yan"}

    migrate(BEFORE_ENCRYPTION)  # and back: the plaintext returns

    assert raw_rows("SELECT recipient_email, message FROM gifting_gift WHERE recipient_wallet = ''") in (
        [("Yan+Old@Example.com", "Happy birthday, Yan"), ("bob@localhost", "")],
        [("bob@localhost", ""), ("Yan+Old@Example.com", "Happy birthday, Yan")],
    )
    assert raw_rows("SELECT code FROM vouchers_voucher") == [("K7QM-3XTA-B2CD-EFGH-JKMN",)]
    migrate()
