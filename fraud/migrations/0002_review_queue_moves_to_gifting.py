"""The review queue proxy and the review permission now belong to gifting (see gifting 0003)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("fraud", "0001_initial"),
        ("gifting", "0003_hold_reason_and_review_queue"),
    ]

    operations = [
        migrations.DeleteModel(name="GiftReview"),
        migrations.AlterModelOptions(name="riskassessment", options={}),
    ]
