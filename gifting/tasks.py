"""Delivery tasks: load, call a service, classify errors. No business logic here."""

import logging
import time

from celery import Task, shared_task
from celery.exceptions import Retry
from django.conf import settings
from django.db import InterfaceError, OperationalError

from core.logging import METRICS
from core.sqs import SQS_MAX_DELAY_SECONDS
from gifting import instruments
from gifting.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from gifting.idempotency import idempotency_keys_purge_expired
from gifting.models import Gift
from gifting.monitoring import queues_monitor
from gifting.publishing import DELIVER_TASK, gift_id_from_args
from gifting.services import delivery, holds, outbox

logger = logging.getLogger(__name__)

FAILURE_REASONS = {
    "exhausted": "Delivery kept failing; we stopped retrying.",
    "permanent": "The voucher could not be delivered.",
    "crashed": "Delivery failed unexpectedly.",
}


class DeliverGiftTask(Task):
    """acks_late + reject_on_worker_lost; transient errors retried through SQS DelaySeconds.

    Celery's own countdown would make the worker hold the retry in memory,
    and past the visibility timeout SQS would hand the message to another
    worker; a delay carried by SQS has no such hazard.
    """

    acks_late = True
    reject_on_worker_lost = True
    autoretry_for = (TransientDeliveryError,)
    retry_backoff = settings.GIFT_RETRY_BACKOFF_BASE
    retry_backoff_max = settings.GIFT_RETRY_BACKOFF_MAX
    retry_jitter = True
    max_retries = settings.GIFT_MAX_RETRIES

    def retry(
        self, args=None, kwargs=None, exc=None, throw=True, eta=None, countdown=None, max_retries=None, **options
    ):
        delay_seconds = min(int(countdown or 0), SQS_MAX_DELAY_SECONDS)
        try:
            return super().retry(
                args=args,
                kwargs=kwargs,
                exc=exc,
                throw=throw,
                countdown=0,
                max_retries=max_retries,
                delay_seconds=delay_seconds,
                **options,
            )
        except Retry:
            # Reached only once the retry message is on SQS.
            gift_id = gift_id_from_args(self.request.args)
            reason = exc.reason if isinstance(exc, DeliveryError) else "Temporary failure."
            try:
                outbox.gift_record_retry(
                    gift_id=gift_id, reason=reason, delay_seconds=delay_seconds, error=type(exc).__name__
                )
            except (OperationalError, InterfaceError) as db_error:
                # The retry is on SQS already; only its bookkeeping (which keeps the sweeper from sending
                # a spare copy, harmless) is missing. Failing the task here would dead-letter a gift for
                # a passing database error.
                logger.warning("retry not recorded gift=%s error=%s", gift_id, type(db_error).__name__)
            raise

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        """Retries exhausted, a permanent error or a crash: mark the gift failed and dead-letter it."""
        gift_id = gift_id_from_args(args)
        if gift_id is None:
            return
        if isinstance(exc, TransientDeliveryError):
            reason, cause = FAILURE_REASONS["exhausted"], "retries_exhausted"
        elif isinstance(exc, DeliveryError):
            reason, cause = FAILURE_REASONS["permanent"], "permanent_error"
        else:
            reason, cause = FAILURE_REASONS["crashed"], type(exc).__name__
        if delivery.gift_fail(gift_id=gift_id, reason=reason, cause=cause):
            outbox.gift_dead_letter(gift_id=gift_id)


def _sqs_attributes(request) -> dict:
    """The SQS message attributes kombu fetched with the message (SentTimestamp, ApproximateReceiveCount)."""
    delivery_info = (getattr(request, "properties", None) or {}).get("delivery_info") or request.delivery_info or {}
    return (delivery_info.get("sqs_message") or {}).get("Attributes") or {}


@shared_task(bind=True, base=DeliverGiftTask, name=DELIVER_TASK)
def deliver_gift(self: DeliverGiftTask, gift_id: str) -> None:
    parsed_id = gift_id_from_args([gift_id])
    if parsed_id is None:
        logger.error("dropping delivery message with a malformed gift id task=%s", self.request.id)
        return
    attributes = _sqs_attributes(self.request)
    receive_count = instruments.message_taken(
        sent_timestamp_ms=attributes.get("SentTimestamp"),
        receive_count=attributes.get("ApproximateReceiveCount"),
        gift_id=parsed_id,
    )
    started, outcome = time.monotonic(), "crashed"
    try:
        outcome = "sent" if delivery.gift_deliver(gift_id=parsed_id) else "duplicate_ignored"
    except Gift.DoesNotExist:
        outcome = "unknown_gift"
        logger.error("dropping delivery message for an unknown gift gift=%s", parsed_id)
    except (OperationalError, InterfaceError) as exc:
        # The database is unreachable: nothing was recorded, so try again later.
        outcome = "database_unavailable"
        raise TransientDeliveryError("Temporary failure.") from exc
    except DeliveryError as exc:
        outcome = "permanent_error" if isinstance(exc, PermanentDeliveryError) else "transient_error"
        raise
    finally:
        _log_metrics(self, gift_id=parsed_id, outcome=outcome, started=started, attributes=attributes,
                     receive_count=receive_count)  # fmt: skip


def _log_metrics(task: Task, *, gift_id, outcome: str, started: float, attributes: dict, receive_count) -> None:
    """The `[METRICS]` record of one delivery task, with its figures as fields."""
    sent_ms = attributes.get("SentTimestamp")
    fields = {
        "marker": METRICS,
        "gift_id": str(gift_id),
        "task_id": task.request.id,
        "attempt": task.request.retries + 1,
        "outcome": outcome,
        "duration_seconds": round(time.monotonic() - started, 3),
        "message_age_seconds": round(time.time() - int(sent_ms) / 1000, 3) if sent_ms else None,
        "receive_count": receive_count,
    }
    logger.info(
        "[METRICS] delivery gift=%s outcome=%s duration=%.3fs attempt=%s",
        gift_id,
        outcome,
        fields["duration_seconds"],
        fields["attempt"],
        extra=fields,
    )


@shared_task(name="gifting.sweep_stale_gifts")
def sweep_stale_gifts() -> int:
    return outbox.gifts_republish_stale()


@shared_task(name="gifting.sweep_ended_holds")
def sweep_ended_holds() -> int:
    return holds.gifts_release_ended_holds()


@shared_task(name="gifting.sweep_idempotency_keys")
def sweep_idempotency_keys() -> int:
    return idempotency_keys_purge_expired()


@shared_task(name="gifting.monitor_queues")
def monitor_queues() -> int:
    return len(queues_monitor())
