"""The outbox: publishing delivery messages, noting retries, dead-lettering, redriving, and the sweeper.

A gift in `queued` must always have a live message on SQS or be about to get
one: publishing happens after commit, and when it fails (or SQS loses the
message) the sweeper publishes again. A spare message is harmless: delivery
is idempotent.
"""

import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from core.sqs import GIFT_DLQ
from gifting import events, instruments
from gifting.models import Gift, GiftEventType, GiftState, GiftStatus
from gifting.publishing import publish_delivery
from gifting.transitions import WrongState, gift_lock, gift_move

logger = logging.getLogger(__name__)

SWEEP_BATCH_SIZE = 500
# The sweeper waits longer before each re-publication of the same gift: as long as the gift has
# already waited, up to this. A backlog deeper than GIFT_REPUBLISH_AFTER is then not re-published
# every sweep (which deepens the queue it waits in), while a lost message is still found soon.
REPUBLISH_BACKOFF_MAX = timedelta(hours=1)
# A failed gift's dead letter is accounted for by either: sent, or deleted by an operator.
DEAD_LETTER_EVENTS = (GiftEventType.DEAD_LETTERED, GiftEventType.DEAD_LETTER_PURGED)


def gift_publish(*, gift_id: uuid.UUID, actor_label: str = "api") -> bool:
    """Publish a delivery message for a queued gift; on failure leave it to the sweeper."""
    # Only its id is used here (for the message and the events): the rest of the row, with its
    # encrypted recipient and message to decrypt, would be read for nothing.
    gift = Gift.objects.only("id").get(id=gift_id)
    sent_at = timezone.now()
    try:
        message_id = publish_delivery(gift.id)
    except Exception as exc:  # noqa: BLE001 - whatever the broker does, the gift stays queued
        logger.warning("gift publish failed gift=%s error=%s", gift.id, type(exc).__name__)
        instruments.PUBLISH_FAILURES.inc()
        events.gift_publish_failed(gift, error=type(exc).__name__, actor_label=actor_label)
        return False
    now = timezone.now()
    # Bookkeeping only, no state change: a conditional UPDATE needs no lock. The sweeper has
    # already set when this gift is due again (gifts_republish_stale).
    due = {} if actor_label == "sweeper" else {"next_attempt_at": now}
    Gift.objects.filter(id=gift.id, status=GiftStatus.QUEUED).update(last_published_at=now, **due)
    instruments.PUBLISHED.inc()
    if actor_label == "sweeper":
        instruments.REPUBLISHED.inc()
        events.gift_republished(gift, message_id=message_id, sent_at=sent_at)
    else:
        events.gift_queued(gift, message_id=message_id, actor_label=actor_label, sent_at=sent_at)
    return True


def gift_record_retry(*, gift_id: uuid.UUID, reason: str, delay_seconds: int, error: str = "") -> None:
    """Note a published retry, so the sweeper leaves the gift alone while it waits; `error` is its class."""
    now = timezone.now()
    retry_at = now + timedelta(seconds=delay_seconds)
    with transaction.atomic():
        try:
            gift = gift_lock(gift_id=gift_id, allowed_from={GiftState.QUEUED})
        except WrongState:
            return
        gift.last_published_at = now
        gift.next_attempt_at = retry_at
        gift.save(update_fields=["last_published_at", "next_attempt_at", "updated_at"])
        events.gift_retry_scheduled(gift, reason=reason, retry_at=retry_at.isoformat(), delay_seconds=delay_seconds)
    instruments.delivery_counted(outcome="retried", channel=instruments.channel_of(gift), error=error)


def gift_dead_letter(*, gift_id: uuid.UUID) -> None:
    """Put the gift's message on the DLQ, in the gift queue's own format, for a later redrive."""
    sent_at = timezone.now()
    message_id = publish_delivery(gift_id, queue=GIFT_DLQ)
    gift = Gift.objects.get(id=gift_id)
    events.gift_dead_lettered(gift, message_id=message_id, sent_at=sent_at)
    instruments.delivery_counted(outcome="dead_lettered", channel=instruments.channel_of(gift))
    logger.error("gift dead-lettered gift=%s", gift_id)


def gift_requeue_for_redrive(
    *,
    gift_id: uuid.UUID,
    operator: str,
    actor: AbstractBaseUser | None = None,
    message_id: str | None = None,
    duplicates_deleted: int = 0,
) -> bool:
    """Return a failed gift to `queued` before its dead letter goes back on the gift queue.

    Only a `failed` gift moves, under its lock: two operators redriving at once
    move it once, and a gift already queued or delivered is refused (False), so
    its message is never sent a second time. `message_id` is the dead letter
    about to be moved, None when a fresh message will be published instead;
    `operator` (and the staff `actor`, from the admin) goes into the audit log.
    """
    now = timezone.now()
    with transaction.atomic():
        try:
            gift = gift_lock(gift_id=gift_id, allowed_from={GiftState.FAILED})
        except (Gift.DoesNotExist, WrongState):
            return False
        gift.last_error = ""
        gift.last_published_at = now
        gift.next_attempt_at = now
        gift_move(gift, to=GiftState.QUEUED, also=["last_error", "last_published_at", "next_attempt_at"])
        events.gift_redriven(
            gift, operator=operator, actor=actor, message_id=message_id, duplicates_deleted=duplicates_deleted
        )
    return True


def gifts_republish_stale(*, now: datetime | None = None) -> int:
    """The outbox sweeper: re-publish queued gifts whose message is overdue.

    A gift is overdue when its message should have become visible more than
    GIFT_REPUBLISH_AFTER seconds ago and it is still queued: the publish failed
    or the broker lost the message. Rows a worker holds (mid-send) are skipped.
    Each re-publication pushes the gift's next one back by as long as the gift
    has waited (REPUBLISH_BACKOFF_MAX at most), so copies grow geometrically
    rarer while a backlog drains.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.GIFT_REPUBLISH_AFTER)
    with transaction.atomic():
        overdue = list(
            Gift.objects.select_for_update(skip_locked=True)
            .filter(status=GiftStatus.QUEUED, next_attempt_at__lt=cutoff)
            .order_by("next_attempt_at")
            .only("id", "created_at", "next_attempt_at")[:SWEEP_BATCH_SIZE]
        )
        # Push them forward first, so a slow sweep never races the next one.
        for gift in overdue:
            gift.next_attempt_at = now + min(max(now - gift.created_at, timedelta(0)), REPUBLISH_BACKOFF_MAX)
        Gift.objects.bulk_update(overdue, ["next_attempt_at"])
    published = sum(gift_publish(gift_id=gift.id, actor_label="sweeper") for gift in overdue)
    if overdue:
        logger.info("sweeper re-published %s of %s overdue gifts", published, len(overdue))
    return published + gifts_dead_letter_missing(now=now)


def gifts_dead_letter_missing(*, now: datetime) -> int:
    """Dead-letter failed gifts whose dead letter never reached the DLQ (SQS down, or a worker died, in between).

    A gift is marked failed before its message is sent to the DLQ; this finds
    failed gifts with no `dead_lettered` event after their last `failed` one,
    GIFT_REPUBLISH_AFTER seconds on, and sends it. A spare copy is harmless:
    `dlq redrive` moves one and deletes the others.
    """
    cutoff = now - timedelta(seconds=settings.GIFT_REPUBLISH_AFTER)
    missing = list(
        Gift.objects.filter(status=GiftStatus.FAILED, updated_at__lt=cutoff)
        .annotate(
            last_failed=Max("events__id", filter=Q(events__type=GiftEventType.FAILED)),
            last_dead_letter=Max("events__id", filter=Q(events__type__in=DEAD_LETTER_EVENTS)),
        )
        .filter(Q(last_dead_letter__isnull=True) | Q(last_dead_letter__lt=F("last_failed")))
        .values_list("id", flat=True)[:SWEEP_BATCH_SIZE]
    )
    sent = 0
    for gift_id in missing:
        try:
            gift_dead_letter(gift_id=gift_id)
            sent += 1
        except Exception as exc:  # noqa: BLE001 - SQS still down: the next sweep tries again
            logger.warning("dead letter still not sent gift=%s error=%s", gift_id, type(exc).__name__)
    return sent
