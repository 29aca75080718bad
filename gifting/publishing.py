"""Putting gift messages on SQS. A message names the gift id and nothing else."""

import uuid

from django.conf import settings

from config.celery import app

DELIVER_TASK = "gifting.deliver_gift"

# Bounded: a dead broker costs a request a second or two, never a hang.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def publish_delivery(gift_id: uuid.UUID | str, *, queue: str = settings.GIFT_QUEUE, delay_seconds: int = 0) -> str:
    """Send one delivery message for the gift to `queue`; returns its task id."""
    result = app.send_task(
        DELIVER_TASK,
        args=[str(gift_id)],
        queue=queue,
        retry=True,
        retry_policy=PUBLISH_RETRY_POLICY,
        delay_seconds=delay_seconds or None,
    )
    return result.id
