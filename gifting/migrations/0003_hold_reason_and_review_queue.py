"""Held gifts say why they wait (hold, hold_until), and the review queue moves from fraud to gifting.

Existing held gifts take their reason from their risk assessment: held by the
rules and not yet released → its tier (and the tier's release time); released
but still held → waiting for the recipient. The review queue's content type
and the review permission move with their permission assignments intact.
"""

from django.db import migrations, models
from django.db.models import Q

HELD_REASONS = ["delay", "approval", "recipient"]


def fill_hold_reasons(apps, schema_editor):
    Gift = apps.get_model("gifting", "Gift")
    RiskAssessment = apps.get_model("fraud", "RiskAssessment")
    for gift in Gift.objects.filter(status="held").iterator():
        risk = RiskAssessment.objects.filter(gift_id=gift.id).first()
        if risk is None:
            gift.hold = "approval"  # no record of why: a person decides
        elif risk.decision == "hold" and risk.released_at is None and risk.hold_tier:
            gift.hold, gift.hold_until = risk.hold_tier, risk.release_at
        else:
            gift.hold = "recipient"
        gift.save(update_fields=["hold", "hold_until"])


def _move_review_queue(apps, *, source: str, target: str) -> None:
    """Relabel the queue's content type and hand the review permission over, keeping every assignment."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    queue = ContentType.objects.filter(app_label=source, model="giftreview").first()
    if queue is None:
        return  # a fresh database: post_migrate creates the content types and permissions afterwards
    queue.app_label = target
    queue.save(update_fields=["app_label"])
    risk = ContentType.objects.get(app_label="fraud", model="riskassessment")
    old_owner, new_owner = (risk, queue) if target == "gifting" else (queue, risk)
    Permission.objects.filter(content_type=old_owner, codename="review_gift").update(content_type=new_owner)


def move_review_queue_to_gifting(apps, schema_editor):
    _move_review_queue(apps, source="fraud", target="gifting")


def move_review_queue_back_to_fraud(apps, schema_editor):
    _move_review_queue(apps, source="gifting", target="fraud")


class Migration(migrations.Migration):
    dependencies = [
        ("gifting", "0002_gift_event_append_only_trigger"),
        ("fraud", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.AddField(
            model_name="gift",
            name="hold",
            field=models.CharField(
                blank=True,
                choices=[
                    ("", "Not held"),
                    ("delay", "Hold period: released automatically unless blocked"),
                    ("approval", "Waiting for a reviewer's approval"),
                    ("recipient", "Waiting for the recipient to confirm their address"),
                ],
                default="",
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="gift",
            name="hold_until",
            field=models.DateTimeField(blank=True, help_text="When a hold period ends by itself.", null=True),
        ),
        migrations.RunPython(fill_hold_reasons, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="gift",
            constraint=models.CheckConstraint(
                condition=Q(status="held", hold__in=HELD_REASONS) | (~Q(status="held") & Q(hold="")),
                name="gift_held_has_reason",
            ),
        ),
        migrations.AddConstraint(
            model_name="gift",
            constraint=models.CheckConstraint(
                condition=~Q(hold="delay") | Q(hold_until__isnull=False), name="gift_hold_period_has_end"
            ),
        ),
        migrations.CreateModel(
            name="GiftReview",
            fields=[],
            options={
                "verbose_name": "held gift",
                "verbose_name_plural": "review queue",
                "permissions": [("review_gift", "Can approve or reject held gifts")],
                "proxy": True,
                "indexes": [],
                "constraints": [],
            },
            bases=("gifting.gift",),
        ),
        migrations.RunPython(move_review_queue_to_gifting, move_review_queue_back_to_fraud),
    ]
