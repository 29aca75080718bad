"""Gifts, their append-only audit trail, remembered Idempotency-Keys, and the review queue's view of gifts."""

import uuid
from datetime import datetime

from django.conf import settings
from django.core.validators import validate_email
from django.db import models
from django.db.models import Q
from django.utils import timezone

from core.crypto import EncryptedJSONField, EncryptedTextField, recipient_index
from core.masking import mask_recipient
from core.recipients import validate_recipient_email


class GiftStatus(models.TextChoices):
    QUEUED = "queued", "Queued"  # accepted; delivery pending, in progress or retrying
    HELD = "held", "Held"  # awaiting review or a hold period
    DELIVERED = "delivered", "Delivered"
    REJECTED = "rejected", "Rejected"
    FAILED = "failed", "Failed"  # permanent failure or retries exhausted; dead-lettered


class HoldReason(models.TextChoices):
    """Why a `held` gift waits: internal detail of the API's one `held` status."""

    NONE = "", "Not held"
    DELAY = "delay", "Hold period: released automatically unless blocked"
    APPROVAL = "approval", "Waiting for a reviewer's approval"
    RECIPIENT = "recipient", "Waiting for the recipient to confirm their address"


class GiftState(models.TextChoices):
    """The gift's internal state: its status, with `held` told apart by why. See gifting.transitions."""

    QUEUED = "queued"
    HELD_FOR_PERIOD = "held:delay"
    HELD_FOR_APPROVAL = "held:approval"
    HELD_FOR_RECIPIENT = "held:recipient"
    DELIVERED = "delivered"
    REJECTED = "rejected"
    FAILED = "failed"


# Each state as the two columns that store it.
STATUS_AND_HOLD = {
    GiftState.QUEUED: (GiftStatus.QUEUED, HoldReason.NONE),
    GiftState.HELD_FOR_PERIOD: (GiftStatus.HELD, HoldReason.DELAY),
    GiftState.HELD_FOR_APPROVAL: (GiftStatus.HELD, HoldReason.APPROVAL),
    GiftState.HELD_FOR_RECIPIENT: (GiftStatus.HELD, HoldReason.RECIPIENT),
    GiftState.DELIVERED: (GiftStatus.DELIVERED, HoldReason.NONE),
    GiftState.REJECTED: (GiftStatus.REJECTED, HoldReason.NONE),
    GiftState.FAILED: (GiftStatus.FAILED, HoldReason.NONE),
}
_STATE_OF = {columns: state for state, columns in STATUS_AND_HOLD.items()}


class Gift(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    sender = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="gifts_sent")
    # Encrypted at rest (core.crypto); looked up by recipient_index, the blind index of the canonical recipient.
    recipient_email = EncryptedTextField(
        max_length=254, blank=True, default="", validators=[validate_email, validate_recipient_email]
    )
    recipient_wallet = EncryptedTextField(max_length=42, blank=True, default="")
    # Indexed with created_at (gift_recipient_created_idx below), which serves every lookup by it alone too.
    recipient_index = models.CharField(max_length=64, blank=True, default="", editable=False)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    message = EncryptedTextField(max_length=500, blank=True, default="")
    status = models.CharField(max_length=16, choices=GiftStatus.choices, default=GiftStatus.QUEUED)
    hold = models.CharField(max_length=16, choices=HoldReason.choices, blank=True, default=HoldReason.NONE)
    hold_until = models.DateTimeField(null=True, blank=True, help_text="When a hold period ends by itself.")
    attempts = models.PositiveIntegerField(default=0, help_text="Delivery attempts made: 1 + retries.")
    last_error = models.CharField(max_length=200, blank=True, default="", help_text="Coarse, user-safe reason.")
    # Outbox bookkeeping: when a message was last sent to SQS, and when that
    # message becomes visible to workers (later than published for a retry).
    last_published_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="gift_amount_positive"),
            models.CheckConstraint(
                condition=(Q(recipient_email="") & ~Q(recipient_wallet=""))
                | (~Q(recipient_email="") & Q(recipient_wallet="")),
                name="gift_exactly_one_recipient",
            ),
            models.CheckConstraint(condition=Q(currency__regex=r"^[A-Z]{3}$"), name="gift_currency_iso4217"),
            models.CheckConstraint(condition=Q(status__in=GiftStatus.values), name="gift_status_valid"),
            models.CheckConstraint(
                condition=~Q(status=GiftStatus.DELIVERED) | Q(delivered_at__isnull=False),
                name="gift_delivered_has_time",
            ),
            models.CheckConstraint(
                condition=Q(
                    status=GiftStatus.HELD, hold__in=[HoldReason.DELAY, HoldReason.APPROVAL, HoldReason.RECIPIENT]
                )
                | (~Q(status=GiftStatus.HELD) & Q(hold=HoldReason.NONE)),
                name="gift_held_has_reason",
            ),
            models.CheckConstraint(
                condition=~Q(hold=HoldReason.DELAY) | Q(hold_until__isnull=False), name="gift_hold_period_has_end"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="gift_status_due_idx"),
            # One sender's gifts by time: the accept path's window totals and recent gifts (fraud's
            # history, under the sender's lock) and the review queue's sender column read a range of
            # it, not every gift the sender ever sent nor every gift of the period. status and amount
            # are key columns so the totals are an index-only scan (no INCLUDE: SQLite has none).
            models.Index(fields=["sender", "created_at", "status", "amount"], name="gift_sender_created_idx"),
            # One recipient's gifts by time: fan-in (other senders within FRAUD_FANIN_WINDOW) and the
            # review queue's recipient column; with the sender, both are index-only scans.
            models.Index(fields=["recipient_index", "created_at", "sender"], name="gift_recipient_created_idx"),
        ]
        # Redriving sends a gift to its recipient again: a staff power of its own (gifting.dead_letters).
        # Full recipient addresses are masked in the admin; seeing one is a power of its own, audit-logged.
        permissions = [
            ("redrive_gift", "Can redrive dead-lettered gifts"),
            ("view_recipient_address", "Can view full recipient addresses"),
        ]

    def __str__(self) -> str:
        return f"Gift {self.id} ({self.amount} {self.currency}, {self.status})"

    def save(self, *args, **kwargs) -> None:
        # Indexed once, at creation: a gift's recipient never changes. Without exactly one
        # recipient there is nothing to index, and the gift_exactly_one_recipient constraint refuses it.
        if self._state.adding and bool(self.recipient_email) != bool(self.recipient_wallet):
            self.recipient_index = recipient_index(email=self.recipient_email, wallet=self.recipient_wallet)
        super().save(*args, **kwargs)

    @property
    def state(self) -> GiftState:
        return _STATE_OF[(self.status, self.hold)]

    @property
    def masked_recipient(self) -> str:
        """The recipient as responses, logs and the admin list show it: `r***@example.com`, `0x12…abcd`."""
        return mask_recipient(email=self.recipient_email, wallet=self.recipient_wallet)


class GiftEventType(models.TextChoices):
    CREATED = "created"
    QUEUED = "queued"  # a delivery message was published to SQS
    PUBLISH_FAILED = "publish_failed"
    REPUBLISHED = "republished"  # the sweeper published a new message
    DELIVERY_ATTEMPTED = "delivery_attempted"
    RETRY_SCHEDULED = "retry_scheduled"
    DELIVERED = "delivered"
    DUPLICATE_IGNORED = "duplicate_ignored"
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"
    REDRIVEN = "redriven"  # an operator moved its dead letter back to the gift queue (or, if gone, republished it)
    DEAD_LETTER_PURGED = "dead_letter_purged"  # an operator deleted its dead letter; the gift stays failed
    HELD = "held"  # fraud rules held it for a hold period or for approval
    APPROVED = "approved"  # a reviewer let it go
    REJECTED = "rejected"  # the rules or a reviewer refused it
    RELEASED = "released"  # cleared for delivery after a hold
    VERIFICATION_SENT = "verification_sent"  # the recipient was asked to confirm their address
    RECIPIENT_CONFIRMED = "recipient_confirmed"


class AppendOnlyError(Exception):
    pass


def event_time() -> datetime:
    """Now, looked up when called (so a test that patches django.utils.timezone.now moves it too)."""
    return timezone.now()


class GiftEvent(models.Model):
    """One row per thing that happened to a gift. Never updated, never deleted."""

    gift = models.ForeignKey(Gift, on_delete=models.PROTECT, related_name="events")
    type = models.CharField(max_length=32, choices=GiftEventType.choices)
    # Set before saving, not by auto_now_add during the insert: the chain hash covers it (gifting.events).
    at = models.DateTimeField(default=event_time, editable=False, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_label = models.CharField(max_length=64, help_text="'user', 'worker', 'sweeper' …")
    request_id = models.CharField(max_length=64, blank=True, default="")
    details = models.JSONField(default=dict, blank=True)
    # HMAC of the previous event of the same gift and this one's fields: see gifting.events and verify_audit_log.
    chain_hash = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.type} at {self.at:%Y-%m-%d %H:%M:%S}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise AppendOnlyError("Gift events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Gift events are append-only.")


class WalletCredit(models.Model):
    """The on-chain transaction that delivered a wallet gift: one transaction credits one gift, ever.

    Only a keyed hash of the transaction hash is kept (it leads to the wallet on any block
    explorer); the unique constraint stops a provider from naming one transfer for two gifts.
    """

    gift = models.OneToOneField(Gift, on_delete=models.PROTECT, related_name="wallet_credit")
    tx_index = models.CharField(max_length=64, unique=True, help_text="Blind index of the transaction hash.")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Wallet credit of gift {self.gift_id}"


class IdempotencyKey(models.Model):
    """A client's Idempotency-Key and the response it got, kept for IDEMPOTENCY_KEY_TTL."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_fingerprint = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)  # null while in flight
    response_body = EncryptedJSONField(null=True, blank=True)  # it holds the gift's message
    gift = models.ForeignKey(Gift, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_unique_per_user")]

    def __str__(self) -> str:
        return f"Idempotency-Key of user {self.user_id}"

    @property
    def in_flight(self) -> bool:
        return self.response_status is None


class GiftReview(Gift):
    """The admin's review queue: gifts seen through the reviewers' eyes."""

    class Meta:
        proxy = True
        # Not "held gift": the queue's views also list gifts whose hold has ended. Not plain "gift"
        # either, which would name this proxy's permissions as the Gift model's own ("Can view gift").
        # Counts on the queue say "1 gift", "2 gifts" (templates/admin/gifting/giftreview/pagination.html).
        verbose_name = "gift for review"
        verbose_name_plural = "review queue"
        permissions = [("review_gift", "Can approve or reject held gifts")]
