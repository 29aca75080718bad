"""Every write to a gift: create, publish, deliver, retry, fail, re-publish."""

import logging
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from fraud.emails import send_verification_email
from fraud.models import Decision, RiskAssessment
from fraud.services import gift_assess, risk_assessment_record
from fraud.verification import is_recipient_verified, verification_issue_token
from gifting import events
from gifting.channels import deliver_voucher
from gifting.errors import DeliveryError
from gifting.masking import mask_recipient
from gifting.models import Gift, GiftStatus
from gifting.publishing import publish_delivery
from vouchers.services import voucher_issue_for_gift

logger = logging.getLogger(__name__)

SWEEP_BATCH_SIZE = 500
STATUS_FOR_DECISION = {
    Decision.ALLOW: GiftStatus.QUEUED,
    Decision.HOLD: GiftStatus.HELD,
    Decision.REJECT: GiftStatus.REJECTED,
}


def gift_create(
    *,
    sender: AbstractBaseUser,
    amount: Decimal,
    currency: str,
    recipient_email: str = "",
    recipient_wallet: str = "",
    message: str = "",
) -> Gift:
    """Assess and store a gift with its audit trail; publish it on commit if it may go out now.

    Over a hard limit it raises fraud's LimitExceeded and nothing is stored.
    A gift the rules reject is stored as `rejected`; one they hold, as `held`.
    """
    now = timezone.now()
    gift = Gift(
        sender=sender,
        recipient_email=recipient_email,
        recipient_wallet=recipient_wallet,
        amount=amount,
        currency=currency,
        message=message,
        status=GiftStatus.QUEUED,
        next_attempt_at=now,
    )
    gift.full_clean()
    with transaction.atomic():
        verdict = gift_assess(
            sender=sender,
            amount=gift.amount,  # cleaned to a Decimal by full_clean
            recipient_email=recipient_email,
            recipient_wallet=recipient_wallet,
            now=now,
        )
        gift.status = STATUS_FOR_DECISION[verdict.decision]
        gift.save()
        events.gift_created(gift, actor=sender)
        risk_assessment_record(gift=gift, verdict=verdict)
        if gift.status == GiftStatus.REJECTED:
            events.gift_rejected(gift, reviewer=None, review_reason="Refused by the risk rules.")
        elif gift.status == GiftStatus.HELD:
            release_at = verdict.release_at.isoformat() if verdict.release_at else None
            events.gift_held(gift, tier=verdict.hold_tier, release_at=release_at)
        else:
            transaction.on_commit(partial(gift_publish, gift_id=gift.id))
    logger.info(
        "gift accepted gift=%s sender=%s recipient=%s amount=%s %s decision=%s score=%s",
        gift.id,
        sender.pk,
        mask_recipient(email=recipient_email, wallet=recipient_wallet),
        gift.amount,
        gift.currency,
        verdict.decision,
        verdict.score,
    )
    return gift


def gift_publish(*, gift_id: uuid.UUID, actor_label: str = "api") -> bool:
    """Publish a delivery message for a queued gift; on failure leave it to the sweeper."""
    gift = Gift.objects.get(id=gift_id)
    try:
        message_id = publish_delivery(gift.id)
    except Exception as exc:  # noqa: BLE001 - whatever the broker does, the gift stays queued
        logger.warning("gift publish failed gift=%s error=%s", gift.id, type(exc).__name__)
        events.gift_publish_failed(gift, error=type(exc).__name__, actor_label=actor_label)
        return False
    now = timezone.now()
    Gift.objects.filter(id=gift.id, status=GiftStatus.QUEUED).update(last_published_at=now, next_attempt_at=now)
    if actor_label == "sweeper":
        events.gift_republished(gift, message_id=message_id)
    else:
        events.gift_queued(gift, message_id=message_id, actor_label=actor_label)
    return True


def gift_deliver(*, gift_id: uuid.UUID) -> bool:
    """Issue the gift's voucher and deliver it, exactly once.

    The gift row stays locked while sending, so a duplicated or redelivered
    message waits for the first worker and then finds the gift delivered. If a
    worker dies mid-send its transaction rolls back and SQS redelivers the
    message after the visibility timeout. A gift whose recipient must first
    confirm their address gets the confirmation email instead and waits, held.
    Returns False when there was nothing to do; raises a DeliveryError (after
    recording it) when sending failed.
    """
    with transaction.atomic():
        gift = Gift.objects.select_for_update().select_related("sender").get(id=gift_id)
        if gift.status != GiftStatus.QUEUED:
            events.gift_duplicate_ignored(gift, status=gift.status)
            logger.info("gift delivery skipped gift=%s status=%s", gift.id, gift.status)
            return False
        gift.attempts += 1
        events.gift_delivery_attempted(gift, attempt=gift.attempts)
        try:
            if _awaits_recipient(gift):
                send_verification_email(gift=gift, token=verification_issue_token(gift=gift))
                channel = None
            else:
                channel = deliver_voucher(gift=gift, voucher=voucher_issue_for_gift(gift=gift))
        except DeliveryError as exc:
            gift.last_error = exc.reason
            gift.save(update_fields=["attempts", "last_error", "updated_at"])
            logger.warning(
                "gift delivery failed gift=%s attempt=%s error=%s", gift.id, gift.attempts, type(exc).__name__
            )
            failure = exc
        else:
            gift.last_error = ""
            if channel is None:
                gift.status = GiftStatus.HELD
                events.gift_verification_sent(gift)
                logger.info("gift waits for its recipient gift=%s", gift.id)
            else:
                gift.status = GiftStatus.DELIVERED
                gift.delivered_at = timezone.now()
                events.gift_delivered(gift, channel=channel)
                logger.info("gift delivered gift=%s attempt=%s channel=%s", gift.id, gift.attempts, channel)
            gift.save(update_fields=["status", "attempts", "last_error", "delivered_at", "updated_at"])
            return True
    raise failure


def _awaits_recipient(gift: Gift) -> bool:
    """The gift's recipient must confirm their address and has not yet."""
    needs = RiskAssessment.objects.filter(gift=gift, needs_recipient_verification=True).exists()
    return needs and not is_recipient_verified(gift=gift)


def gift_record_retry(*, gift_id: uuid.UUID, reason: str, delay_seconds: int) -> None:
    """Note a published retry, so the sweeper leaves the gift alone while it waits."""
    now = timezone.now()
    retry_at = now + timedelta(seconds=delay_seconds)
    with transaction.atomic():
        gift = Gift.objects.select_for_update().get(id=gift_id)
        if gift.status != GiftStatus.QUEUED:
            return
        gift.last_published_at = now
        gift.next_attempt_at = retry_at
        gift.save(update_fields=["last_published_at", "next_attempt_at", "updated_at"])
        events.gift_retry_scheduled(gift, reason=reason, retry_at=retry_at.isoformat(), delay_seconds=delay_seconds)


def gift_fail(*, gift_id: uuid.UUID, reason: str, cause: str) -> bool:
    """Mark a gift failed for good. Returns False if it is unknown or no longer queued."""
    with transaction.atomic():
        gift = Gift.objects.select_for_update().filter(id=gift_id).first()
        if gift is None or gift.status != GiftStatus.QUEUED:
            return False
        gift.status = GiftStatus.FAILED
        gift.last_error = reason
        gift.save(update_fields=["status", "last_error", "updated_at"])
        events.gift_failed(gift, reason=reason, cause=cause)
    logger.error("gift failed gift=%s cause=%s", gift.id, cause)
    return True


def gift_dead_letter(*, gift_id: uuid.UUID) -> None:
    """Put the gift's message on the DLQ, in the gift queue's own format, for a later redrive."""
    message_id = publish_delivery(gift_id, queue=settings.GIFT_DLQ)
    events.gift_dead_lettered(Gift.objects.get(id=gift_id), message_id=message_id)
    logger.error("gift dead-lettered gift=%s", gift_id)


def gift_requeue_for_redrive(*, gift_id: uuid.UUID) -> bool:
    """Return a failed gift to `queued` before its dead letter goes back on the gift queue."""
    now = timezone.now()
    with transaction.atomic():
        gift = Gift.objects.select_for_update().filter(id=gift_id).first()
        if gift is None or gift.status != GiftStatus.FAILED:
            return False
        gift.status = GiftStatus.QUEUED
        gift.last_error = ""
        gift.last_published_at = now
        gift.next_attempt_at = now
        gift.save(update_fields=["status", "last_error", "last_published_at", "next_attempt_at", "updated_at"])
        events.gift_redriven(gift)
    return True


def gifts_republish_stale(*, now: datetime | None = None) -> int:
    """The outbox sweeper: re-publish queued gifts whose message is overdue.

    A gift is overdue when its message should have become visible more than
    GIFT_REPUBLISH_AFTER seconds ago and it is still queued: the publish failed
    or the broker lost the message. Rows a worker holds (mid-send) are skipped.
    A spare message is harmless: delivery is idempotent.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.GIFT_REPUBLISH_AFTER)
    with transaction.atomic():
        overdue = list(
            Gift.objects.select_for_update(skip_locked=True)
            .filter(status=GiftStatus.QUEUED, next_attempt_at__lt=cutoff)
            .order_by("next_attempt_at")
            .values_list("id", flat=True)[:SWEEP_BATCH_SIZE]
        )
        # Push them forward first, so a slow sweep never races the next one.
        Gift.objects.filter(id__in=overdue).update(next_attempt_at=now)
    published = sum(gift_publish(gift_id=gift_id, actor_label="sweeper") for gift_id in overdue)
    if overdue:
        logger.info("sweeper re-published %s of %s overdue gifts", published, len(overdue))
    return published
