"""Writes on held gifts: reviewers' approve and reject, the end of a hold period, and the recipient's confirmation."""

import logging
import uuid
from datetime import datetime
from functools import partial

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from fraud.models import HoldTier, RecipientVerification, ReviewOutcome, RiskAssessment
from fraud.verification import verification_find
from gifting import events
from gifting.models import Gift, GiftStatus
from gifting.services import gift_publish

logger = logging.getLogger(__name__)

REVIEW_PERMISSION = "fraud.review_gift"
MAX_REASON_LENGTH = 500


class ReviewError(Exception):
    """A review that cannot be done; the message says why, for the reviewer."""


class VerificationError(Exception):
    """A recipient's confirmation link that cannot be used; the message says why."""


def _release(gift: Gift, *, actor_label: str, now: datetime | None = None) -> None:
    """Clear a held gift for delivery: queue it and publish once the transaction commits."""
    now = now or timezone.now()
    gift.status = GiftStatus.QUEUED
    gift.next_attempt_at = now
    gift.save(update_fields=["status", "next_attempt_at", "updated_at"])
    RiskAssessment.objects.filter(gift=gift, released_at__isnull=True).update(released_at=now)
    events.gift_released(gift, actor_label=actor_label)
    transaction.on_commit(partial(gift_publish, gift_id=gift.id, actor_label=actor_label))


def _lock_for_review(*, gift_id: uuid.UUID, reviewer: AbstractBaseUser) -> tuple[Gift, RiskAssessment]:
    if not reviewer.has_perm(REVIEW_PERMISSION):
        raise ReviewError("You do not have permission to review gifts.")
    gift = Gift.objects.select_for_update().filter(id=gift_id).first()
    if gift is None:
        raise ReviewError("No such gift.")
    if gift.sender_id == reviewer.pk:
        raise ReviewError("You cannot review your own gift.")
    if gift.status != GiftStatus.HELD:
        raise ReviewError(f"Only held gifts can be reviewed; this one is {gift.status}.")
    risk = RiskAssessment.objects.select_for_update().get(gift=gift)
    return gift, risk


def _record_review(risk: RiskAssessment, *, outcome: str, reviewer: AbstractBaseUser, reason: str) -> None:
    risk.review_outcome = outcome
    risk.reviewed_by = reviewer
    risk.reviewed_at = timezone.now()
    risk.review_reason = reason
    risk.save(update_fields=["review_outcome", "reviewed_by", "reviewed_at", "review_reason"])


def gift_approve(*, gift_id: uuid.UUID, reviewer: AbstractBaseUser, reason: str = "") -> Gift:
    """A reviewer lets a held gift go: it is queued and published for delivery."""
    reason = reason.strip()[:MAX_REASON_LENGTH]
    with transaction.atomic():
        gift, risk = _lock_for_review(gift_id=gift_id, reviewer=reviewer)
        if risk.review_outcome:
            raise ReviewError("This gift has already been reviewed.")
        _record_review(risk, outcome=ReviewOutcome.APPROVED, reviewer=reviewer, reason=reason)
        events.gift_approved(gift, reviewer=reviewer, review_reason=reason)
        _release(gift, actor_label="reviewer")
    logger.info("gift approved gift=%s reviewer=%s", gift.id, reviewer.pk)
    return gift


def gift_reject(*, gift_id: uuid.UUID, reviewer: AbstractBaseUser, reason: str) -> Gift:
    """A reviewer refuses a held gift, with a reason; the sender sees it `rejected`."""
    reason = reason.strip()
    if not reason:
        raise ReviewError("A reason is required to reject a gift.")
    if len(reason) > MAX_REASON_LENGTH:
        raise ReviewError(f"Keep the reason under {MAX_REASON_LENGTH} characters.")
    with transaction.atomic():
        gift, risk = _lock_for_review(gift_id=gift_id, reviewer=reviewer)
        _record_review(risk, outcome=ReviewOutcome.REJECTED, reviewer=reviewer, reason=reason)
        gift.status = GiftStatus.REJECTED
        gift.save(update_fields=["status", "updated_at"])
        events.gift_rejected(gift, reviewer=reviewer, review_reason=reason)
    logger.info("gift rejected gift=%s reviewer=%s", gift.id, reviewer.pk)
    return gift


def gifts_release_ended_holds(*, now: datetime | None = None) -> int:
    """Release delayed gifts whose hold period is over and that no reviewer blocked."""
    now = now or timezone.now()
    released = 0
    with transaction.atomic():
        due = (
            Gift.objects.select_for_update(skip_locked=True)
            .filter(
                status=GiftStatus.HELD,
                risk__hold_tier=HoldTier.DELAY,
                risk__release_at__lte=now,
                risk__review_outcome="",
                risk__released_at__isnull=True,
            )
            .order_by("created_at")
        )
        for gift in due:
            _release(gift, actor_label="sweeper", now=now)
            released += 1
    if released:
        logger.info("released %s gifts whose hold period ended", released)
    return released


def _lock_verification(token: str) -> tuple[RecipientVerification, Gift]:
    """The verification a link's token names and its gift, both locked; call inside a transaction."""
    verification = verification_find(token=token)
    if verification is None:
        raise VerificationError("This link is not valid. Use the newest link you received.")
    verification = RecipientVerification.objects.select_for_update().get(pk=verification.pk)
    return verification, Gift.objects.select_for_update().get(pk=verification.gift_id)


def gift_confirm_recipient(*, token: str) -> Gift:
    """The recipient followed their link: the gift goes out. Each link works once, until it expires."""
    with transaction.atomic():
        verification, gift = _lock_verification(token)
        if verification.confirmed_at is not None:
            raise VerificationError("This link has already been used.")
        if verification.expires_at <= timezone.now():
            raise VerificationError("This link has expired. Open it again to ask for a new one.")
        if gift.status != GiftStatus.HELD:
            raise VerificationError("This gift can no longer be confirmed.")
        verification.confirmed_at = timezone.now()
        verification.save(update_fields=["confirmed_at"])
        events.gift_recipient_confirmed(gift)
        _release(gift, actor_label="recipient")
    return gift


def gift_resend_verification(*, token: str) -> Gift:
    """An expired link asks for a new one: the gift is queued again and the worker sends a fresh link."""
    with transaction.atomic():
        verification, gift = _lock_verification(token)
        if verification.confirmed_at is not None or gift.status != GiftStatus.HELD:
            raise VerificationError("This gift no longer needs a confirmation.")
        if verification.expires_at > timezone.now():
            raise VerificationError("This link still works: use it to confirm your address.")
        _release(gift, actor_label="recipient")
    return gift
