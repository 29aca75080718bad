"""Voucher codes are encrypted at rest; their uniqueness and lookups move to a blind index, `code_index`.

The code column first becomes plain text without its unique constraint, then each
row is encrypted and indexed in batches, then the index becomes unique.
Backwards, codes are decrypted before the column narrows and is unique again.
"""

from django.db import migrations, models

import core.crypto
from vouchers.codes import code_index

BATCH_SIZE = 500


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


def encrypt_codes(apps, schema_editor):
    Voucher = apps.get_model("vouchers", "Voucher")
    for rows in batches(Voucher.objects.only("pk", "code")):
        for voucher in rows:
            voucher.code_index = code_index(voucher.code)
            voucher.code = core.crypto.encrypt(voucher.code)
        Voucher.objects.bulk_update(rows, ["code", "code_index"])


def decrypt_codes(apps, schema_editor):
    Voucher = apps.get_model("vouchers", "Voucher")
    for rows in batches(Voucher.objects.only("pk", "code")):
        for voucher in rows:
            voucher.code = core.crypto.decrypt(voucher.code)
        Voucher.objects.bulk_update(rows, ["code"])


class Migration(migrations.Migration):
    dependencies = [("vouchers", "0001_initial")]

    operations = [
        migrations.AlterField(model_name="voucher", name="code", field=models.TextField()),
        migrations.AddField(
            model_name="voucher",
            name="code_index",
            field=models.CharField(default="", editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.RunPython(encrypt_codes, decrypt_codes),
        migrations.AlterField(model_name="voucher", name="code", field=core.crypto.EncryptedTextField(max_length=32)),
        migrations.AlterField(
            model_name="voucher",
            name="code_index",
            field=models.CharField(editable=False, max_length=64, unique=True),
        ),
    ]
