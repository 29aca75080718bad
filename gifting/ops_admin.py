"""The admin's Operations page: queues, held gifts, gifts by status, workers and a day of deliveries, at a glance.

Staff only: config/urls.py mounts `operations_view` at /admin/operations/
through `admin.site.admin_view`, which sends anyone who is not active staff to
the admin login; the admin index links to it (templates/admin/index.html).
It shows counts, queue depths and worker heartbeats, never personal data
(recipients, voucher codes, messages). What SQS cannot tell is shown as
"SQS unreachable"; the page itself does not fail.
"""

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.safestring import mark_safe

from core.heartbeat import heartbeats_read
from core.sqs import ALL_QUEUES, GIFT_DLQ, queue_depth, sqs_client, sqs_name
from gifting.models import GiftStatus, HoldReason
from gifting.ops_chart import deliveries_svg, hourly_totals
from gifting.selectors import (
    deliveries_per_bucket,
    gift_counts_by_status,
    held_gift_counts,
    oldest_queued_gift_age_seconds,
)

logger = logging.getLogger(__name__)

CHART_WINDOW = timedelta(hours=24)
CHART_BUCKET_SECONDS = 300
QUEUE_ROLES = {
    "gift-delivery": "deliveries: workers consume it",
    "gift-delivery-dlq": "dead letters: waiting for an operator (manage.py dlq)",
    "gift-maintenance": "sweepers: workers consume it",
}
HOLD_LABELS = {
    HoldReason.APPROVAL: "Waiting for a reviewer's approval",
    HoldReason.DELAY: "In a hold period (released automatically)",
    HoldReason.RECIPIENT: "Waiting for the recipient to confirm",
}


@dataclass(frozen=True)
class QueueRow:
    name: str
    role: str
    visible: int
    in_flight: int
    delayed: int
    is_dlq: bool

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed


@dataclass(frozen=True)
class WorkerRow:
    hostname: str
    pid: int
    age_seconds: float
    fresh: bool


def queue_rows() -> list[QueueRow] | None:
    """Each queue's depth, or None when SQS cannot be read (any error: the page must not fail with SQS)."""
    try:
        client = sqs_client()
        rows = []
        for queue in ALL_QUEUES:
            depth = queue_depth(client, queue)
            rows.append(
                QueueRow(
                    name=sqs_name(queue),
                    role=QUEUE_ROLES.get(queue, ""),
                    visible=depth["visible"],
                    in_flight=depth["in_flight"],
                    delayed=depth["delayed"],
                    is_dlq=queue == GIFT_DLQ,
                )
            )
        return rows
    except Exception as exc:  # noqa: BLE001 - SQS down, slow or missing a queue: say so, show the rest
        logger.warning("operations page could not read SQS error=%s", type(exc).__name__)
        return None


def worker_rows(*, now: float) -> list[WorkerRow]:
    """The heartbeats of the workers on this machine, stale ones included (they are the news)."""
    stale_after = settings.WORKER_HEARTBEAT_STALE_AFTER
    return [
        WorkerRow(
            hostname=beat.hostname, pid=beat.pid, age_seconds=beat.age(now=now), fresh=beat.age(now=now) <= stale_after
        )
        for beat in heartbeats_read()
    ]


def duration(seconds: float) -> str:
    """A short human duration: `42 s`, `3 min 5 s`, `2 h 10 min`, `3 d 4 h`."""
    seconds = max(int(seconds), 0)
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def chart_window(now: datetime) -> tuple[datetime, datetime]:
    """24 hours of whole buckets, the last one holding `now`."""
    until = datetime.fromtimestamp(
        (int(now.timestamp()) // CHART_BUCKET_SECONDS + 1) * CHART_BUCKET_SECONDS, tz=now.tzinfo
    )
    return until - CHART_WINDOW, until


def operations_view(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    queues = queue_rows()
    dlq = next((row for row in queues if row.is_dlq), None) if queues is not None else None
    held = held_gift_counts()
    since, until = chart_window(now)
    buckets = deliveries_per_bucket(since=since, until=until, bucket_seconds=CHART_BUCKET_SECONDS)
    workers = worker_rows(now=time.time())
    by_status = gift_counts_by_status()
    oldest_queued = oldest_queued_gift_age_seconds(now=now)
    context = {
        **admin.site.each_context(request),
        "title": "Operations",
        "now": now,
        "queues": queues,
        "dlq": dlq,
        "held": [{"reason": r.value, "label": label, "count": held[r.value]} for r, label in HOLD_LABELS.items()],
        "held_total": sum(held.values()),
        "by_status": [{"status": s.value, "label": s.label, "count": by_status[s.value]} for s in GiftStatus],
        "oldest_queued": duration(oldest_queued) if by_status[GiftStatus.QUEUED.value] else None,
        "republish_after": settings.GIFT_REPUBLISH_AFTER,
        "workers": [{"row": row, "age": duration(row.age_seconds)} for row in workers],
        "workers_fresh": sum(row.fresh for row in workers),
        "stale_after": settings.WORKER_HEARTBEAT_STALE_AFTER,
        "heartbeat_dir": settings.WORKER_HEARTBEAT_DIR,
        # Built from escaped parts only (gifting.ops_chart escapes every text it writes).
        "chart": mark_safe(deliveries_svg(buckets, bucket_seconds=CHART_BUCKET_SECONDS)),  # noqa: S308
        "chart_hours": hourly_totals(buckets),
        "chart_since": since,
        "chart_until": until,
        "can_view_gifts": request.user.has_perm("gifting.view_gift"),
        "can_view_review_queue": request.user.has_perm("gifting.view_giftreview"),
    }
    return TemplateResponse(request, "admin/gifting/operations.html", context)
