"""The per-sender anomaly score: pure, on the facts; then end to end through gift_create and the review queue."""

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from fraud import rules
from fraud.anomaly import anomaly_score
from fraud.history import RecentGifts, windows_at
from fraud.models import RiskAssessment
from gifting import selectors
from gifting.models import Gift, GiftStatus
from gifting.selectors import sender_history_for_assessment
from gifting.services.intake import gift_create
from tests.factories import gift_row

YEAR = timedelta(days=365)
# Thirty gifts of about 50, sent between 18:00 and 21:59 (UTC), to three recipients.
EVENING_REGULAR = RecentGifts(
    amounts=tuple(Decimal(a) for a in ("50", "45", "60", "50", "55", "40", "50", "52", "48", "50") * 3),
    hours=(18, 19, 20, 21, 20, 19, 18, 21, 20, 19) * 3,
    distinct_recipients=3,
    sent_to_recipient=False,
)


@pytest.fixture(autouse=True)
def anomaly_settings(settings):
    settings.FRAUD_ANOMALY_THRESHOLD = 5.0
    settings.FRAUD_ANOMALY_SCORE = 50
    settings.FRAUD_ANOMALY_MIN_HISTORY = 5
    settings.FRAUD_DELAY_THRESHOLD = Decimal("200")


def facts(amount: str, hour: int, recent: RecentGifts, account_age: timedelta = YEAR) -> rules.GiftFacts:
    """A gift with nothing else odd about it: only the anomaly rule has something to say."""
    return rules.GiftFacts(
        amount=Decimal(amount),
        account_age=account_age,
        last_hour_count=1,
        last_hour_value=Decimal(amount),
        baseline_hourly_count=Decimal("0"),
        baseline_hourly_value=Decimal("0"),
        recipient_senders=1,
        hour=hour,
        recent=recent,
    )


# --- pure ------------------------------------------------------------------------


def test_a_takeover_like_gift_scores_high_and_the_explanation_names_what_drove_it():
    result = anomaly_score(amount=Decimal("480"), hour=3, account_age=YEAR, recent=EVENING_REGULAR)

    assert result.score >= 7
    assert {f.name for f in result.features if f.points >= 1} == {"amount", "hour", "recipient"}
    assert result.explanation == (
        f"Anomaly score {result.score:.1f}: amount 480 is 9.6x this sender's median 50; "
        "sent at 03:00, outside their usual 18:00-21:00; "
        "first gift to this recipient (their 30 recent gifts went to 3 recipients)."
    )


def test_the_anomaly_rule_raises_a_signal_with_the_explanation_as_its_reason():
    signal = rules.anomaly(facts("480", 3, EVENING_REGULAR))

    assert signal is not None
    assert (signal.rule, signal.score) == ("anomaly", 50)
    assert signal.reason.startswith("Anomaly score ") and "9.6x this sender's median 50" in signal.reason
    assert [s.rule for s in rules.evaluate(facts("480", 3, EVENING_REGULAR))] == ["high_value", "anomaly"]


@pytest.mark.parametrize(
    ("amount", "hour", "known_recipient"),
    [
        pytest.param("55", 20, True, id="usual-everything"),
        pytest.param("30", 19, True, id="smaller-than-usual"),
        pytest.param("60", 20, False, id="a-new-friend"),
        pytest.param("50", 2, True, id="a-late-night"),
        pytest.param("100", 19, True, id="twice-the-usual"),
    ],
)
def test_a_typical_gift_for_the_sender_scores_low(amount, hour, known_recipient):
    recent = replace(EVENING_REGULAR, sent_to_recipient=known_recipient)

    result = anomaly_score(amount=Decimal(amount), hour=hour, account_age=YEAR, recent=recent)

    assert result.score < 4
    assert rules.anomaly(facts(amount, hour, recent)) is None


def test_one_unusual_thing_alone_is_not_an_alarm():
    for amount, hour in (("480", 20), ("55", 3)):
        assert rules.anomaly(facts(amount, hour, replace(EVENING_REGULAR, sent_to_recipient=True))) is None


def test_a_sender_with_little_history_gets_the_prior_not_a_false_alarm(settings):
    two_gifts = RecentGifts(amounts=(Decimal("20"), Decimal("25")), hours=(10, 11), distinct_recipients=1)
    assert rules.anomaly(facts("300", 3, two_gifts)) is None  # below FRAUD_ANOMALY_MIN_HISTORY: silent

    # Even once it runs, a few gifts weigh little against the prior: the same odd gift scores far
    # lower than against a long, steady history.
    settings.FRAUD_ANOMALY_MIN_HISTORY = 1
    few = RecentGifts(amounts=(Decimal("50"),) * 3, hours=(19,) * 3, distinct_recipients=1)
    many = RecentGifts(amounts=(Decimal("50"),) * 60, hours=(19,) * 60, distinct_recipients=1)
    odd = {"amount": Decimal("150"), "hour": 2, "account_age": YEAR}
    assert anomaly_score(**odd, recent=few).score < 3 < anomaly_score(**odd, recent=many).score
    assert rules.anomaly(facts("150", 2, few)) is None


def test_no_history_scores_nothing_but_a_young_account():
    assert anomaly_score(amount=Decimal("900"), hour=3, account_age=YEAR, recent=RecentGifts()).score == 0
    assert anomaly_score(amount=Decimal("900"), hour=3, account_age=timedelta(0), recent=RecentGifts()).score == 1


def test_the_score_is_deterministic():
    first = anomaly_score(amount=Decimal("480"), hour=3, account_age=YEAR, recent=EVENING_REGULAR)
    again = anomaly_score(amount=Decimal("480"), hour=3, account_age=YEAR, recent=EVENING_REGULAR)
    assert first == again
    assert first.explanation == again.explanation


def test_threshold_score_and_min_history_come_from_settings(settings):
    takeover = facts("480", 3, EVENING_REGULAR)
    settings.FRAUD_ANOMALY_SCORE = 70
    assert rules.anomaly(takeover).score == 70
    settings.FRAUD_ANOMALY_THRESHOLD = 9.5
    assert rules.anomaly(takeover) is None
    settings.FRAUD_ANOMALY_THRESHOLD = 5.0
    settings.FRAUD_ANOMALY_MIN_HISTORY = 31
    assert rules.anomaly(takeover) is None


# --- the sender's pattern, as gifting gathers it -----------------------------------------


def aged(sender, *, ago: timedelta, **fields) -> Gift:
    """A gift row created `ago` before now (created_at is auto_now_add, so it is moved afterwards)."""
    gift = gift_row(sender, **fields)
    Gift.objects.filter(pk=gift.pk).update(created_at=timezone.now() - ago)
    return gift


def test_the_pattern_is_the_live_gifts_of_the_recent_period_before_the_last_hour(make_user):
    sender = make_user()
    aged(sender, ago=timedelta(days=2), amount=Decimal("40"), recipient_email="Bob@Example.com")
    aged(sender, ago=timedelta(days=3), amount=Decimal("60"), recipient_email="carol@example.com")
    aged(sender, ago=timedelta(days=89), amount=Decimal("70"), recipient_email="carol@example.com")
    aged(sender, ago=timedelta(days=92), amount=Decimal("999"))  # before the period
    aged(sender, ago=timedelta(minutes=10), amount=Decimal("999"))  # the last hour: velocity's business
    aged(sender, ago=timedelta(days=1), amount=Decimal("999"), status=GiftStatus.REJECTED)
    aged(make_user(), ago=timedelta(days=1), amount=Decimal("999"))  # someone else's

    history = sender_history_for_assessment(
        sender=sender, recipient_email="bob@example.com", recipient_wallet="", windows=windows_at(timezone.now())
    )

    recent = history.recent
    assert recent.amounts == (Decimal("40"), Decimal("60"), Decimal("70"))  # newest first
    assert (recent.distinct_recipients, recent.sent_to_recipient) == (2, True)  # bob, in canonical form
    assert len(recent.hours) == 3


def test_the_pattern_costs_one_bounded_query_however_long_the_history(
    make_user, monkeypatch, django_assert_num_queries
):
    sender = make_user()
    monkeypatch.setattr(selectors, "RECENT_GIFTS_CAP", 4)
    for day in range(1, 8):
        aged(sender, ago=timedelta(days=day), amount=Decimal(day))
    windows = windows_at(timezone.now())

    # the fan-in count, the four windows' totals in one query, the recent gifts
    with django_assert_num_queries(3):
        history = sender_history_for_assessment(
            sender=sender, recipient_email="x@example.com", recipient_wallet="", windows=windows
        )

    assert history.recent.amounts == tuple(Decimal(day) for day in range(1, 5))  # the newest four


# --- end to end: gift_create, the risk assessment, the review queue -----------------------


@pytest.fixture
def regular_sender(make_user):
    """Twenty gifts of about 50 over the last weeks, all twelve hours from now's hour of day, to two friends."""
    sender = make_user(username="regina", date_joined=timezone.now() - YEAR)
    now = timezone.now()
    for day in range(1, 21):
        sent = now - timedelta(days=day, hours=12)
        gift = gift_row(sender, amount=Decimal(45 + day % 3 * 5), recipient_email=f"friend{day % 2}@example.com")
        Gift.objects.filter(pk=gift.pk).update(
            created_at=sent, status=GiftStatus.DELIVERED, delivered_at=sent + timedelta(minutes=1)
        )
    return sender


def send(sender, amount: str, recipient: str) -> Gift:
    return gift_create(sender=sender, recipient_email=recipient, amount=Decimal(amount), currency="EUR")


def test_an_anomalous_gift_carries_the_anomaly_signal_into_the_review_queue(regular_sender, make_user, client):
    gift = send(regular_sender, "450.00", "stranger@example.com")

    risk = RiskAssessment.objects.get(gift=gift)
    assert [s["rule"] for s in risk.signals] == ["high_value", "anomaly"]
    assert (risk.decision, risk.hold_tier, risk.score) == ("hold", "approval", 70)
    reason = risk.signals[1]["reason"]
    assert "amount 450.00 is 9.0x this sender's median 50" in reason
    assert "outside their usual" in reason
    assert "first gift to this recipient (their 20 recent gifts went to 2 recipients)" in reason

    reviewer = make_user(username="rita", is_staff=True)
    reviewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_giftreview", "review_gift"]))
    client.force_login(reviewer)
    queue = client.get("/admin/gifting/giftreview/?signal=anomaly")
    assert queue.status_code == 200
    assert str(gift.pk) in queue.content.decode()
    assert "high_value, anomaly" in queue.content.decode()
    page = client.get(f"/admin/gifting/giftreview/{gift.pk}/change/").content.decode()
    assert "<li><b>anomaly</b> (+50): Anomaly score " in page
    assert "9.0x this sender&#x27;s median 50" in page


def test_a_typical_gift_from_the_same_sender_raises_no_anomaly(regular_sender):
    gift = send(regular_sender, "50.00", "friend1@example.com")

    assert gift.status == GiftStatus.QUEUED
    assert RiskAssessment.objects.get(gift=gift).signals == []
