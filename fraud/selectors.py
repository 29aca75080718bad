"""Reads of fraud's own records: a sender's effective limits, a gift's assessment, its confirmation link."""

import uuid
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from fraud.models import RecipientVerification, RiskAssessment, SenderLimits


@dataclass(frozen=True)
class EffectiveLimits:
    max_amount: Decimal
    daily_count: int
    daily_value: Decimal
    weekly_count: int
    weekly_value: Decimal


def effective_limits(*, user_id: int) -> EffectiveLimits:
    """The sender's overrides where staff set them, the settings' defaults elsewhere."""
    limits = SenderLimits.objects.filter(user_id=user_id).first()

    def pick(name: str, default):
        value = getattr(limits, name, None) if limits is not None else None
        return default if value is None else value

    return EffectiveLimits(
        max_amount=pick("max_amount", settings.FRAUD_MAX_AMOUNT),
        daily_count=pick("daily_count", settings.FRAUD_DAILY_COUNT),
        daily_value=pick("daily_value", settings.FRAUD_DAILY_VALUE),
        weekly_count=pick("weekly_count", settings.FRAUD_WEEKLY_COUNT),
        weekly_value=pick("weekly_value", settings.FRAUD_WEEKLY_VALUE),
    )


def recipient_must_confirm(*, gift_id: uuid.UUID) -> bool:
    """The gift's recipient must confirm their address before delivery, and has not yet."""
    needs = RiskAssessment.objects.filter(gift_id=gift_id, needs_recipient_verification=True).exists()
    return needs and not RecipientVerification.objects.filter(gift_id=gift_id, confirmed_at__isnull=False).exists()
