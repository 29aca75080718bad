"""Anomaly detection on the 5-minute series: the detector's statistics, and the beat task's ALERTs."""

import json
import logging
import math
from datetime import UTC, datetime, timedelta
from unittest.mock import patch

import pytest
from django.core.cache import cache

from core.logging import JsonFormatter
from core.sqs import GIFT_DLQ, GIFT_QUEUE, MAINTENANCE_QUEUE
from gifting import instruments
from gifting.anomaly.detector import (
    ACCEPT_RATE,
    DLQ_ARRIVALS,
    FAILURE_RATIO,
    QUEUE_GROWTH,
    Observation,
    SeasonalBaseline,
    slot_of,
)
from gifting.anomaly.watch import STATE_KEY, anomalies_check, bucket_index
from gifting.models import GiftEventType
from gifting.monitoring import queues_monitor
from tests.factories import gift_row

MONDAY = datetime(2030, 1, 7, tzinfo=UTC)
BUCKET = timedelta(minutes=5)
BUCKETS_PER_DAY = 288


def seasonal_gifts(moment: datetime, number: int) -> int:
    """A deterministic busy day: a noon peak, quieter weekends, and a wobble standing in for noise."""
    hour = moment.hour + moment.minute / 60
    level = 5 + 55 * math.exp(-(((hour - 13) / 3) ** 2))
    if moment.weekday() >= 5:
        level *= 0.6
    return round(level * (1 + 0.15 * math.sin(number * 1.7)))


def run_weeks(detector: SeasonalBaseline, weeks: int) -> list:
    """Feed `weeks` of normal accept-rate buckets; the scores of every bucket (None during warm-up)."""
    scores = []
    for number in range(weeks * 7 * BUCKETS_PER_DAY):
        moment = MONDAY + number * BUCKET
        observation = Observation(seasonal_gifts(moment, number))
        scores.append(detector.observe(ACCEPT_RATE, slot_of(moment), observation))
    return scores


def test_the_detector_stays_quiet_on_a_seasonal_series_and_flags_a_spike_after_warm_up():
    detector = SeasonalBaseline(min_history=24)
    scores = run_weeks(detector, weeks=3)

    assert all(score is None for score in scores[: 2 * BUCKETS_PER_DAY])  # two weekdays of warm-up per hour
    scored = [score for score in scores[14 * BUCKETS_PER_DAY :] if score is not None]
    assert len(scored) == 7 * BUCKETS_PER_DAY  # the third week: every slot has warmed up, weekends included
    assert max(score.score for score in scored) < 4.5  # ANOMALY_THRESHOLD's default
    noon = MONDAY + timedelta(weeks=3, hours=13)
    spike = detector.observe(ACCEPT_RATE, slot_of(noon), Observation(400))
    assert spike.is_anomalous(4.5) and spike.expected_low < 60 < spike.expected_high < 400
    drop = detector.observe(ACCEPT_RATE, slot_of(noon + BUCKET), Observation(1))
    assert drop.is_anomalous(4.5)  # the accept rate is watched both ways


def test_a_quiet_night_of_few_deliveries_is_not_judged_like_a_busy_noon():
    detector = SeasonalBaseline(min_history=24)
    for _ in range(36):
        detector.observe(FAILURE_RATIO, "wd03", Observation(0.0, trials=3))
        detector.observe(FAILURE_RATIO, "wd13", Observation(0.01, trials=300))
    assert not detector.observe(FAILURE_RATIO, "wd03", Observation(1 / 3, trials=3)).is_anomalous(4.5)
    assert detector.observe(FAILURE_RATIO, "wd13", Observation(0.1, trials=300)).is_anomalous(4.5)
    assert detector.observe(FAILURE_RATIO, "wd13", Observation(0.0, trials=0)) is None  # nothing finished


def test_a_restarted_detector_scores_from_the_state_it_left():
    first = SeasonalBaseline(min_history=24)
    run_weeks(first, weeks=1)
    restarted = SeasonalBaseline(json.loads(json.dumps(first.state)), min_history=24)  # as the cache keeps it
    moment = MONDAY + timedelta(weeks=1, hours=13)
    assert restarted.observe(ACCEPT_RATE, slot_of(moment), Observation(400)) == first.observe(
        ACCEPT_RATE, slot_of(moment), Observation(400)
    )
    assert SeasonalBaseline(min_history=24).observe(ACCEPT_RATE, slot_of(moment), Observation(400)) is None


# --- The beat task's path: gifting.monitoring.queues_monitor → gifting.anomaly.watch --------------------

BUCKET_START = datetime(2030, 1, 8, 12, 5, tzinfo=UTC)  # a Tuesday noon
AFTER = BUCKET_START + BUCKET + timedelta(seconds=30)  # the beat's first run once the bucket has closed


@pytest.fixture
def no_sqs(settings):
    settings.SQS_ENDPOINT_URL = "http://127.0.0.1:9"  # the discard port: the monitor reports sqs_unreachable


def warmed_up(series, observations: list[Observation], *, last_scored: int) -> None:
    """Put a detector state in the cache that knows `observations` for the bucket's hour."""
    detector = SeasonalBaseline(min_history=24)
    for observation in observations:
        detector.observe(series, slot_of(BUCKET_START), observation)
    cache.set(STATE_KEY, {"detector": detector.state, "last_scored": last_scored})


def failures_in_bucket(user, count: int) -> None:
    gift = gift_row(user)
    for second in range(count):
        with patch("django.utils.timezone.now", return_value=BUCKET_START + timedelta(seconds=second)):
            gift.events.create(type=GiftEventType.FAILED, actor_label="worker")


def anomaly_count() -> float:
    return instruments.ALERTS.labels(alert="anomaly")._value.get()


def anomaly_records(caplog) -> list[dict]:
    records = [json.loads(JsonFormatter().format(record)) for record in caplog.records]
    return [record for record in records if record.get("marker") == "ALERT" and record["alert"] == "anomaly"]


def test_the_monitor_logs_and_counts_an_anomalous_bucket_once(no_sqs, user, caplog):
    normal = [Observation(0.01 * (i % 3), trials=20) for i in range(30)]
    warmed_up(FAILURE_RATIO, normal, last_scored=bucket_index(BUCKET_START) - 1)
    failures_in_bucket(user, 20)
    caplog.set_level(logging.INFO, logger="gifting.monitoring")
    before = anomaly_count()

    first = queues_monitor(now=AFTER)
    second = queues_monitor(now=AFTER + timedelta(minutes=1))  # the next beat run, same closed bucket

    assert [alert.name for alert in first] == ["sqs_unreachable", "anomaly"]
    assert [alert.name for alert in second] == ["sqs_unreachable"]
    assert anomaly_count() - before == 1
    [record] = anomaly_records(caplog)
    assert record["series"] == "failure_ratio" and record["value"] == 1.0
    assert record["expected_low"] <= 0.02 < record["expected_high"] < 1.0
    assert record["score"] > 4.5 and record["bucket_start"] == BUCKET_START.isoformat()
    assert "failure_ratio=1.0" in record["message"] and record["level"] == "WARNING"


def test_the_monitor_stays_quiet_on_a_normal_bucket_and_during_warm_up(no_sqs, user, caplog):
    caplog.set_level(logging.INFO, logger="gifting.monitoring")
    normal = [Observation(0.0, trials=20) for _ in range(30)]
    warmed_up(FAILURE_RATIO, normal, last_scored=bucket_index(BUCKET_START) - 1)
    failures_in_bucket(user, 0)
    assert [alert.name for alert in queues_monitor(now=AFTER)] == ["sqs_unreachable"]

    warmed_up(FAILURE_RATIO, normal[:23], last_scored=bucket_index(BUCKET_START) - 1)  # one short of warm
    failures_in_bucket(user, 20)
    assert [alert.name for alert in queues_monitor(now=AFTER)] == ["sqs_unreachable"]
    assert anomaly_records(caplog) == []


def test_switched_off_the_monitor_scores_nothing(no_sqs, user, settings):
    settings.ANOMALY_DETECTION = False
    warmed_up(FAILURE_RATIO, [Observation(0.0, trials=20)] * 30, last_scored=bucket_index(BUCKET_START) - 1)
    failures_in_bucket(user, 20)
    assert [alert.name for alert in queues_monitor(now=AFTER)] == ["sqs_unreachable"]


def depths(waiting: int, dead_letters: int) -> dict:
    return {
        GIFT_QUEUE: {"visible": waiting - 2, "in_flight": 2, "delayed": 0},
        GIFT_DLQ: {"visible": dead_letters, "in_flight": 0, "delayed": 0},
        MAINTENANCE_QUEUE: {"visible": 0, "in_flight": 0, "delayed": 0},
    }


def test_queue_growth_and_dlq_arrivals_come_from_the_depth_samples_at_each_bucket_end(db):
    detector = SeasonalBaseline(min_history=24)
    for number in range(30):
        detector.observe(QUEUE_GROWTH, slot_of(BUCKET_START), Observation(number % 3 - 1))
        detector.observe(DLQ_ARRIVALS, slot_of(BUCKET_START), Observation(number % 2))
    cache.set(STATE_KEY, {"detector": detector.state, "last_scored": bucket_index(BUCKET_START) - 1})

    anomalies_check(now=BUCKET_START - timedelta(seconds=30), depths=depths(5, 40))  # the bucket before ends
    anomalies_check(now=BUCKET_START + timedelta(minutes=2), depths=depths(100, 40))
    anomalies_check(now=BUCKET_START + timedelta(minutes=4), depths=depths(600, 90))  # the last sample counts
    found = anomalies_check(now=AFTER, depths=depths(600, 0))

    assert {anomaly.score.series: anomaly.score.value for anomaly in found} == {
        "queue_growth": 595,
        "dlq_arrivals": 50,
    }


def test_a_purged_dlq_is_no_arrival_and_a_missing_sample_scores_no_depth_series(db):
    detector = SeasonalBaseline(min_history=24)
    for _ in range(30):
        detector.observe(DLQ_ARRIVALS, slot_of(BUCKET_START), Observation(0))
    cache.set(STATE_KEY, {"detector": detector.state, "last_scored": bucket_index(BUCKET_START) - 1})
    anomalies_check(now=BUCKET_START - timedelta(seconds=30), depths=depths(5, 400))
    anomalies_check(now=BUCKET_START + timedelta(minutes=4), depths=depths(5, 0))  # an operator purged it
    assert anomalies_check(now=AFTER, depths={}) == []
    assert cache.get(STATE_KEY)["detector"]["baseline"]["dlq_arrivals"][slot_of(BUCKET_START)][-1] == round(
        2 * math.sqrt(3 / 8), 4
    )  # learnt as 0 arrivals


def test_a_failing_cache_skips_the_scoring_but_not_the_monitor(no_sqs, db, caplog):
    caplog.set_level(logging.INFO, logger="gifting")
    with patch("gifting.anomaly.watch.cache.get", side_effect=ConnectionError("redis down")):
        assert [alert.name for alert in queues_monitor(now=AFTER)] == ["sqs_unreachable"]
    assert "anomaly detection skipped this run: ConnectionError" in caplog.text
