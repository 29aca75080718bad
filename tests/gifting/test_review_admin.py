"""The admin review queue: what reviewers see, the filters, and approve / reject with a reason."""

import re
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from audit.models import AuditEntry, AuditKind
from core.masking import recipient_tag
from fraud.decisions import decide
from fraud.models import RiskAssessment, SenderLimits
from fraud.rules import Signal
from gifting.models import Gift, GiftStatus, HoldReason
from gifting.review_admin import explain_score
from gifting.services.holds import gift_approve, gift_reject, gifts_release_ended_holds
from gifting.services.intake import gift_create
from tests.factories import gift_row

QUEUE = "/admin/gifting/giftreview/"


def change_url(gift) -> str:
    return f"{QUEUE}{gift.pk}/change/"


def tag_of(address: str) -> str:
    return recipient_tag(email=address, wallet="")


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


def test_the_queue_shows_held_gifts_with_signals_and_recipient_pseudonyms(reviewer_client, gifts):
    response = reviewer_client.get(QUEUE)

    assert shown(response, gifts) == {"delay", "approval", "fanin"}
    page = response.content.decode()
    carol, dave = tag_of("carol@example.com"), tag_of("dave@example.com")
    assert carol != dave
    assert page.count(f'c***@example.com</span> <span class="review-tag">· #{carol}') == 1
    assert page.count(f'd***@example.com</span> <span class="review-tag">· #{dave}') == 2  # fan-in: one recipient
    assert "carol@example.com" not in page and "dave@example.com" not in page
    assert "new_account, high_value" in page and "fan_in" in page
    assert "approve_selected" in page and "reject_selected" in page


def test_a_gifts_page_shows_the_histories(reviewer_client, gifts):
    page = reviewer_client.get(change_url(gifts["delay"])).content.decode()
    assert "1 delivered, 1 held, 1 queued" in page  # olivia's history

    page = reviewer_client.get(change_url(gifts["fanin"])).content.decode()
    assert "2 gifts from 2 senders" in page  # dave's
    assert f"same_recipient={gifts['fanin'].pk}" in page


def test_the_same_recipient_link_lists_every_gift_to_that_recipient(reviewer_client, gifts):
    for name in ("fanin", "approval"):
        response = reviewer_client.get(f"{QUEUE}?queue=all&same_recipient={gifts[name].pk}")
        assert shown(response, gifts) == {"approval", "fanin"}
    assert shown(reviewer_client.get(f"{QUEUE}?queue=all&same_recipient={uuid.uuid4()}"), gifts) == set()


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
    assert "Approved 2 gifts." in reviewer_client.get(response.url).content.decode()


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
    assert "Approved 1 gift." in page
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


# --- The "Reviewed or released" view, and the wording ---------------------------------------------------


def row_of(page: str, gift) -> str:
    """The text of the gift's row in the list, tags stripped."""
    [row] = re.findall(rf'<tr>(?:(?!</tr>).)*value="{gift.pk}"(?:(?!</tr>).)*</tr>', page, re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", row).split())


def test_the_reviewed_view_shows_each_decision_its_reviewer_time_and_reason(
    reviewer_client, reviewer, gifts, make_user, settings
):
    gift_reject(gift_id=gifts["approval"].id, reviewer=reviewer, reason="Mule account")
    gift_approve(gift_id=gifts["fanin"].id, reviewer=reviewer, reason="Known family")
    later = timezone.now() + timedelta(seconds=settings.FRAUD_HOLD_PERIOD + 1)
    assert gifts_release_ended_holds(now=later) == 1  # the delayed gift's period ended
    settings.FRAUD_VERIFY_RECIPIENT_THRESHOLD = Decimal("50.00")
    confirmed = send(
        make_user(username="mia", date_joined=timezone.now() - timedelta(days=30)), "ivy@example.com", "60"
    )
    RiskAssessment.objects.filter(gift=confirmed).update(released_at=timezone.now())  # the recipient's link did this
    decided = {**gifts, "confirmed": confirmed}

    response = reviewer_client.get(f"{QUEUE}?queue=reviewed")

    assert shown(response, decided) == {"approval", "fanin", "delay", "confirmed"}
    page = response.content.decode()
    for header in (">decision<", ">by<", ">when<", ">reason<"):
        assert header in page.lower()
    today = timezone.localtime().strftime("%Y-%m-%d")
    assert f"Rejected rita {today}" in row_of(page, gifts["approval"])
    assert row_of(page, gifts["approval"]).endswith("Mule account")
    assert f"Approved rita {today}" in row_of(page, gifts["fanin"])
    assert row_of(page, gifts["fanin"]).endswith("Known family")
    assert "Released at the period's end the sweeper" in row_of(page, gifts["delay"]).replace("&#x27;", "'")
    assert "Confirmed by the recipient the recipient" in row_of(page, confirmed)
    assert "4 gifts" in page and "<title>Reviewed or released" in page


def test_the_wording_counts_gifts_and_never_says_held_gift(reviewer_client, reviewer, gifts):
    gift_approve(gift_id=gifts["fanin"].id, reviewer=reviewer)
    reviewed = reviewer_client.get(f"{QUEUE}?queue=reviewed").content.decode()
    waiting = reviewer_client.get(QUEUE).content.decode()
    gift_page = reviewer_client.get(change_url(gifts["fanin"])).content.decode()

    assert re.search(r"\b1 gift\b", reviewed) and re.search(r"\b2 gifts\b", waiting)
    for page in (reviewed, waiting, gift_page):
        assert "held gift" not in page.lower() and not re.search(r"\d review queue", page, re.I)
        assert not re.search(r"Select (held )?gift", page)
    assert "<h1>Waiting for review</h1>" in waiting
    assert f"<h1>Gift of {gifts['fanin'].amount} EUR from oscar</h1>" in gift_page
    assert ">Decision</h2>" in gift_page and "Approved" in gift_page
    assert ">Decision</h2>" not in reviewer_client.get(change_url(gifts["delay"])).content.decode()  # none yet


# --- The score breakdown -----------------------------------------------------------------------------------


def breakdown(page: str) -> str:
    """The score line of a gift's page, as text."""
    html = re.search(r'<p class="review-sum" id="score-breakdown">(.*?)</p>', page, re.S).group(1)
    return " ".join(re.sub(r"<[^>]+>", " ", html).replace("&lt;", "<").split())


def test_a_gifts_page_shows_the_score_breakdown_against_the_thresholds(reviewer_client, gifts):
    page = reviewer_client.get(change_url(gifts["approval"])).content.decode()

    assert "<li><b>new_account</b> (+30): Account is 0 days old.</li>" in page
    assert "<li><b>high_value</b> (+20): " in page
    assert breakdown(page) == "new_account +30, high_value +20 = 50 ≥ review score 50 → needs approval"
    assert "review score 50, reject score 100" in page

    delayed = reviewer_client.get(change_url(gifts["delay"])).content.decode()
    assert breakdown(delayed) == (
        "high_value +20 = 20 < review score 50, and 250.00 EUR ≥ delay threshold 200 "
        "→ held for 1 h, then released unless rejected"
    )


def test_a_gifts_page_says_when_the_settings_changed_since_it_was_assessed(reviewer_client, gifts, settings):
    settings.FRAUD_REVIEW_SCORE, settings.FRAUD_APPROVAL_THRESHOLD = 60, Decimal("1000")

    page = reviewer_client.get(change_url(gifts["approval"])).content.decode()

    assert "= 50 < review score 60, and 600.00 EUR ≥ delay threshold 200 → held for 1 h" in breakdown(page)
    assert "The settings have changed since the gift was assessed; then it read: Needs approval." in page


SIGNAL_SETS = [
    [],
    [{"rule": "high_value", "score": 20, "reason": ""}],
    [{"rule": "new_account", "score": 30, "reason": ""}, {"rule": "high_value", "score": 20, "reason": ""}],
    [{"rule": "fan_in", "score": 60, "reason": ""}],
    [{"rule": "velocity", "score": 60, "reason": ""}, {"rule": "new_account", "score": 30, "reason": ""}],
    [{"rule": "velocity", "score": 60, "reason": ""}, {"rule": "fan_in", "score": 60, "reason": ""}],
]


@pytest.mark.parametrize("signals", SIGNAL_SETS)
@pytest.mark.parametrize("amount", ["10", "199.99", "200", "499.99", "500", "1500"])
def test_the_explanation_reaches_the_verdict_fraud_reaches(signals, amount):
    verdict = decide(
        amount=Decimal(amount),
        signals=[Signal(s["rule"], s["score"], s["reason"]) for s in signals],
        recipient_is_email=True,
        now=timezone.now(),
    )

    explained = explain_score(signals=signals, amount=Decimal(amount), currency="EUR")

    assert (explained.decision, explained.hold_tier) == (verdict.decision, verdict.hold_tier)
    assert explained.sum.endswith(f"= {verdict.score}") or (verdict.score == 0 and "score 0" in explained.sum)


# --- The full address ----------------------------------------------------------------------------------------


def test_only_staff_who_may_see_addresses_get_the_reveal_button(reviewer_client, client, make_user, gifts):
    gift = gifts["approval"]
    assert 'id="reveal-recipient"' not in reviewer_client.get(change_url(gift)).content.decode()

    staff = with_permissions(
        make_user(username="sam", is_staff=True), "view_giftreview", "view_gift", "view_recipient_address"
    )
    client.force_login(staff)
    page = client.get(change_url(gift)).content.decode()
    assert f'action="/admin/gifting/gift/{gift.pk}/reveal-recipient/"' in page
    assert "dave@example.com" not in page

    revealed = client.post(f"/admin/gifting/gift/{gift.pk}/reveal-recipient/", follow=True).content.decode()
    assert "dave@example.com" in revealed
    assert AuditEntry.objects.filter(kind=AuditKind.RECIPIENT_ADDRESS_VIEWED, subject=str(gift.pk)).count() == 1
