"""Gift events carry a keyed hash chained to the gift's previous event (tamper evidence)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("gifting", "0004_dead_letter_events")]

    operations = [
        migrations.AddField(
            model_name="giftevent",
            name="chain_hash",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
    ]
