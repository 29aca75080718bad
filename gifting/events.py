"""The gift audit log: one small function per event type, each appending one row."""

from django.contrib.auth.models import AbstractBaseUser

from core.request_id import current_request_id
from gifting.models import Gift, GiftEvent, GiftEventType

# Event types and detail keys the sender may see in the API timeline; everything
# else (internal causes, message ids) is for staff only.
PUBLIC_EVENT_TYPES = frozenset(
    {
        GiftEventType.CREATED,
        GiftEventType.QUEUED,
        GiftEventType.DELIVERY_ATTEMPTED,
        GiftEventType.RETRY_SCHEDULED,
        GiftEventType.DELIVERED,
        GiftEventType.FAILED,
        GiftEventType.HELD,
        GiftEventType.REJECTED,
        GiftEventType.RELEASED,
        GiftEventType.VERIFICATION_SENT,
        GiftEventType.RECIPIENT_CONFIRMED,
    }
)
PUBLIC_DETAIL_KEYS = frozenset({"attempt", "reason", "retry_at"})


def _record(gift: Gift, type_: str, *, actor: AbstractBaseUser | None = None, actor_label: str, **details) -> GiftEvent:
    return GiftEvent.objects.create(
        gift=gift,
        type=type_,
        actor=actor,
        actor_label=actor_label,
        request_id=current_request_id(),
        details=details,
    )


def gift_created(gift: Gift, *, actor: AbstractBaseUser) -> GiftEvent:
    return _record(gift, GiftEventType.CREATED, actor=actor, actor_label="user")


def gift_queued(gift: Gift, *, message_id: str, actor_label: str) -> GiftEvent:
    return _record(gift, GiftEventType.QUEUED, actor_label=actor_label, message_id=message_id)


def gift_publish_failed(gift: Gift, *, error: str, actor_label: str) -> GiftEvent:
    return _record(gift, GiftEventType.PUBLISH_FAILED, actor_label=actor_label, error=error)


def gift_republished(gift: Gift, *, message_id: str) -> GiftEvent:
    return _record(gift, GiftEventType.REPUBLISHED, actor_label="sweeper", message_id=message_id)


def gift_delivery_attempted(gift: Gift, *, attempt: int) -> GiftEvent:
    return _record(gift, GiftEventType.DELIVERY_ATTEMPTED, actor_label="worker", attempt=attempt)


def gift_retry_scheduled(gift: Gift, *, reason: str, retry_at: str, delay_seconds: int) -> GiftEvent:
    return _record(
        gift,
        GiftEventType.RETRY_SCHEDULED,
        actor_label="worker",
        reason=reason,
        retry_at=retry_at,
        delay_seconds=delay_seconds,
    )


def gift_delivered(gift: Gift, *, channel: str) -> GiftEvent:
    return _record(gift, GiftEventType.DELIVERED, actor_label="worker", channel=channel)


def gift_duplicate_ignored(gift: Gift, *, status: str) -> GiftEvent:
    return _record(gift, GiftEventType.DUPLICATE_IGNORED, actor_label="worker", status=status)


def gift_failed(gift: Gift, *, reason: str, cause: str) -> GiftEvent:
    return _record(gift, GiftEventType.FAILED, actor_label="worker", reason=reason, cause=cause)


def gift_dead_lettered(gift: Gift, *, message_id: str) -> GiftEvent:
    return _record(gift, GiftEventType.DEAD_LETTERED, actor_label="worker", message_id=message_id)


def gift_redriven(
    gift: Gift,
    *,
    operator: str,
    actor: AbstractBaseUser | None = None,
    message_id: str | None,
    duplicates_deleted: int = 0,
) -> GiftEvent:
    """An operator sent a failed gift back to delivery; who did it is what an audit needs to know.

    `operator` is the name they gave (or their OS user) for a command, the staff user's for the admin,
    where `actor` is that user too. `message_id` is the dead letter moved back to the gift queue, None
    when none was left and a fresh message was published instead (its `queued` event follows).
    """
    return _record(
        gift,
        GiftEventType.REDRIVEN,
        actor=actor,
        actor_label="operator",
        operator=operator,
        message_id=message_id,
        duplicates_deleted=duplicates_deleted,
    )


def gift_dead_letter_purged(
    gift: Gift,
    *,
    operator: str,
    actor: AbstractBaseUser | None = None,
    message_ids: list[str],
    older_than_days: int,
) -> GiftEvent:
    """An operator deleted the gift's dead letter(s): the gift stays failed, and this row says who did it."""
    return _record(
        gift,
        GiftEventType.DEAD_LETTER_PURGED,
        actor=actor,
        actor_label="operator",
        operator=operator,
        message_ids=message_ids,
        older_than_days=older_than_days,
    )


def gift_held(gift: Gift, *, tier: str, release_at: str | None) -> GiftEvent:
    return _record(
        gift, GiftEventType.HELD, actor_label="fraud", reason="Held for review.", tier=tier, release_at=release_at
    )


def gift_approved(gift: Gift, *, reviewer: AbstractBaseUser, review_reason: str) -> GiftEvent:
    return _record(gift, GiftEventType.APPROVED, actor=reviewer, actor_label="reviewer", review_reason=review_reason)


def gift_rejected(gift: Gift, *, reviewer: AbstractBaseUser | None, review_reason: str) -> GiftEvent:
    return _record(
        gift,
        GiftEventType.REJECTED,
        actor=reviewer,
        actor_label="reviewer" if reviewer else "fraud",
        reason="The gift was declined.",
        review_reason=review_reason,
    )


def gift_released(gift: Gift, *, actor_label: str) -> GiftEvent:
    return _record(gift, GiftEventType.RELEASED, actor_label=actor_label)


def gift_verification_sent(gift: Gift) -> GiftEvent:
    return _record(gift, GiftEventType.VERIFICATION_SENT, actor_label="worker", reason="Waiting for the recipient.")


def gift_recipient_confirmed(gift: Gift) -> GiftEvent:
    return _record(gift, GiftEventType.RECIPIENT_CONFIRMED, actor_label="recipient")
