"""How unusual a gift is for its sender: one score from a few features, with an explanation for reviewers.

Pure functions of the gift and the sender's recent gifts (fraud.history.RecentGifts), like the rules.
Each feature is measured against the sender's own pattern, smoothed towards a prior worth
PRIOR_WEIGHT gifts, so a sender with little history looks ordinary rather than alarming:

- amount: how far above the sender's median the amount is, in robust spreads of log-amounts
  (median absolute deviation), less one spread of slack;
- hour: how much rarer this hour of day (± 1 h) is for the sender than for an evenly spread one, in bits;
- recipient: for a first gift to this recipient, how much rarer new recipients are for the sender
  than the prior rate, in bits;
- account age: up to one point for an account younger than YOUNG_ACCOUNT.

The score is their sum; fraud.rules.anomaly turns it into a signal above FRAUD_ANOMALY_THRESHOLD.
The weights and the threshold come from bench/evaluate_fraud_anomalies.py (docs/anomaly-detection.md).
"""

import math
import statistics
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from fraud.history import RecentGifts

# The prior counts as this many gifts of an ordinary sender.
PRIOR_WEIGHT = 5
# An ordinary sender's spread of log-amounts (a factor of about e^0.6 = 1.8 either way), and a floor for
# senders who always send the same amount (so 55 after a run of 50s is not a wild outlier).
PRIOR_LOG_SPREAD = 0.6
MIN_LOG_SPREAD = 0.1
MAD_TO_SPREAD = 1.4826  # the MAD of a normal distribution times this is its standard deviation
# The prior share of gifts that go to a recipient the sender has not sent to before.
PRIOR_NEW_RECIPIENT_RATE = 0.5
HOUR_SLACK = 1  # a gift's hour counts as usual if the sender has sent within this many hours of it
USUAL_HOURS_SHARE = 0.8  # "their usual hours" in the explanation: the shortest span holding this share
YOUNG_ACCOUNT = timedelta(days=30)
MAX_FEATURE_POINTS = 4.0
EXPLAIN_FROM_POINTS = 0.5  # features worth less are left out of the explanation


@dataclass(frozen=True)
class Feature:
    name: str
    points: float
    text: str


@dataclass(frozen=True)
class Anomaly:
    score: float
    features: tuple[Feature, ...]

    @property
    def explanation(self) -> str:
        """The features that drove the score, strongest first, as a reviewer reads them."""
        drivers = sorted((f for f in self.features if f.points >= EXPLAIN_FROM_POINTS), key=lambda f: -f.points)
        return f"Anomaly score {self.score:.1f}: " + ("; ".join(f.text for f in drivers) or "nothing stands out") + "."


def _clamp(points: float) -> float:
    return max(0.0, min(MAX_FEATURE_POINTS, points))


def _amount(amount: Decimal, recent: RecentGifts) -> Feature:
    if not recent.amounts:
        return Feature("amount", 0.0, f"amount {amount}, no earlier gifts to compare")
    logs = [math.log(a) for a in recent.amounts]
    centre = statistics.median(logs)
    mad = statistics.median(abs(x - centre) for x in logs)
    n = len(logs)
    # Shrink the sender's spread towards the prior: few gifts say little about how much they vary.
    variance = (n * (MAD_TO_SPREAD * mad) ** 2 + PRIOR_WEIGHT * PRIOR_LOG_SPREAD**2) / (n + PRIOR_WEIGHT)
    spread = max(MIN_LOG_SPREAD, math.sqrt(variance))
    z = (math.log(amount) - centre) / spread
    median = statistics.median(recent.amounts)
    ratio = amount / median
    return Feature("amount", _clamp(z - 1), f"amount {amount} is {ratio:.1f}x this sender's median {median}")


def _circular_distance(a: int, b: int) -> int:
    return min((a - b) % 24, (b - a) % 24)


def _usual_hours(hours: tuple[int, ...]) -> str:
    """The shortest span of hours of day (wrapping at midnight) that holds USUAL_HOURS_SHARE of the gifts."""
    counts = [0] * 24
    for hour in hours:
        counts[hour] += 1
    needed = USUAL_HOURS_SHARE * len(hours)
    for length in range(1, 25):
        for start in range(24):
            if sum(counts[(start + i) % 24] for i in range(length)) >= needed:
                return f"{start:02d}:00-{(start + length) % 24:02d}:00"
    return "00:00-00:00"


def _hour(hour: int, recent: RecentGifts) -> Feature:
    width = 2 * HOUR_SLACK + 1
    base_rate = width / 24
    near = sum(1 for h in recent.hours if _circular_distance(h, hour) <= HOUR_SLACK)
    rate = (near + PRIOR_WEIGHT * base_rate) / (len(recent.hours) + PRIOR_WEIGHT)
    points = _clamp(math.log2(base_rate / rate))
    text = f"sent at {hour:02d}:00"
    if points >= EXPLAIN_FROM_POINTS:
        text += f", outside their usual {_usual_hours(recent.hours)}"
    return Feature("hour", points, text)


def _recipient(recent: RecentGifts) -> Feature:
    if recent.sent_to_recipient:
        return Feature("recipient", 0.0, "a recipient they have sent to before")
    rate = (recent.distinct_recipients + PRIOR_WEIGHT * PRIOR_NEW_RECIPIENT_RATE) / (recent.count + PRIOR_WEIGHT)
    points = _clamp(math.log2(PRIOR_NEW_RECIPIENT_RATE / rate))
    return Feature(
        "recipient",
        points,
        f"first gift to this recipient (their {recent.count} recent gifts went to "
        f"{recent.distinct_recipients} recipient{'s' if recent.distinct_recipients != 1 else ''})",
    )


def _account_age(account_age: timedelta) -> Feature:
    points = max(0.0, 1 - account_age / YOUNG_ACCOUNT)
    return Feature("account_age", points, f"account is {account_age.days} days old")


def anomaly_score(*, amount: Decimal, hour: int, account_age: timedelta, recent: RecentGifts) -> Anomaly:
    """How unusual a gift of `amount` at `hour` (UTC) is for a sender with these recent gifts."""
    features = (_amount(amount, recent), _hour(hour, recent), _recipient(recent), _account_age(account_age))
    return Anomaly(score=round(sum(f.points for f in features), 2), features=features)
