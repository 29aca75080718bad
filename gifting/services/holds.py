"""Writes on held gifts: reviewers' approve and reject, the end of a hold period, and the recipient's link.

Every write here locks the gift first (gifting.transitions), then fraud's
rows that hang off it, in that order only.
"""

import logging
import uuid
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from fraud import services as fraud
from fraud.decisions import REVIEW_REASON_MAX_LENGTH, ReviewOutcome
from fraud.verification import LinkState, link_confirm, link_find, link_lock
from gifting import events
from gifting.models import Gift, GiftState, GiftStatus, HoldReason
from gifting.services.publisher import gift_publish_on_commit
from gifting.transitions import HELD_STATES, WrongState, gift_lock, gift_move

logger = logging.getLogger(__name__)

REVIEW_PERMISSION = "gifting.review_gift"


class ReviewError(Exception):
    """A review that cannot be done; the message says why, for the reviewer."""


class VerificationError(Exception):
    """A recipient's confirmation link that cannot be used; the message says why."""


LINK_REFUSALS = {
    LinkState.UNKNOWN: "This link is not valid. Use the newest link you received.",
    LinkState.USED: "This link has already been used.",
    LinkState.EXPIRED: "This link has expired. Open it again to ask for a new one.",
}


def _release(gift: Gift, *, actor_label: str, now: datetime | None = None) -> None:
    """Clear a locked, held gift for delivery: queue it and publish once the transaction commits."""
    now = now or timezone.now()
    gift.next_attempt_at = now
    gift_move(gift, to=GiftState.QUEUED, also=["next_attempt_at"])
    fraud.risk_mark_released(gift_id=gift.id, now=now)
    events.gift_released(gift, actor_label=actor_label)
    gift_publish_on_commit(gift_id=gift.id, actor_label=actor_label)


def _lock_for_review(*, gift_id: uuid.UUID, reviewer: AbstractBaseUser) -> Gift:
    if not reviewer.has_perm(REVIEW_PERMISSION):
        raise ReviewError("You do not have permission to review gifts.")
    try:
        gift = gift_lock(gift_id=gift_id, allowed_from=HELD_STATES)
    except Gift.DoesNotExist as exc:
        raise ReviewError("No such gift.") from exc
    except WrongState as wrong:
        if wrong.gift.sender_id == reviewer.pk:
            raise ReviewError("You cannot review your own gift.") from wrong
        raise ReviewError(f"Only held gifts can be reviewed; this one is {wrong.gift.status}.") from wrong
    if gift.sender_id == reviewer.pk:
        raise ReviewError("You cannot review your own gift.")
    return gift


def _record_review(gift: Gift, *, outcome: str, reviewer: AbstractBaseUser, reason: str) -> None:
    try:
        fraud.risk_record_review(gift_id=gift.id, outcome=outcome, reviewer=reviewer, reason=reason, now=timezone.now())
    except fraud.ReviewRefused as exc:
        raise ReviewError(str(exc)) from exc


def gift_approve(*, gift_id: uuid.UUID, reviewer: AbstractBaseUser, reason: str = "") -> Gift:
    """A reviewer lets a held gift go: it is queued and published for delivery."""
    reason = reason.strip()[:REVIEW_REASON_MAX_LENGTH]
    with transaction.atomic():
        gift = _lock_for_review(gift_id=gift_id, reviewer=reviewer)
        _record_review(gift, outcome=ReviewOutcome.APPROVED, reviewer=reviewer, reason=reason)
        events.gift_approved(gift, reviewer=reviewer, review_reason=reason)
        _release(gift, actor_label="reviewer")
    logger.info("gift approved gift=%s reviewer=%s", gift.id, reviewer.pk)
    return gift


def gift_reject(*, gift_id: uuid.UUID, reviewer: AbstractBaseUser, reason: str) -> Gift:
    """A reviewer refuses a held gift, with a reason; the sender sees it `rejected`."""
    reason = reason.strip()
    if not reason:
        raise ReviewError("A reason is required to reject a gift.")
    if len(reason) > REVIEW_REASON_MAX_LENGTH:
        raise ReviewError(f"Keep the reason under {REVIEW_REASON_MAX_LENGTH} characters.")
    with transaction.atomic():
        gift = _lock_for_review(gift_id=gift_id, reviewer=reviewer)
        _record_review(gift, outcome=ReviewOutcome.REJECTED, reviewer=reviewer, reason=reason)
        gift_move(gift, to=GiftState.REJECTED)
        events.gift_rejected(gift, reviewer=reviewer, review_reason=reason)
    logger.info("gift rejected gift=%s reviewer=%s", gift.id, reviewer.pk)
    return gift


def gifts_release_ended_holds(*, now: datetime | None = None) -> int:
    """Release gifts whose hold period is over (a reviewer's rejection has already ended theirs)."""
    now = now or timezone.now()
    released = 0
    with transaction.atomic():
        due = (
            Gift.objects.select_for_update(skip_locked=True)
            .filter(status=GiftStatus.HELD, hold=HoldReason.DELAY, hold_until__lte=now)
            .order_by("created_at")
        )
        for gift in due:
            _release(gift, actor_label="sweeper", now=now)
            released += 1
    if released:
        logger.info("released %s gifts whose hold period ended", released)
    return released


def _find_link(token: str) -> uuid.UUID:
    """The gift a link names, read without locks (a hint only: _lock_for_link checks again)."""
    link = link_find(token=token)
    if link is None:
        raise VerificationError(LINK_REFUSALS[LinkState.UNKNOWN])
    return link.gift_id


def _lock_for_link(gift_id: uuid.UUID, token: str) -> tuple[Gift, LinkState]:
    """The gift, locked, and its link's state re-read under the lock; inside a transaction.

    The gift is locked before its verification row (the order delivery uses),
    and the row is re-read by the token's hash, so a link superseded since
    _find_link reads as UNKNOWN.
    """
    try:
        gift = gift_lock(gift_id=gift_id, allowed_from=GiftState.values)
    except Gift.DoesNotExist as exc:
        raise VerificationError(LINK_REFUSALS[LinkState.UNKNOWN]) from exc
    return gift, link_lock(gift_id=gift.id, token=token, now=timezone.now())


def gift_confirm_recipient(*, token: str) -> Gift:
    """The recipient followed their link: the gift goes out. Each link works once, until it expires."""
    gift_id = _find_link(token)
    with transaction.atomic():
        gift, state = _lock_for_link(gift_id, token)
        if state != LinkState.VALID:
            raise VerificationError(LINK_REFUSALS[state])
        if gift.state != GiftState.HELD_FOR_RECIPIENT:
            raise VerificationError("This gift can no longer be confirmed.")
        link_confirm(gift_id=gift.id, token=token, now=timezone.now())
        events.gift_recipient_confirmed(gift)
        _release(gift, actor_label="recipient")
    return gift


def gift_resend_verification(*, token: str) -> Gift:
    """An expired link asks for a new one: the gift is queued again and the worker sends a fresh link."""
    gift_id = _find_link(token)
    with transaction.atomic():
        gift, state = _lock_for_link(gift_id, token)
        if state == LinkState.UNKNOWN:
            raise VerificationError(LINK_REFUSALS[state])
        if state == LinkState.USED or gift.state != GiftState.HELD_FOR_RECIPIENT:
            raise VerificationError("This gift no longer needs a confirmation.")
        if state == LinkState.VALID:
            raise VerificationError("This link still works: use it to confirm your address.")
        _release(gift, actor_label="recipient")
    return gift
