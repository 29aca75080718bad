"""Gift events carry a keyed hash chained to the gift's previous event (tamper evidence); who may see
a full recipient address in the admin is a permission of its own.

Existing events are chained here, gift by gift, in the order they were written.
The append-only trigger refuses that UPDATE, so it is switched off for the
backfill and on again in the same transaction (PostgreSQL); SQLite's trigger is
dropped and created again, also because SQLite rebuilds the table to add a
column, which drops the table's triggers.
"""

from django.db import migrations, models

import gifting.models
from audit.chain import chain_key, gift_anchor, link_hash
from gifting.events import event_link_fields

BATCH_SIZE = 500
TRIGGER_OFF = {
    "postgresql": ["ALTER TABLE gifting_giftevent DISABLE TRIGGER gifting_giftevent_append_only"],
    "sqlite": ["DROP TRIGGER IF EXISTS gifting_giftevent_no_update"],
}
TRIGGER_ON = {
    "postgresql": ["ALTER TABLE gifting_giftevent ENABLE TRIGGER gifting_giftevent_append_only"],
    # As in 0002: SQLite (development only) guards updates.
    "sqlite": [
        "CREATE TRIGGER gifting_giftevent_no_update BEFORE UPDATE ON gifting_giftevent "
        "BEGIN SELECT RAISE(ABORT, 'gift events are append-only'); END;"
    ],
}


def _execute(schema_editor, statements: dict) -> None:
    for statement in statements.get(schema_editor.connection.vendor, []):
        schema_editor.execute(statement)


def sqlite_trigger_back(apps, schema_editor):
    """Unapplying rebuilds SQLite's table again (dropping its trigger): put the trigger back last."""
    if schema_editor.connection.vendor == "sqlite":
        _execute(schema_editor, TRIGGER_OFF)
        _execute(schema_editor, TRIGGER_ON)


def chain_existing_events(apps, schema_editor):
    Gift = apps.get_model("gifting", "Gift")
    GiftEvent = apps.get_model("gifting", "GiftEvent")
    key = chain_key()
    _execute(schema_editor, TRIGGER_OFF)
    last = None
    while True:
        ids = Gift.objects.order_by("id").values_list("id", flat=True)
        batch = list((ids if last is None else ids.filter(id__gt=last))[:BATCH_SIZE])
        if not batch:
            break
        last = batch[-1]
        heads = {}
        events = list(GiftEvent.objects.filter(gift_id__in=batch).order_by("gift_id", "id"))
        for event in events:
            previous = heads.get(event.gift_id, gift_anchor(event.gift_id))
            event.chain_hash = link_hash(previous, event_link_fields(event), key=key)
            heads[event.gift_id] = event.chain_hash
        GiftEvent.objects.bulk_update(events, ["chain_hash"], batch_size=BATCH_SIZE)
    _execute(schema_editor, TRIGGER_ON)


class Migration(migrations.Migration):
    dependencies = [("gifting", "0004_dead_letter_events")]

    operations = [
        migrations.RunPython(migrations.RunPython.noop, sqlite_trigger_back),
        migrations.AddField(
            model_name="giftevent",
            name="chain_hash",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.AlterField(
            model_name="giftevent",
            name="at",
            field=models.DateTimeField(db_index=True, default=gifting.models.event_time, editable=False),
        ),
        migrations.AlterModelOptions(
            name="gift",
            options={
                "ordering": ["-created_at", "-id"],
                "permissions": [
                    ("redrive_gift", "Can redrive dead-lettered gifts"),
                    ("view_recipient_address", "Can view full recipient addresses"),
                ],
            },
        ),
        migrations.RunPython(chain_existing_events, migrations.RunPython.noop),
    ]
