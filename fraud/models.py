"""Per-sender limits, the risk assessment of every gift, and recipient verification."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from fraud.decisions import REVIEW_REASON_MAX_LENGTH, Decision, HoldTier, ReviewOutcome


class SenderLimits(models.Model):
    """Staff overrides of a sender's limits (blank = the setting's default).

    Its row is also what a sender's concurrent gift requests lock, so quota
    checks run one at a time per sender.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="gift_limits")
    max_amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    daily_count = models.PositiveIntegerField(null=True, blank=True)
    daily_value = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    weekly_count = models.PositiveIntegerField(null=True, blank=True)
    weekly_value = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    note = models.CharField(max_length=200, blank=True, default="", help_text="Why the limits differ.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "sender limits"
        verbose_name_plural = "sender limits"
        constraints = [
            models.CheckConstraint(
                condition=(Q(max_amount__isnull=True) | Q(max_amount__gt=0))
                & (Q(daily_value__isnull=True) | Q(daily_value__gt=0))
                & (Q(weekly_value__isnull=True) | Q(weekly_value__gt=0)),
                name="sender_limits_values_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"Limits of user {self.user_id}"


class RiskAssessment(models.Model):
    """What the rules said about a gift when it was created, and what a reviewer decided."""

    gift = models.OneToOneField("gifting.Gift", on_delete=models.PROTECT, related_name="risk")
    decision = models.CharField(max_length=8, choices=Decision.choices)
    score = models.PositiveIntegerField(default=0)
    signals = models.JSONField(default=list, blank=True, help_text="Every signal: rule, score, reason.")
    hold_tier = models.CharField(max_length=8, choices=HoldTier.choices, blank=True, default=HoldTier.NONE)
    release_at = models.DateTimeField(null=True, blank=True, help_text="When a delayed gift goes out by itself.")
    needs_recipient_verification = models.BooleanField(default=False)
    released_at = models.DateTimeField(null=True, blank=True, help_text="When the hold ended and delivery began.")
    review_outcome = models.CharField(max_length=8, choices=ReviewOutcome.choices, blank=True, default="")
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_reason = models.CharField(max_length=REVIEW_REASON_MAX_LENGTH, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(decision=Decision.HOLD) | Q(hold_tier=HoldTier.NONE), name="risk_tier_only_when_held"
            ),
            models.CheckConstraint(
                condition=~Q(hold_tier=HoldTier.DELAY) | Q(release_at__isnull=False), name="risk_delay_has_release"
            ),
            models.CheckConstraint(
                condition=Q(review_outcome="") | (Q(reviewed_by__isnull=False) & Q(reviewed_at__isnull=False)),
                name="risk_review_has_reviewer",
            ),
            models.CheckConstraint(
                condition=~Q(review_outcome=ReviewOutcome.REJECTED) | ~Q(review_reason=""),
                name="risk_rejection_has_reason",
            ),
        ]

    def __str__(self) -> str:
        return f"Risk of gift {self.gift_id}: {self.decision} ({self.score})"


class RecipientVerification(models.Model):
    """A high-value gift's recipient must confirm their address before the voucher goes out.

    Only a hash of the link's token is stored; each (re)send makes a new token.
    """

    gift = models.OneToOneField("gifting.Gift", on_delete=models.PROTECT, related_name="verification")
    token_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Recipient verification of gift {self.gift_id}"
