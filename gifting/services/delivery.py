"""Delivering a gift: issue its one voucher and send it, or ask its recipient to confirm first; fail for good."""

import logging
import time
import uuid

from django.db import transaction
from django.utils import timezone

from fraud import selectors as fraud_selectors
from fraud.verification import link_issue
from gifting import events, instruments
from gifting.channels import deliver_voucher, send_verification_email
from gifting.errors import DeliveryError
from gifting.models import Gift, GiftState
from gifting.transitions import WrongState, gift_lock, gift_move
from vouchers.services import voucher_issue_for_gift

logger = logging.getLogger(__name__)


def gift_deliver(*, gift_id: uuid.UUID) -> bool:
    """Issue the gift's voucher and deliver it, exactly once.

    The gift row stays locked while sending, so a duplicated or redelivered
    message waits for the first worker and then finds the gift delivered. If a
    worker dies mid-send its transaction rolls back and SQS redelivers the
    message after the visibility timeout. A gift whose recipient must first
    confirm their address gets the confirmation email instead and waits, held.
    Returns False when there was nothing to do; raises a DeliveryError (after
    recording it) when sending failed, and Gift.DoesNotExist for an unknown gift.
    """
    started = time.monotonic()
    failure: DeliveryError | None = None
    with transaction.atomic():
        try:
            gift = gift_lock(gift_id=gift_id, allowed_from={GiftState.QUEUED})
        except WrongState as wrong:
            events.gift_duplicate_ignored(wrong.gift, status=wrong.gift.status)
            logger.info("gift delivery skipped gift=%s status=%s", wrong.gift.id, wrong.gift.status)
            instruments.delivery_counted(outcome="duplicate_ignored", channel=instruments.channel_of(wrong.gift))
            return False
        gift.attempts += 1
        attempted = events.gift_delivery_attempted(gift, attempt=gift.attempts)
        try:
            if fraud_selectors.recipient_must_confirm(gift_id=gift.id):
                # The verification row hangs off the gift: locked after it, as everywhere.
                send_verification_email(gift=gift, token=link_issue(gift_id=gift.id))
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
                gift_move(gift, to=GiftState.HELD_FOR_RECIPIENT, also=["attempts", "last_error"])
                events.gift_verification_sent(gift, previous=attempted)
                logger.info("gift waits for its recipient gift=%s", gift.id)
            else:
                gift.delivered_at = timezone.now()
                gift_move(gift, to=GiftState.DELIVERED, also=["attempts", "last_error", "delivered_at"])
                events.gift_delivered(gift, channel=channel, previous=attempted)
                logger.info("gift delivered gift=%s attempt=%s channel=%s", gift.id, gift.attempts, channel)
    # Counted once the transaction has committed: what the metrics say happened, happened.
    instruments.delivery_timed(
        channel=instruments.channel_of(gift), seconds=time.monotonic() - started, gift_id=gift.id
    )
    if failure is not None:
        raise failure
    if channel is not None:
        instruments.delivered(gift)
    return True


def gift_fail(*, gift_id: uuid.UUID, reason: str, cause: str) -> bool:
    """Mark a gift failed for good. Returns False if it is unknown or no longer queued."""
    with transaction.atomic():
        try:
            gift = gift_lock(gift_id=gift_id, allowed_from={GiftState.QUEUED})
        except (Gift.DoesNotExist, WrongState):
            return False
        gift.last_error = reason
        gift_move(gift, to=GiftState.FAILED, also=["last_error"])
        events.gift_failed(gift, reason=reason, cause=cause)
    logger.error("gift failed gift=%s cause=%s", gift.id, cause)
    instruments.delivery_counted(outcome="failed", channel=instruments.channel_of(gift), error=cause)
    return True
