"""Accepting a gift: assess it under the sender's lock, store it with its audit trail, publish on commit."""

import logging
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from core import checks
from fraud import services as fraud
from fraud.decisions import Decision, HoldTier, Verdict
from fraud.history import windows_at
from gifting import events
from gifting.models import Gift, GiftState
from gifting.selectors import sender_history_for_assessment
from gifting.services.publisher import gift_publish_on_commit
from gifting.transitions import gift_start, sender_lock

logger = logging.getLogger(__name__)

HELD_STATE_FOR_TIER = {HoldTier.DELAY: GiftState.HELD_FOR_PERIOD, HoldTier.APPROVAL: GiftState.HELD_FOR_APPROVAL}


def _validate(gift: Gift) -> None:
    """full_clean(), with the check constraints evaluated in Python (core.checks).

    Not the sender (the authenticated user, locked by its key below: a query to prove it exists is
    a query for nothing), nor uniqueness (its one unique field is its new random primary key). The
    check constraints cost a compiled query each in full_clean (in a savepoint, inside a transaction):
    a valid gift, nearly every gift, now costs none; one that fails one, or that Python cannot judge,
    is asked of the database, for full_clean's own precise errors.
    """
    gift.full_clean(exclude=["sender"], validate_unique=False, validate_constraints=False)
    try:
        violated = checks.violated_checks(gift)
    except checks.Unsupported:
        violated = True
    if violated:
        gift.validate_constraints()


def _first_state(verdict: Verdict) -> GiftState:
    if verdict.decision == Decision.REJECT:
        return GiftState.REJECTED
    if verdict.decision == Decision.HOLD:
        return HELD_STATE_FOR_TIER[verdict.hold_tier]
    return GiftState.QUEUED


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
        next_attempt_at=now,
    )
    _validate(gift)
    windows = windows_at(now)
    with transaction.atomic():
        sender_lock(sender)
        history = sender_history_for_assessment(
            sender=sender, recipient_email=recipient_email, recipient_wallet=recipient_wallet, windows=windows
        )
        verdict = fraud.gift_assess(
            sender_id=sender.pk,
            amount=gift.amount,  # cleaned to a Decimal by full_clean (_validate)
            recipient_is_email=bool(recipient_email),
            history=history,
            windows=windows,
        )
        gift_start(gift, state=_first_state(verdict), hold_until=verdict.release_at)
        gift.save()
        events.gift_created(gift, actor=sender)
        fraud.risk_assessment_record(gift_id=gift.id, verdict=verdict)
        if gift.state == GiftState.REJECTED:
            events.gift_rejected(gift, reviewer=None, review_reason="Refused by the risk rules.")
        elif gift.state == GiftState.QUEUED:
            gift_publish_on_commit(gift_id=gift.id)
        else:
            release_at = verdict.release_at.isoformat() if verdict.release_at else None
            events.gift_held(gift, tier=verdict.hold_tier, release_at=release_at)
    logger.info(
        "gift accepted gift=%s sender=%s recipient=%s amount=%s %s decision=%s score=%s",
        gift.id,
        sender.pk,
        gift.masked_recipient,
        gift.amount,
        gift.currency,
        verdict.decision,
        verdict.score,
    )
    return gift
