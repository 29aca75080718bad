"""GET /metrics: what every process counted (gifting/instruments.py, added up across processes) and
what the database and SQS say at scrape time.

State (gifts by status, queue depths) is read at scrape time, so it is the same
whichever web process answers; events (deliveries, retries, publishes) are
counted where they happen, in multiprocess mode, and summed here.
"""

import logging

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

from core.metrics_access import metrics_access_required
from core.sqs import ALL_QUEUES, queue_depth, sqs_client, sqs_name
from gifting.selectors import gift_counts_by_status, oldest_queued_gift_age_seconds

logger = logging.getLogger(__name__)


class GiftCollector:
    def collect(self):
        gifts = GaugeMetricFamily("gifts", "Gifts by status.", labels=["status"])
        for status, total in gift_counts_by_status().items():
            gifts.add_metric([status], total)
        yield gifts
        yield GaugeMetricFamily(
            "gift_oldest_queued_age_seconds",
            "Age of the oldest gift still waiting for delivery.",
            value=oldest_queued_gift_age_seconds(now=timezone.now()),
        )
        depth = GaugeMetricFamily(
            "sqs_queue_messages", "Approximate messages per queue and state.", labels=["queue", "state"]
        )
        up = GaugeMetricFamily("sqs_up", "1 when SQS answered this scrape.")
        try:
            client = sqs_client()
            for queue in ALL_QUEUES:
                for state, count in queue_depth(client, queue).items():
                    depth.add_metric([sqs_name(queue), state], count)
            up.add_metric([], 1)
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail because SQS is down
            logger.warning("metrics could not read SQS error=%s", type(exc).__name__)
            up.add_metric([], 0)
        yield depth
        yield up


@metrics_access_required
def metrics_view(request: HttpRequest) -> HttpResponse:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # reads PROMETHEUS_MULTIPROC_DIR
    registry.register(GiftCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
