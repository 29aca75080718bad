"""The admin review queue: what reviewers see, the filters, and approve / reject with a reason."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from fraud.models import RiskAssessment, SenderLimits
from gifting.models import Gift, GiftStatus, HoldReason
from gifting.services.intake import gift_create
from tests.factories import gift_row

QUEUE = "/admin/gifting/giftreview/"


def with_permissions(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return type(user).objects.get(pk=user.pk)  # a fresh permission cache


def send(sender, recipient, amount):
    return gift_create(sender=sender, recipient_email=recipient, amount=Decimal(amount), currency="EUR")


@pytest.fixture
def gifts(make_user, settings):
    """Held: delay (250, high value), approval (600 from a new account), fanin (2nd sender to dave). Plus two others."""
    settings.FRAUD_FANIN_SENDERS = 2
    month_ago = timezone.now() - timedelta(days=30)
    olivia = make_user(username="olivia", date_joined=month_ago)
    gifts = {
        "delay": send(olivia, "carol@example.com", "250.00"),
        "approval": send(make_user(username="nina"), "dave@example.com", "600.00"),
        "fanin": send(make_user(username="oscar", date_joined=month_ago), "dave@example.com", "100.00"),
        "queued": send(olivia, "erin@example.com", "10.00"),
        "delivered": send(olivia, "frank@example.com", "20.00"),
    }
    Gift.objects.filter(id=gifts["delivered"].id).update(status=GiftStatus.DELIVERED, delivered_at=timezone.now())
    assert [gifts[name].status for name in ("delay", "approval", "fanin")] == ["held"] * 3
    return gifts


@pytest.fixture
def reviewer(make_user):
    return with_permissions(make_user(username="rita", is_staff=True), "view_giftreview", "review_gift")


@pytest.fixture
def reviewer_client(client, reviewer):
    client.force_login(reviewer)
    return client


def shown(response, gifts) -> set[str]:
    assert response.status_code == 200
    return {name for name, gift in gifts.items() if str(gift.pk) in response.content.decode()}


def status_of(gift) -> str:
    return Gift.objects.get(id=gift.id).status


def post_action(client, action, gifts, *, follow=False, **data):
    data = {"action": action, "_selected_action": [str(g.pk) for g in gifts], **data}
    return client.post(QUEUE, data, follow=follow)


def test_the_queue_shows_held_gifts_with_signals_and_history(reviewer_client, gifts):
    response = reviewer_client.get(QUEUE)

    assert shown(response, gifts) == {"delay", "approval", "fanin"}
    page = response.content.decode()
    assert "c***@example.com" in page and "d***@example.com" in page
    assert "carol@example.com" not in page and "dave@example.com" not in page
    assert "new_account, high_value" in page and "fan_in" in page
    assert "1 delivered, 1 held, 1 queued" in page  # olivia's history
    assert "2 gifts from 2 senders" in page  # dave's
    assert "approve_selected" in page and "reject_selected" in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("risk__hold_tier__exact=delay", {"delay"}),
        ("risk__hold_tier__exact=approval", {"approval", "fanin"}),
        ("signal=new_account", {"approval"}),
        ("signal=high_value", {"delay", "approval"}),
        ("signal=fan_in", {"fanin"}),
        ("signal=velocity", set()),
        ("queue=all", {"delay", "approval", "fanin", "queued", "delivered"}),
        ("queue=reviewed", set()),
    ],
)
def test_the_queue_filters(reviewer_client, gifts, query, expected):
    assert shown(reviewer_client.get(f"{QUEUE}?{query}"), gifts) == expected


def test_gifts_without_an_assessment_are_not_listed_as_reviewed(reviewer_client, gifts, make_user):
    legacy = gift_row(make_user(), status=GiftStatus.DELIVERED, delivered_at=timezone.now())  # before fraud existed
    assert shown(reviewer_client.get(f"{QUEUE}?queue=reviewed"), {"legacy": legacy}) == set()


def test_approve_selected_approves_each_gift(reviewer_client, reviewer, gifts):
    response = post_action(reviewer_client, "approve_selected", [gifts["delay"], gifts["approval"]], index=0)

    assert response.status_code == 302
    assert (status_of(gifts["delay"]), status_of(gifts["approval"])) == ("queued", "queued")
    assert RiskAssessment.objects.get(gift=gifts["approval"]).reviewed_by == reviewer
    assert "Approved 2 gift(s)." in reviewer_client.get(response.url).content.decode()


def test_reject_selected_first_asks_for_a_reason(reviewer_client, gifts):
    response = post_action(reviewer_client, "reject_selected", [gifts["approval"]])

    assert response.status_code == 200
    assert "admin/gifting/reject_gifts.html" in [t.name for t in response.templates]
    page = response.content.decode()
    assert 'name="reason"' in page and 'name="confirm"' in page
    assert f'value="{gifts["approval"].pk}"' in page
    assert status_of(gifts["approval"]) == "held"


def test_reject_selected_with_a_reason_rejects(reviewer_client, reviewer, gifts):
    response = post_action(
        reviewer_client, "reject_selected", [gifts["approval"]], confirm="Reject", reason="Mule account"
    )

    assert response.status_code == 302
    assert status_of(gifts["approval"]) == "rejected"
    risk = Gift.objects.get(id=gifts["approval"].id).risk
    assert (risk.review_outcome, risk.reviewed_by, risk.review_reason) == ("rejected", reviewer, "Mule account")
    assert shown(reviewer_client.get(QUEUE), gifts) == {"delay", "fanin"}
    assert shown(reviewer_client.get(f"{QUEUE}?queue=reviewed"), gifts) == {"approval"}


@pytest.mark.parametrize("reason", ["", "   "])
def test_reject_selected_without_a_reason_rejects_nothing(reviewer_client, gifts, reason):
    response = post_action(reviewer_client, "reject_selected", [gifts["approval"]], confirm="Reject", reason=reason)

    assert response.status_code == 200
    assert "admin/gifting/reject_gifts.html" in [t.name for t in response.templates]
    assert "This field is required." in response.content.decode()
    assert status_of(gifts["approval"]) == "held"


def test_staff_without_the_review_permission_get_no_actions(client, make_user, gifts):
    client.force_login(with_permissions(make_user(is_staff=True), "view_giftreview"))

    page = client.get(QUEUE).content.decode()
    assert str(gifts["approval"].pk) in page
    assert "approve_selected" not in page and "reject_selected" not in page

    for action, extra in [("approve_selected", {}), ("reject_selected", {"confirm": "Reject", "reason": "x"})]:
        post_action(client, action, [gifts["approval"]], **extra)
    assert status_of(gifts["approval"]) == "held"
    assert Gift.objects.get(id=gifts["approval"].id).risk.review_outcome == ""


def test_a_reviewer_cannot_approve_their_own_gift(reviewer_client, reviewer, gifts):
    own = send(reviewer, "grace@example.com", "600.00")

    response = post_action(reviewer_client, "approve_selected", [own, gifts["delay"]], follow=True)

    page = response.content.decode()
    assert "You cannot review your own gift." in page
    assert "Approved 1 gift(s)." in page
    assert (status_of(own), status_of(gifts["delay"])) == ("held", "queued")


@pytest.fixture
def superuser_client(client, make_user):
    client.force_login(make_user(is_staff=True, is_superuser=True))
    return client


def test_sender_limits_can_be_added_in_the_admin(superuser_client, user):
    add = "/admin/fraud/senderlimits/add/"
    assert 'name="daily_count"' in superuser_client.get(add).content.decode()

    response = superuser_client.post(add, {"user": user.pk, "daily_count": 1, "note": "Chargebacks"})

    assert response.status_code == 302
    limits = SenderLimits.objects.get(user=user)
    assert (limits.daily_count, limits.max_amount, limits.note) == (1, None, "Chargebacks")


@pytest.mark.parametrize("path", ["/admin/axes/accessattempt/", "/admin/fraud/riskassessment/", QUEUE])
def test_admin_pages_load_for_a_superuser(superuser_client, path):
    assert superuser_client.get(path).status_code == 200


def test_an_approved_gift_waiting_for_its_recipient_leaves_the_queue(reviewer_client, reviewer, gifts):
    approved, now = gifts["approval"], timezone.now()
    RiskAssessment.objects.filter(gift=approved).update(
        review_outcome="approved", reviewed_by=reviewer, reviewed_at=now, released_at=now
    )
    # Approved and released; the worker then sent the confirmation email and held it for the recipient.
    Gift.objects.filter(id=approved.id).update(status=GiftStatus.HELD, hold=HoldReason.RECIPIENT)

    assert shown(reviewer_client.get(QUEUE), gifts) == {"delay", "fanin"}
    assert shown(reviewer_client.get(f"{QUEUE}?queue=recipient"), gifts) == {"approval"}
