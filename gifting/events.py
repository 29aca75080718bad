"""The gift audit log: one small function per event type, each appending one row to the gift's chain.

Each event carries a keyed hash chained to the previous event of the same gift
(audit.chain): `manage.py verify_audit_log` recomputes the chains and names the
first broken link. One chain per gift, not one for the whole log, so events of
different gifts never wait for each other.
"""

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from audit.chain import BrokenLink, Link, chain_check, chain_key, gift_anchor, link_hash, timestamp
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


def event_link_fields(event: GiftEvent) -> dict[str, Any]:
    """What an event's chain_hash covers: every field but its id and the hash itself."""
    return {
        "gift": str(event.gift_id),
        "type": str(event.type),
        "at": timestamp(event.at),
        "actor": event.actor_id,
        "actor_label": event.actor_label,
        "request_id": event.request_id,
        "details": event.details,
    }


def _record(
    gift: Gift,
    type_: str,
    *,
    actor: AbstractBaseUser | None = None,
    actor_label: str,
    at: datetime | None = None,
    first: bool = False,
    previous: GiftEvent | None = None,
    **details,
) -> GiftEvent:
    event = GiftEvent(
        gift=gift,
        type=type_,
        actor=actor,
        actor_label=actor_label,
        request_id=current_request_id(),
        # As the database will give it back (a tuple comes back a list), so the hash matches on reading.
        details=json.loads(json.dumps(details)),
    )
    if first:
        # The gift's first event, in the transaction that inserted the gift: no other transaction can
        # see the gift yet, let alone add an event to it, so there is no lock to take and no predecessor.
        return _link_and_save(event, after=gift_anchor(gift.pk), at=at)
    if previous is not None:
        # The caller wrote `previous` in this transaction while holding the gift's row lock, and holds
        # it still: no other event can have followed it, so it is the head, without a lock or a look.
        if previous.gift_id != gift.pk or previous.pk is None:
            raise ValueError("an event follows a saved event of its own gift")
        return _link_and_save(event, after=previous.chain_hash, at=at)
    with transaction.atomic(savepoint=False):
        # The gift's row lock puts one gift's events in a single file: no two can follow the same
        # predecessor. It is the lock gifting.transitions takes first, so callers that already hold it
        # (every state change) lose nothing, and callers that hold no lock (publishing, dead letters)
        # take no other lock after it. The head is read after the lock, in a statement of its own, so it
        # sees an event committed by whoever held the lock before.
        Gift.objects.select_for_update().filter(pk=gift.pk).values_list("pk").get()
        head = GiftEvent.objects.filter(gift_id=gift.pk).order_by("-id").values_list("chain_hash", flat=True).first()
        return _link_and_save(event, after=gift_anchor(gift.pk) if head is None else head, at=at)


def _link_and_save(event: GiftEvent, *, after: str, at: datetime | None) -> GiftEvent:
    """Date the event, chain it after `after` (its predecessor's hash, or the gift's anchor), save it."""
    event.at = at or timezone.now()
    event.chain_hash = link_hash(after, event_link_fields(event), key=chain_key())
    event.save()
    return event


def gift_created(gift: Gift, *, actor: AbstractBaseUser) -> GiftEvent:
    """The first event of every gift: call it in the transaction that inserts the gift, before any other."""
    return _record(gift, GiftEventType.CREATED, actor=actor, actor_label="user", first=True)


def gift_queued(gift: Gift, *, message_id: str, actor_label: str, sent_at: datetime) -> GiftEvent:
    # Dated when the message was sent, not when the publish returned: a worker may receive it and
    # record its attempt in between, and the timeline (ordered by time) should still read queued first.
    return _record(gift, GiftEventType.QUEUED, actor_label=actor_label, at=sent_at, message_id=message_id)


def gift_publish_failed(gift: Gift, *, error: str, actor_label: str) -> GiftEvent:
    return _record(gift, GiftEventType.PUBLISH_FAILED, actor_label=actor_label, error=error)


def gift_republished(gift: Gift, *, message_id: str, sent_at: datetime) -> GiftEvent:
    return _record(gift, GiftEventType.REPUBLISHED, actor_label="sweeper", at=sent_at, message_id=message_id)


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


def gift_delivered(gift: Gift, *, channel: str, previous: GiftEvent | None = None) -> GiftEvent:
    """`previous`: the attempt's event, when the caller still holds the row lock it was written under."""
    return _record(gift, GiftEventType.DELIVERED, actor_label="worker", previous=previous, channel=channel)


def gift_duplicate_ignored(gift: Gift, *, status: str) -> GiftEvent:
    return _record(gift, GiftEventType.DUPLICATE_IGNORED, actor_label="worker", status=status)


def gift_failed(gift: Gift, *, reason: str, cause: str) -> GiftEvent:
    return _record(gift, GiftEventType.FAILED, actor_label="worker", reason=reason, cause=cause)


def gift_dead_lettered(gift: Gift, *, message_id: str, sent_at: datetime) -> GiftEvent:
    # Dated when the dead letter was sent, like `queued`: the row lock may keep the record waiting.
    return _record(gift, GiftEventType.DEAD_LETTERED, actor_label="worker", at=sent_at, message_id=message_id)


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


def gift_verification_sent(gift: Gift, *, previous: GiftEvent | None = None) -> GiftEvent:
    """`previous`: as for gift_delivered."""
    return _record(
        gift,
        GiftEventType.VERIFICATION_SENT,
        actor_label="worker",
        previous=previous,
        reason="Waiting for the recipient.",
    )


def gift_recipient_confirmed(gift: Gift) -> GiftEvent:
    return _record(gift, GiftEventType.RECIPIENT_CONFIRMED, actor_label="recipient")


# --- Integrity ----------------------------------------------------------------------


@dataclass(frozen=True)
class GiftChainBreak:
    """The first gift whose chain does not hold: at `link` (None when the gift has no events at all)."""

    gift_id: uuid.UUID
    link: BrokenLink | None


@dataclass(frozen=True)
class GiftChainsCheck:
    gifts: int
    events: int
    broken: GiftChainBreak | None


def _gift_id_batches(batch_size: int) -> Iterator[list[uuid.UUID]]:
    last = None
    while True:
        ids = Gift.objects.order_by("id").values_list("id", flat=True)
        batch = list((ids if last is None else ids.filter(id__gt=last))[:batch_size])
        if not batch:
            return
        yield batch
        last = batch[-1]


def gift_event_chains_check(*, batch_size: int = 500) -> GiftChainsCheck:
    """Recompute every gift's chain, `batch_size` gifts at a time; stop at the first broken one.

    Every gift has at least its `created` event, written in the transaction that
    stored it: a gift without events has lost its whole trail.
    """
    key = chain_key()
    gifts = events = 0
    for batch in _gift_id_batches(batch_size):
        links: dict[uuid.UUID, list[Link]] = {gift_id: [] for gift_id in batch}
        for event in GiftEvent.objects.filter(gift_id__in=batch).order_by("gift_id", "id"):
            links[event.gift_id].append(Link(event.id, event.chain_hash, event_link_fields(event)))
        for gift_id in batch:
            if not links[gift_id]:
                return GiftChainsCheck(gifts=gifts, events=events, broken=GiftChainBreak(gift_id, None))
            check = chain_check(links[gift_id], anchor=gift_anchor(gift_id), key=key)
            events += check.rows
            if check.broken is not None:
                return GiftChainsCheck(gifts=gifts, events=events, broken=GiftChainBreak(gift_id, check.broken))
            gifts += 1
    return GiftChainsCheck(gifts=gifts, events=events, broken=None)
