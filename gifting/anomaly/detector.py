"""A robust seasonal baseline: per series and hour of day, the median and MAD of recent buckets.

Each series is first put on a scale where its natural noise is about 1
(a variance-stabilising transform: Anscombe's square root for counts, the
arcsine for a ratio of n trials, a signed square root for a signed change),
so one threshold in standard deviations fits them all and a quiet night's
handful of gifts is not judged like a busy noon. The baseline is kept per
slot — the hour of day, on weekdays and on weekends apart (daily and weekly
seasonality) — as the last WINDOW transformed values; the expected value is
their median and the spread 1.4826 * MAD, never below the natural noise. A
median shrugs off the few incident buckets that end up in its window, so the
detector learns from every bucket without being taught what an incident is.

No dependency beyond the standard library, and a state of plain lists that
serialises to JSON (gifting.anomaly.watch keeps it in the cache).
"""

import math
import statistics
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

WINDOW = 36  # values kept per series and slot: three weeks of one weekday hour, about four weekends of one
MAD_TO_SIGMA = 1.4826  # the MAD of normal noise times this is its standard deviation
SUSTAINED = 3  # buckets whose deviations are also judged together


class Kind(Enum):
    COUNT = "count"  # events per bucket (Poisson-like)
    RATIO = "ratio"  # k of n trials in the bucket (binomial-like)
    CHANGE = "change"  # a signed difference between two buckets


class Direction(Enum):
    UP = "up"
    DOWN = "down"
    BOTH = "both"


@dataclass(frozen=True)
class Series:
    name: str
    kind: Kind
    direction: Direction


ACCEPT_RATE = Series("accept_rate", Kind.COUNT, Direction.BOTH)  # gifts created per bucket
FAILURE_RATIO = Series("failure_ratio", Kind.RATIO, Direction.UP)  # failed / (delivered + failed)
QUEUE_GROWTH = Series("queue_growth", Kind.CHANGE, Direction.UP)  # gift queue visible + in flight, change
DLQ_ARRIVALS = Series("dlq_arrivals", Kind.COUNT, Direction.UP)  # new messages on the DLQ
SERIES = (ACCEPT_RATE, FAILURE_RATIO, QUEUE_GROWTH, DLQ_ARRIVALS)
SERIES_BY_NAME = {series.name: series for series in SERIES}


@dataclass(frozen=True)
class Observation:
    """One bucket's value of a series; `trials` is the ratio's denominator (finished deliveries)."""

    value: float
    trials: int = 0


@dataclass(frozen=True)
class Score:
    series: str
    value: float
    expected_low: float  # the range the value was expected in, in the series' own units
    expected_high: float
    score: float  # standard deviations beyond the expected median, in the direction that matters

    def is_anomalous(self, threshold: float) -> bool:
        return self.score > threshold


def slot_of(moment: datetime) -> str:
    """The seasonal slot of a bucket: weekday or weekend, and the hour, in `moment`'s own time zone."""
    return f"{'we' if moment.weekday() >= 5 else 'wd'}{moment.hour:02d}"


def transform(kind: Kind, observation: Observation) -> float:
    """The observation on a scale where its natural noise is about 1 (a ratio: 1/(2√n))."""
    if kind is Kind.COUNT:
        return 2 * math.sqrt(max(observation.value, 0) + 3 / 8)
    if kind is Kind.RATIO:
        return math.asin(math.sqrt(min(max(observation.value, 0.0), 1.0)))
    return math.copysign(math.sqrt(abs(observation.value)), observation.value)


def _untransform(kind: Kind, transformed: float) -> float:
    if kind is Kind.COUNT:
        return max((transformed / 2) ** 2 - 3 / 8, 0.0)
    if kind is Kind.RATIO:
        return math.sin(min(max(transformed, 0.0), math.pi / 2)) ** 2
    return math.copysign(transformed**2, transformed)


def _noise(kind: Kind, observation: Observation) -> float:
    """The transformed value's natural standard deviation: 1, or 1/(2√n) for a ratio of n trials."""
    if kind is Kind.RATIO:
        return 1 / (2 * math.sqrt(max(observation.trials, 1)))
    return 1.0


class SeasonalBaseline:
    """Scores and learns buckets of the SERIES; `state` is its whole memory (JSON-serialisable).

    A bucket's score is the larger of its own deviation and the last SUSTAINED deviations
    summed (÷ √SUSTAINED, so it stays in standard deviations): one bucket far off, or a few
    moderately off in a row — a traffic drop or a slow ramp no single bucket gives away.
    """

    def __init__(self, state: dict | None = None, *, min_history: int = 24, band: float = 3.0):
        # "baseline": series name → slot → the last WINDOW transformed values, oldest first;
        # "recent": series name → its last SUSTAINED - 1 signed deviations.
        self.state: dict[str, dict] = state if state is not None else {}
        self.state.setdefault("baseline", {})
        self.state.setdefault("recent", {})
        self.min_history = min_history
        self.band = band  # the expected range reported with a score: median +- band * spread

    def observe(self, series: Series, slot: str, observation: Observation) -> Score | None:
        """Score the bucket against its slot's baseline, then learn it; None while there is too little history.

        A ratio without trials (no delivery finished) says nothing: neither scored nor learnt.
        """
        if series.kind is Kind.RATIO and observation.trials <= 0:
            return None
        history = self.state["baseline"].setdefault(series.name, {}).setdefault(slot, [])
        value = transform(series.kind, observation)
        score = self._score(series, history, observation, value) if len(history) >= self.min_history else None
        history.append(round(value, 4))
        del history[:-WINDOW]
        return score

    def _score(self, series: Series, history: list[float], observation: Observation, value: float) -> Score:
        median = statistics.median(history)
        mad = statistics.median(abs(past - median) for past in history)
        spread = max(MAD_TO_SIGMA * mad, _noise(series.kind, observation))
        deviation = (value - median) / spread
        recent = self.state["recent"].setdefault(series.name, [])
        sustained = (sum(recent) + deviation) / math.sqrt(len(recent) + 1)
        recent.append(round(deviation, 3))
        del recent[: -(SUSTAINED - 1)]
        if series.direction is Direction.UP:
            score = max(deviation, sustained)
        elif series.direction is Direction.DOWN:
            score = max(-deviation, -sustained)
        else:
            score = max(abs(deviation), abs(sustained))
        return Score(
            series=series.name,
            value=observation.value,
            expected_low=_untransform(series.kind, median - self.band * spread),
            expected_high=_untransform(series.kind, median + self.band * spread),
            score=round(score, 2),
        )
