"""Each risk rule on its own, as a pure function of the facts about a gift."""

from datetime import timedelta
from decimal import Decimal

import pytest

from fraud import rules
from fraud.rules import GiftFacts


def facts(**changes) -> GiftFacts:
    """A harmless gift from a year-old account with no history, unless `changes` say otherwise."""
    defaults = {
        "amount": Decimal("10.00"),
        "account_age": timedelta(days=365),
        "last_hour_count": 1,
        "last_hour_value": Decimal("10.00"),
        "baseline_hourly_count": Decimal("0"),
        "baseline_hourly_value": Decimal("0"),
        "recipient_senders": 1,
    }
    return GiftFacts(**{**defaults, **changes})


@pytest.fixture(autouse=True)
def thresholds(settings):
    settings.FRAUD_VELOCITY_MIN_COUNT = 10
    settings.FRAUD_VELOCITY_FACTOR = Decimal("5")
    settings.FRAUD_FANIN_SENDERS = 3
    settings.FRAUD_FANIN_WINDOW = 86400
    settings.FRAUD_NEW_ACCOUNT_DAYS = 7
    settings.FRAUD_DELAY_THRESHOLD = Decimal("200")


# --- velocity ------------------------------------------------------------------


def test_velocity_needs_at_least_min_count_gifts_even_in_a_burst():
    burst = facts(last_hour_count=9, last_hour_value=Decimal("9000"))  # no history at all
    assert rules.velocity(burst) is None


@pytest.mark.parametrize(
    ("count", "value", "baseline_count", "baseline_value"),
    [
        pytest.param(10, "100", "1.9", "100", id="count-burst"),  # 10 > 5 * 1.9; value 100 < 5 * 100
        pytest.param(10, "1000", "2", "100", id="value-burst"),  # 10 = 5 * 2 (no count burst); 1000 > 500
        pytest.param(10, "100", "0", "0", id="no-history"),
    ],
)
def test_velocity_flags_a_burst_against_the_senders_own_average(count, value, baseline_count, baseline_value):
    signal = rules.velocity(
        facts(
            last_hour_count=count,
            last_hour_value=Decimal(value),
            baseline_hourly_count=Decimal(baseline_count),
            baseline_hourly_value=Decimal(baseline_value),
        )
    )
    assert signal is not None
    assert (signal.rule, signal.score) == ("velocity", rules.VELOCITY_SCORE)
    assert f"{count} gifts worth {value} in the last hour" in signal.reason


@pytest.mark.parametrize(
    ("count", "value", "baseline_count", "baseline_value"),
    [
        pytest.param(10, "100", "10", "100", id="at-baseline"),
        pytest.param(15, "300", "3", "60", id="exactly-factor-times-baseline"),  # 15 = 5 * 3; 300 = 5 * 60
        pytest.param(40, "4000", "8", "800", id="busy-but-steady"),
    ],
)
def test_velocity_leaves_a_steady_sender_alone(count, value, baseline_count, baseline_value):
    steady = facts(
        last_hour_count=count,
        last_hour_value=Decimal(value),
        baseline_hourly_count=Decimal(baseline_count),
        baseline_hourly_value=Decimal(baseline_value),
    )
    assert rules.velocity(steady) is None


def test_velocity_thresholds_come_from_settings(settings):
    burst = facts(last_hour_count=3, last_hour_value=Decimal("30"))
    assert rules.velocity(burst) is None
    settings.FRAUD_VELOCITY_MIN_COUNT = 3
    assert rules.velocity(burst) is not None
    settings.FRAUD_VELOCITY_FACTOR = Decimal("2")
    history = {"last_hour_count": 3, "baseline_hourly_value": Decimal("100")}
    assert rules.velocity(facts(**history, baseline_hourly_count=Decimal("1"))) is not None  # 3 > 2 * 1
    assert rules.velocity(facts(**history, baseline_hourly_count=Decimal("1.5"))) is None  # 3 = 2 * 1.5


# --- fan-in --------------------------------------------------------------------


@pytest.mark.parametrize(("senders", "flagged"), [(1, False), (2, False), (3, True), (7, True)])
def test_fan_in_flags_a_recipient_with_many_senders(senders, flagged):
    signal = rules.fan_in(facts(recipient_senders=senders))
    assert (signal is not None) == flagged
    if flagged:
        assert (signal.rule, signal.score) == ("fan_in", rules.FAN_IN_SCORE)
        assert signal.reason == f"{senders} senders to this recipient within 24 h."


def test_fan_in_threshold_and_window_come_from_settings(settings):
    settings.FRAUD_FANIN_SENDERS = 5
    settings.FRAUD_FANIN_WINDOW = 1800
    assert rules.fan_in(facts(recipient_senders=4)) is None
    assert rules.fan_in(facts(recipient_senders=5)).reason == "5 senders to this recipient within 0.5 h."


# --- new account -------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "flagged"),
    [
        (timedelta(0), True),
        (timedelta(days=7) - timedelta(seconds=1), True),
        (timedelta(days=7), False),  # exactly FRAUD_NEW_ACCOUNT_DAYS is no longer new
        (timedelta(days=400), False),
    ],
)
def test_new_account_edge_is_exactly_new_account_days(age, flagged):
    signal = rules.new_account(facts(account_age=age))
    assert (signal is not None) == flagged
    if flagged:
        assert (signal.rule, signal.score) == ("new_account", rules.NEW_ACCOUNT_SCORE)
        assert signal.reason == f"Account is {age.days} days old."


def test_new_account_days_come_from_settings(settings):
    settings.FRAUD_NEW_ACCOUNT_DAYS = 30
    assert rules.new_account(facts(account_age=timedelta(days=29))) is not None
    assert rules.new_account(facts(account_age=timedelta(days=30))) is None


# --- high value ----------------------------------------------------------------


@pytest.mark.parametrize(("amount", "flagged"), [("199.99", False), ("200.00", True), ("200.01", True)])
def test_high_value_edge_is_the_delay_threshold(amount, flagged):
    signal = rules.high_value(facts(amount=Decimal(amount)))
    assert (signal is not None) == flagged
    if flagged:
        assert (signal.rule, signal.score) == ("high_value", rules.HIGH_VALUE_SCORE)
        assert amount in signal.reason


def test_high_value_threshold_comes_from_settings(settings):
    settings.FRAUD_DELAY_THRESHOLD = Decimal("50")
    assert rules.high_value(facts(amount=Decimal("50"))) is not None


# --- evaluate ------------------------------------------------------------------


def test_evaluate_returns_nothing_for_a_harmless_gift():
    assert rules.evaluate(facts()) == []


def test_evaluate_returns_every_signal_raised():
    everything = facts(
        amount=Decimal("900"),
        account_age=timedelta(days=1),
        last_hour_count=12,
        last_hour_value=Decimal("2000"),
        recipient_senders=4,
    )
    signals = rules.evaluate(everything)
    assert [s.rule for s in signals] == ["velocity", "fan_in", "new_account", "high_value"]
    assert sum(s.score for s in signals) == 60 + 60 + 30 + 20
    assert signals[0].as_dict() == {"rule": "velocity", "score": 60, "reason": signals[0].reason}


def test_evaluate_returns_only_the_rules_that_fire():
    signals = rules.evaluate(facts(account_age=timedelta(hours=2), recipient_senders=3))
    assert [s.rule for s in signals] == ["fan_in", "new_account"]
