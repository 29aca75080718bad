"""Feed each closed 5-minute bucket to the detector once, from the monitoring beat task.

gifting.monitoring.queues_monitor calls `anomalies_check` every MONITOR_INTERVAL
seconds with the queue depths it has just read. The series are per bucket, so
only buckets that have closed since the last run are scored (at most
CATCH_UP of them, after beat was down), each exactly once: the detector's
state remembers the last bucket it scored, and a `cache.add` claim per bucket
keeps two overlapping runs from scoring the same one. Accept rate and failure
ratio come from the database (gifts created; `delivered` and `failed` events);
queue growth and DLQ arrivals from the depth samples the monitor takes, so a
bucket without a sample at its end and at the end of the one before is left
out of those two series.

The state — a few dozen values per series and hour — lives in the cache:
Redis in production (settings require REDIS_URL when DEBUG is off), so it
survives restarts and is shared by every worker. With the development locmem
cache a restarted worker warms up again.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from core.sqs import GIFT_DLQ, GIFT_QUEUE
from gifting.anomaly.detector import (
    ACCEPT_RATE,
    DLQ_ARRIVALS,
    FAILURE_RATIO,
    QUEUE_GROWTH,
    Observation,
    Score,
    SeasonalBaseline,
    Series,
    slot_of,
)
from gifting.models import Gift
from gifting.selectors import deliveries_per_bucket

logger = logging.getLogger(__name__)

BUCKET_SECONDS = 300
CATCH_UP = 12  # closed buckets scored in one run at most: an hour of beat downtime
STATE_KEY = "gifting:anomaly:state"
CLAIM_KEY = "gifting:anomaly:scored:{index}"
STATE_TTL = 30 * 24 * 3600  # forgotten after a month without a run: the baseline would be stale anyway


@dataclass(frozen=True)
class Anomaly:
    bucket_start: datetime
    score: Score

    @property
    def detail(self) -> str:
        score = self.score
        return (
            f"{score.series}={_rounded(score.value)} in the bucket from {self.bucket_start.isoformat()}, "
            f"expected {_rounded(score.expected_low)}..{_rounded(score.expected_high)} (score {score.score})"
        )

    @property
    def fields(self) -> dict:
        """The ALERT record's searchable fields: which series, its value, the expected range, the score."""
        score = self.score
        return {
            "series": score.series,
            "value": _rounded(score.value),
            "expected_low": _rounded(score.expected_low),
            "expected_high": _rounded(score.expected_high),
            "score": score.score,
            "bucket_start": self.bucket_start.isoformat(),
        }


def _rounded(value: float) -> float:
    return round(value, 3)


def bucket_index(moment: datetime) -> int:
    return int(moment.timestamp() // BUCKET_SECONDS)


def bucket_start(index: int) -> datetime:
    return datetime.fromtimestamp(index * BUCKET_SECONDS, tz=UTC)


def detector_from(state: dict) -> SeasonalBaseline:
    return SeasonalBaseline(state.setdefault("detector", {}), min_history=settings.ANOMALY_MIN_HISTORY)


def _depth_sample(depths: dict[str, dict[str, int]]) -> list[int] | None:
    if GIFT_QUEUE not in depths or GIFT_DLQ not in depths:
        return None
    gift_queue = depths[GIFT_QUEUE]
    return [gift_queue["visible"] + gift_queue["in_flight"], depths[GIFT_DLQ]["visible"]]


def _observations(index: int, samples: dict[str, list[int]]) -> dict[Series, Observation]:
    start = bucket_start(index)
    end = start + timedelta(seconds=BUCKET_SECONDS)
    [finished] = deliveries_per_bucket(since=start, until=end, bucket_seconds=BUCKET_SECONDS)
    trials = finished.delivered + finished.failed
    found = {
        ACCEPT_RATE: Observation(Gift.objects.filter(created_at__gte=start, created_at__lt=end).count()),
        FAILURE_RATIO: Observation(finished.failed / trials if trials else 0.0, trials=trials),
    }
    now, before = samples.get(str(index)), samples.get(str(index - 1))
    if now and before:
        found[QUEUE_GROWTH] = Observation(now[0] - before[0])
        # A DLQ only shrinks when an operator redrives or purges it: count what was added.
        found[DLQ_ARRIVALS] = Observation(max(now[1] - before[1], 0))
    return found


def anomalies_check(*, now: datetime, depths: dict[str, dict[str, int]]) -> list[Anomaly]:
    """The anomalies in the buckets closed since the last run, each scored once (empty while switched off).

    The caller (gifting.monitoring) logs and counts them as `anomaly` ALERTs. A failing cache or
    database skips this run's scoring with a warning rather than the monitor's own alerts.
    """
    if not settings.ANOMALY_DETECTION:
        return []
    try:
        return _check(now=now, depths=depths)
    except Exception as exc:  # noqa: BLE001 - the fixed-threshold alerts must still go out
        logger.warning("anomaly detection skipped this run: %s", type(exc).__name__)
        return []


def _check(*, now: datetime, depths: dict[str, dict[str, int]]) -> list[Anomaly]:
    current = bucket_index(now)
    state = cache.get(STATE_KEY) or {}
    samples = state.setdefault("samples", {})
    if (sample := _depth_sample(depths)) is not None:
        samples[str(current)] = sample  # the last sample in a bucket stands for its end
    detector = detector_from(state)
    found = []
    for index in range(max(state.get("last_scored", current - 2) + 1, current - CATCH_UP), current):
        state["last_scored"] = index
        if not cache.add(CLAIM_KEY.format(index=index), 1, timeout=BUCKET_SECONDS * (CATCH_UP + 2)):
            continue  # an overlapping run has scored it
        slot = slot_of(timezone.localtime(bucket_start(index)))
        for series, observation in _observations(index, samples).items():
            score = detector.observe(series, slot, observation)
            if score is not None and score.is_anomalous(settings.ANOMALY_THRESHOLD):
                found.append(Anomaly(bucket_start(index), score))
    state["samples"] = {key: value for key, value in samples.items() if int(key) >= current - 1}
    cache.set(STATE_KEY, state, timeout=STATE_TTL)
    return found
