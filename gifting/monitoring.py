"""The periodic look at the pipeline: one `[MONITOR]` record per queue, and `[ALERT]` when a threshold is crossed.

Celery's events and inspect do not work on SQS, so beat runs this every
MONITOR_INTERVAL seconds on the maintenance queue (gifting.tasks.monitor_queues).
Each record is a log line whose fields (marker, queue, depths, ages) a log
search can filter on; each alert is also counted in gift_alerts_total{alert}.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from core.logging import ALERT, MONITOR
from core.sqs import ALL_QUEUES, GIFT_DLQ, GIFT_QUEUE, queue_depth, sqs_client, sqs_name
from gifting import instruments
from gifting.anomaly.watch import anomalies_check
from gifting.models import GiftEvent, GiftEventType
from gifting.selectors import oldest_queued_gift_age_seconds

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alert:
    name: str
    detail: str
    fields: dict = field(default_factory=dict)  # more searchable fields for the ALERT record


def _alerts(*, depths: dict[str, dict[str, int]], oldest_age: float, now: datetime) -> list[Alert]:
    alerts = []
    gift_queue = depths.get(GIFT_QUEUE, {})
    visible = gift_queue.get("visible", 0)
    if visible > settings.ALERT_QUEUE_DEPTH:
        alerts.append(Alert("queue_depth", f"{visible} messages visible on {sqs_name(GIFT_QUEUE)}"))
    if oldest_age > settings.ALERT_OLDEST_QUEUED_SECONDS:
        alerts.append(Alert("oldest_queued_age", f"the oldest queued gift waits for {oldest_age:.0f}s"))
    dead_letters = depths.get(GIFT_DLQ, {}).get("visible", 0)
    if dead_letters:
        alerts.append(Alert("dlq_not_empty", f"{dead_letters} messages on {sqs_name(GIFT_DLQ)}"))
    stall_since = now - timedelta(seconds=settings.ALERT_STALL_SECONDS)
    waiting = visible + gift_queue.get("in_flight", 0)
    if waiting and not GiftEvent.objects.filter(type=GiftEventType.DELIVERED, at__gte=stall_since).exists():
        stalled = f"{waiting} messages waiting and no delivery for {settings.ALERT_STALL_SECONDS}s"
        alerts.append(Alert("deliveries_stalled", stalled))
    return alerts


def queues_monitor(*, now: datetime | None = None) -> list[Alert]:
    """Log one MONITOR record per queue and one ALERT per crossed threshold; returns the alerts."""
    now = now or timezone.now()
    oldest_age = oldest_queued_gift_age_seconds(now=now)
    try:
        client = sqs_client()
        depths = {queue: queue_depth(client, queue) for queue in ALL_QUEUES}
    except Exception as exc:  # noqa: BLE001 - SQS being down is itself what to report
        depths = {}
        alerts = [Alert("sqs_unreachable", f"SQS did not answer: {type(exc).__name__}")]
    else:
        alerts = []
    for queue, depth in depths.items():
        logger.info(
            "[MONITOR] queue=%s visible=%s in_flight=%s delayed=%s oldest_queued_age_seconds=%.0f",
            sqs_name(queue),
            depth["visible"],
            depth["in_flight"],
            depth["delayed"],
            oldest_age,
            extra={
                "marker": MONITOR,
                "queue": sqs_name(queue),
                **depth,
                "dlq_visible": depths.get(GIFT_DLQ, {}).get("visible", 0),
                "oldest_queued_age_seconds": round(oldest_age, 1),
            },
        )
    alerts += _alerts(depths=depths, oldest_age=oldest_age, now=now) if depths else []
    alerts += [Alert("anomaly", found.detail, found.fields) for found in anomalies_check(now=now, depths=depths)]
    for alert in alerts:
        instruments.ALERTS.labels(alert=alert.name).inc()
        logger.warning(
            "[ALERT] %s: %s", alert.name, alert.detail, extra={"marker": ALERT, "alert": alert.name, **alert.fields}
        )
    return alerts
