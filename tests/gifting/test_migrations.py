"""Migrating a database populated under the old layout (review queue in fraud, `held` without a reason)."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

OLD = [("gifting", "0002_gift_event_append_only_trigger"), ("fraud", "0001_initial"), ("vouchers", "0001_initial")]


def migrate(targets=()):
    """Migrate our apps to `targets` (default: their latest), every other app to its latest; the models then."""
    executor = MigrationExecutor(connection)
    ours = {app for app, _ in targets}
    others = [node for node in executor.loader.graph.leaf_nodes() if node[0] not in ours]
    executor.migrate([*targets, *others])
    executor.loader.build_graph()
    return executor.loader.project_state([*targets, *others]).apps


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
