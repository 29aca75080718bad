"""The delivery message: putting it on SQS, and reading the gift id back. It names the gift id and nothing else."""

import uuid

from celery import current_app

from core.sqs import GIFT_QUEUE

DELIVER_TASK = "gifting.deliver_gift"

# Bounded: a dead broker costs a request a second or two, never a hang.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def publish_delivery(gift_id: uuid.UUID | str, *, queue: str = GIFT_QUEUE, delay_seconds: int = 0) -> str:
    """Send one delivery message for the gift to `queue`; returns its task id."""
    result = current_app.send_task(
        DELIVER_TASK,
        args=[str(gift_id)],
        queue=queue,
        retry=True,
        retry_policy=PUBLISH_RETRY_POLICY,
        delay_seconds=delay_seconds or None,
    )
    return result.id


def gift_id_from_args(args: tuple | list | None) -> uuid.UUID | None:
    """The gift id a delivery message's arguments name, or None for a malformed message."""
    try:
        return uuid.UUID(str(args[0]))
    except (TypeError, IndexError, ValueError):
        return None
