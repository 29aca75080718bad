"""From signals and amount to a decision: allow, hold (delay or approval tier) or reject.

Also the vocabulary of decisions, the rules' and the reviewers', which the
models store and other apps read.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import models

from fraud.rules import Signal

REVIEW_REASON_MAX_LENGTH = 500


class Decision(models.TextChoices):
    ALLOW = "allow", "Allow"
    HOLD = "hold", "Hold"
    REJECT = "reject", "Reject"


class HoldTier(models.TextChoices):
    NONE = "", "None"
    DELAY = "delay", "Delayed: released automatically unless blocked"
    APPROVAL = "approval", "Needs approval"


class ReviewOutcome(models.TextChoices):
    NONE = "", "Not reviewed"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


@dataclass(frozen=True)
class Verdict:
    decision: str
    score: int
    signals: list[Signal] = field(default_factory=list)
    hold_tier: str = HoldTier.NONE
    release_at: datetime | None = None
    needs_recipient_verification: bool = False


def decide(*, amount: Decimal, signals: list[Signal], recipient_is_email: bool, now: datetime) -> Verdict:
    """The decision table.

    | condition (first match wins)                          | decision | tier     |
    |-------------------------------------------------------|----------|----------|
    | score >= FRAUD_REJECT_SCORE                           | reject   |          |
    | score >= FRAUD_REVIEW_SCORE                           | hold     | approval |
    | amount >= FRAUD_APPROVAL_THRESHOLD                    | hold     | approval |
    | amount >= FRAUD_DELAY_THRESHOLD                       | hold     | delay    |
    | otherwise                                             | allow    |          |

    Independently, email recipients of gifts at or above
    FRAUD_VERIFY_RECIPIENT_THRESHOLD confirm their address before delivery.
    """
    score = sum(signal.score for signal in signals)
    verify = recipient_is_email and amount >= settings.FRAUD_VERIFY_RECIPIENT_THRESHOLD
    common = {"score": score, "signals": signals, "needs_recipient_verification": verify}
    if score >= settings.FRAUD_REJECT_SCORE:
        return Verdict(decision=Decision.REJECT, **{**common, "needs_recipient_verification": False})
    if score >= settings.FRAUD_REVIEW_SCORE or amount >= settings.FRAUD_APPROVAL_THRESHOLD:
        return Verdict(decision=Decision.HOLD, hold_tier=HoldTier.APPROVAL, **common)
    if amount >= settings.FRAUD_DELAY_THRESHOLD:
        release_at = now + timedelta(seconds=settings.FRAUD_HOLD_PERIOD)
        return Verdict(decision=Decision.HOLD, hold_tier=HoldTier.DELAY, release_at=release_at, **common)
    return Verdict(decision=Decision.ALLOW, **common)
