"""Risk rules: each a small function from the facts about a gift to a signal (or None).

Rules are pure, so each is tested on its own; the facts are gathered by
the app that owns the gifts (see fraud.history) and the verdict is reached by fraud.decisions. A signal's
reason is for reviewers; senders never see which rule fired.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum

from django.conf import settings

from fraud.anomaly import anomaly_score
from fraud.history import RecentGifts


class RuleName(StrEnum):
    """Each rule's name, as signals, the review queue's filter and the README call it."""

    VELOCITY = "velocity"
    FAN_IN = "fan_in"
    NEW_ACCOUNT = "new_account"
    HIGH_VALUE = "high_value"
    ANOMALY = "anomaly"


# How much each signal adds to a gift's risk score. FRAUD_REVIEW_SCORE and
# FRAUD_REJECT_SCORE turn the sum into a decision: alone, velocity or fan-in is
# worth a review; both together, or with a new account, a rejection.
VELOCITY_SCORE = 60
FAN_IN_SCORE = 60
NEW_ACCOUNT_SCORE = 30
HIGH_VALUE_SCORE = 20


@dataclass(frozen=True)
class Signal:
    rule: str
    score: int
    reason: str

    def as_dict(self) -> dict:
        return {"rule": str(self.rule), "score": self.score, "reason": self.reason}


@dataclass(frozen=True)
class GiftFacts:
    """What the rules know about a gift and its sender; gathered before deciding."""

    amount: Decimal
    account_age: timedelta
    last_hour_count: int  # the sender's gifts in the last hour, this one included
    last_hour_value: Decimal
    baseline_hourly_count: Decimal  # the sender's average per hour over the baseline period
    baseline_hourly_value: Decimal
    recipient_senders: int  # distinct senders to this recipient in the fan-in window, this one included
    # For the anomaly score; the defaults (no recent gifts) keep it silent.
    hour: int = 0  # the gift's hour of day, UTC
    recent: RecentGifts = field(default_factory=RecentGifts)


def velocity(facts: GiftFacts) -> Signal | None:
    """A burst against the sender's own history: last hour's count or value far above their hourly average."""
    if facts.last_hour_count < settings.FRAUD_VELOCITY_MIN_COUNT:
        return None
    factor = settings.FRAUD_VELOCITY_FACTOR
    count_burst = facts.last_hour_count > factor * facts.baseline_hourly_count
    value_burst = facts.last_hour_value > factor * facts.baseline_hourly_value
    if not (count_burst or value_burst):
        return None
    return Signal(
        RuleName.VELOCITY,
        VELOCITY_SCORE,
        f"{facts.last_hour_count} gifts worth {facts.last_hour_value} in the last hour, against an hourly "
        f"average of {facts.baseline_hourly_count:.2f} gifts worth {facts.baseline_hourly_value:.2f}.",
    )


def fan_in(facts: GiftFacts) -> Signal | None:
    """Several different senders to one recipient in a short window: a collection point."""
    if facts.recipient_senders < settings.FRAUD_FANIN_SENDERS:
        return None
    hours = settings.FRAUD_FANIN_WINDOW / 3600
    return Signal(
        RuleName.FAN_IN, FAN_IN_SCORE, f"{facts.recipient_senders} senders to this recipient within {hours:g} h."
    )


def new_account(facts: GiftFacts) -> Signal | None:
    """Accounts younger than FRAUD_NEW_ACCOUNT_DAYS have no history to vouch for them."""
    if facts.account_age >= timedelta(days=settings.FRAUD_NEW_ACCOUNT_DAYS):
        return None
    return Signal(RuleName.NEW_ACCOUNT, NEW_ACCOUNT_SCORE, f"Account is {facts.account_age.days} days old.")


def high_value(facts: GiftFacts) -> Signal | None:
    """At or above FRAUD_DELAY_THRESHOLD a gift is worth a second look."""
    if facts.amount < settings.FRAUD_DELAY_THRESHOLD:
        return None
    return Signal(RuleName.HIGH_VALUE, HIGH_VALUE_SCORE, f"Amount {facts.amount} is at or above the review threshold.")


def anomaly(facts: GiftFacts) -> Signal | None:
    """A gift unlike the sender's own recent ones (fraud.anomaly), once they have FRAUD_ANOMALY_MIN_HISTORY of them."""
    if facts.recent.count < settings.FRAUD_ANOMALY_MIN_HISTORY:
        return None
    result = anomaly_score(amount=facts.amount, hour=facts.hour, account_age=facts.account_age, recent=facts.recent)
    if result.score < settings.FRAUD_ANOMALY_THRESHOLD:
        return None
    return Signal(RuleName.ANOMALY, settings.FRAUD_ANOMALY_SCORE, result.explanation)


RULES: tuple[Callable[[GiftFacts], Signal | None], ...] = (velocity, fan_in, new_account, high_value, anomaly)


def evaluate(facts: GiftFacts) -> list[Signal]:
    """Every signal the rules raise for these facts."""
    return [signal for rule in RULES if (signal := rule(facts)) is not None]
