"""What the web and worker processes measure as they go: deliveries, messages, publishing, alerts.

prometheus-client runs in multiprocess mode: each process (gunicorn worker,
Celery pool child) writes its samples to files in PROMETHEUS_MULTIPROC_DIR
(set in config/__init__.py, emptied by `make run` and at container start), and
/metrics (gifting/metrics.py) adds them up across processes at scrape time.
Labels are low-cardinality: an outcome, a channel, an error class — never an
address, a gift id or a code.
"""

import logging
import time

from django.conf import settings
from prometheus_client import Counter, Histogram

from gifting.models import Gift

logger = logging.getLogger(__name__)

DELIVERIES = Counter(
    "gift_deliveries_total", "Delivery attempts by outcome and channel.", ["outcome", "channel", "error"]
)
DELIVERY_DURATION = Histogram(
    "gift_delivery_duration_seconds",
    "Time one delivery task took, by channel.",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
END_TO_END = Histogram(
    "gift_end_to_end_seconds",
    "From accepted to delivered.",
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400),
)
MESSAGE_AGE = Histogram(
    "gift_message_age_seconds",
    "Now minus the SQS SentTimestamp when a worker takes a delivery message.",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
RECEIVE_COUNT = Histogram(
    "gift_message_receive_count",
    "SQS ApproximateReceiveCount when a worker takes a delivery message.",
    buckets=(1, 2, 3, 5, 10),
)
PUBLISHED = Counter("gift_published_total", "Delivery messages published.")
PUBLISH_FAILURES = Counter("gift_publish_failures_total", "Delivery messages that could not be published.")
REPUBLISHED = Counter("gift_republished_total", "Delivery messages re-published by the sweeper.")
PUBLISH_DEFERRED = Counter(
    "gift_publish_deferred_total", "Committed gifts left to the sweeper: the publisher's hand-over queue was full."
)
VISIBILITY_WARNINGS = Counter(
    "gift_visibility_timeout_warnings_total", "Deliveries that used over 80% of the visibility timeout."
)
VISIBILITY_OVERRUNS = Counter(
    "gift_visibility_timeout_overruns_total", "Deliveries that ran past the visibility timeout."
)
ALERTS = Counter("gift_alerts_total", "Alert thresholds crossed, by alert.", ["alert"])

VISIBILITY_WARNING_SHARE = 0.8


def channel_of(gift: Gift) -> str:
    return "email" if gift.recipient_email else "wallet"


def delivery_counted(*, outcome: str, channel: str, error: str = "") -> None:
    DELIVERIES.labels(outcome=outcome, channel=channel, error=error).inc()


def delivered(gift: Gift) -> None:
    delivery_counted(outcome="delivered", channel=channel_of(gift))
    if gift.delivered_at is not None:
        END_TO_END.observe((gift.delivered_at - gift.created_at).total_seconds())


def message_taken(*, sent_timestamp_ms: str | None, receive_count: str | None, gift_id: object) -> int | None:
    """Observe a delivery message's age and receive count as a worker takes it; returns the count."""
    if sent_timestamp_ms:
        MESSAGE_AGE.observe(max(0.0, time.time() - int(sent_timestamp_ms) / 1000))
    if not receive_count:
        return None
    count = int(receive_count)
    RECEIVE_COUNT.observe(count)
    if count > 1:
        logger.warning("delivery message received again gift=%s receive_count=%s", gift_id, count)
    return count


def delivery_timed(*, channel: str, seconds: float, gift_id: object) -> None:
    """Observe a delivery task's run time and watch it against the visibility timeout."""
    DELIVERY_DURATION.labels(channel=channel).observe(seconds)
    visibility = settings.SQS_VISIBILITY_TIMEOUT
    if seconds > visibility:
        VISIBILITY_OVERRUNS.inc()
        logger.error(
            "delivery overran the visibility timeout gift=%s seconds=%.1f visibility_timeout=%s"
            " (another worker may have taken the message)",
            gift_id,
            seconds,
            visibility,
        )
    elif seconds > VISIBILITY_WARNING_SHARE * visibility:
        VISIBILITY_WARNINGS.inc()
        logger.warning(
            "delivery close to the visibility timeout gift=%s seconds=%.1f visibility_timeout=%s",
            gift_id,
            seconds,
            visibility,
        )
