"""Recipient, message and the cached response body are encrypted at rest; gifts get a recipient blind index.

Each column first becomes plain text (wide enough for a ciphertext), then the rows
are encrypted in batches and their indexes filled, then the column takes its
encrypted field. Backwards, the rows are decrypted before the columns narrow again.
The keys are the settings' (core.crypto); the index is computed by the code that
looks it up, so the two always agree.
"""

import django.core.validators
from django.db import migrations, models

import core.crypto
from core.recipients import InvalidRecipient

BATCH_SIZE = 500
GIFT_COLUMNS = ("recipient_email", "recipient_wallet", "message")


def batches(queryset):
    """The queryset's rows in primary-key order, BATCH_SIZE at a time."""
    queryset = queryset.order_by("pk")
    last = None
    while True:
        rows = list((queryset if last is None else queryset.filter(pk__gt=last))[:BATCH_SIZE])
        if not rows:
            return
        yield rows
        last = rows[-1].pk


def index_of(email, wallet):
    """The recipient's blind index; an address today's rules refuse (stored before they were
    tightened) is indexed on its trimmed lower-case form, so it still finds its own gifts."""
    try:
        return core.crypto.recipient_index(email=email, wallet=wallet)
    except InvalidRecipient:
        fallback = f"email:{email.strip().lower()}" if email else f"wallet:{wallet.strip().lower()}"
        return core.crypto.blind_index(fallback, purpose="recipient")


def convert(model, columns, transform):
    """Apply `transform` to every non-empty value of `columns`, batch by batch."""
    for rows in batches(model.objects.only("pk", *columns)):
        for row in rows:
            for column in columns:
                value = getattr(row, column)
                if value:
                    setattr(row, column, transform(value))
        model.objects.bulk_update(rows, columns)


def encrypt_rows(apps, schema_editor):
    Gift = apps.get_model("gifting", "Gift")
    for rows in batches(Gift.objects.only("pk", *GIFT_COLUMNS)):
        for gift in rows:
            if bool(gift.recipient_email) != bool(gift.recipient_wallet):
                gift.recipient_index = index_of(gift.recipient_email, gift.recipient_wallet)
            for column in GIFT_COLUMNS:
                if getattr(gift, column):
                    setattr(gift, column, core.crypto.encrypt(getattr(gift, column)))
        Gift.objects.bulk_update(rows, [*GIFT_COLUMNS, "recipient_index"])
    convert(apps.get_model("gifting", "IdempotencyKey"), ["response_body"], core.crypto.encrypt)


def decrypt_rows(apps, schema_editor):
    convert(apps.get_model("gifting", "Gift"), GIFT_COLUMNS, core.crypto.decrypt)
    convert(apps.get_model("gifting", "IdempotencyKey"), ["response_body"], core.crypto.decrypt)


class Migration(migrations.Migration):
    dependencies = [("gifting", "0005_gift_event_chain")]

    operations = [
        migrations.AddField(
            model_name="gift",
            name="recipient_index",
            field=models.CharField(blank=True, db_index=True, default="", editable=False, max_length=64),
        ),
        migrations.AlterField(
            model_name="gift", name="recipient_email", field=models.TextField(blank=True, default="")
        ),
        migrations.AlterField(
            model_name="gift", name="recipient_wallet", field=models.TextField(blank=True, default="")
        ),
        migrations.AlterField(model_name="gift", name="message", field=models.TextField(blank=True, default="")),
        migrations.AlterField(
            model_name="idempotencykey", name="response_body", field=models.TextField(blank=True, null=True)
        ),
        migrations.RunPython(encrypt_rows, decrypt_rows),
        migrations.AlterField(
            model_name="gift",
            name="recipient_email",
            field=core.crypto.EncryptedTextField(
                blank=True, default="", max_length=254, validators=[django.core.validators.EmailValidator()]
            ),
        ),
        migrations.AlterField(
            model_name="gift",
            name="recipient_wallet",
            field=core.crypto.EncryptedTextField(blank=True, default="", max_length=42),
        ),
        migrations.AlterField(
            model_name="gift",
            name="message",
            field=core.crypto.EncryptedTextField(blank=True, default="", max_length=500),
        ),
        migrations.AlterField(
            model_name="idempotencykey",
            name="response_body",
            field=core.crypto.EncryptedJSONField(blank=True, null=True),
        ),
    ]
