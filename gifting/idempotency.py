"""Idempotency-Key semantics for creating gifts, as Stripe does them.

A key is scoped to the user and remembered for IDEMPOTENCY_KEY_TTL seconds.
The same key with an equivalent body replays the stored response; with a
different body it is refused (422); while the first request is still being
processed it is refused too (409). The response is stored in the same
transaction as the work it describes, so a crash leaves neither. The stored
response is encrypted at rest (it holds the gift's message), its request's
fingerprint keyed.
"""

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from core.crypto import derived_key
from core.errors import ApplicationError, ErrorCode
from gifting.models import Gift, IdempotencyKey

# An in-flight claim older than this belongs to a request that died; its work
# rolled back with it, so the key may be claimed again.
ABANDONED_AFTER = timedelta(seconds=60)
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class IdempotentResponse:
    status: int
    body: Any
    replayed: bool


def validate_key(raw: str | None) -> str:
    """The header's value if it is 1-255 printable ASCII characters; else a ValueError."""
    if not raw:
        raise ValueError("This header is required.")
    if len(raw) > MAX_KEY_LENGTH:
        raise ValueError(f"Ensure this header has no more than {MAX_KEY_LENGTH} characters.")
    if not all(" " <= char <= "~" for char in raw):
        raise ValueError("Use printable ASCII characters only.")
    return raw


def fingerprint(body: Any) -> str:
    """The same digest for JSON-equivalent bodies (key order and spacing do not matter).

    Keyed (HMAC under a key derived from BLIND_INDEX_KEY): the body holds the
    recipient and the message, and a plain hash of such guessable data would let
    anyone with a database dump confirm a guess.
    """
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hmac.new(derived_key("idempotency-fingerprint"), canonical.encode(), hashlib.sha256).hexdigest()


def _key_in_use() -> ApplicationError:
    return ApplicationError(
        code=ErrorCode.IDEMPOTENCY_KEY_IN_USE, detail="A request with this Idempotency-Key is still being processed."
    )


def _stale(now: datetime) -> Q:
    """Records that no longer hold their key: past the TTL, or claims abandoned by a request that died."""
    return Q(created_at__lt=now - timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL)) | Q(
        response_status__isnull=True, created_at__lt=now - ABANDONED_AFTER
    )


def _is_stale(record: IdempotencyKey, now: datetime) -> bool:
    """_stale() for a record already read: a replay then costs no DELETE."""
    expired = record.created_at < now - timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL)
    return expired or (record.in_flight and record.created_at < now - ABANDONED_AFTER)


def _insert_claim(*, user: AbstractBaseUser, key: str, request_fingerprint: str) -> IdempotencyKey:
    # In a savepoint of its own: a conflict must not break a transaction the caller may be in.
    with transaction.atomic():
        return IdempotencyKey.objects.create(user=user, key=key, request_fingerprint=request_fingerprint)


def _claim(*, user: AbstractBaseUser, key: str, request_fingerprint: str) -> tuple[IdempotencyKey, bool]:
    """A new in-flight claim on the key (True), or the existing record for it (False)."""
    # Insert first: a new key (nearly every request) costs one INSERT. Stale records are looked
    # for only when the unique constraint says the key is taken.
    try:
        return _insert_claim(user=user, key=key, request_fingerprint=request_fingerprint), True
    except IntegrityError:
        pass
    now = timezone.now()
    records = IdempotencyKey.objects.filter(user=user, key=key)
    existing = records.first()
    if (
        existing is not None
        and _is_stale(existing, now)
        # The DELETE checks again, in case the record changed since it was read.
        and records.filter(pk=existing.pk).filter(_stale(now)).delete()[0]
    ):
        # Forgotten: the key is free again, unless a competing request claims it first.
        try:
            return _insert_claim(user=user, key=key, request_fingerprint=request_fingerprint), True
        except IntegrityError:
            existing = records.first()
    if existing is None:
        # A competing request released its claim between our insert and this read.
        raise _key_in_use()
    return existing, False


def run_idempotently(
    *,
    user: AbstractBaseUser,
    key: str,
    body: Any,
    operation: Callable[[], tuple[int, Any, Gift | None]],
) -> IdempotentResponse:
    """Run `operation` once per (user, key) and body; replay its stored response after that.

    `operation` returns (status, body, gift) and runs inside the transaction
    that stores its response.
    """
    request_fingerprint = fingerprint(body)
    record, claimed = _claim(user=user, key=key, request_fingerprint=request_fingerprint)
    if record.request_fingerprint != request_fingerprint:
        raise ApplicationError(
            code=ErrorCode.IDEMPOTENCY_KEY_REUSED, detail="This Idempotency-Key was used with a different request body."
        )
    if not claimed and not record.in_flight:
        return IdempotentResponse(status=record.response_status, body=record.response_body, replayed=True)
    if not claimed:
        raise _key_in_use()
    try:
        with transaction.atomic():
            response_status, response_body, gift = operation()
            record.response_status = response_status
            record.response_body = response_body
            record.gift = gift
            record.save(update_fields=["response_status", "response_body", "gift"])
    except BaseException:
        IdempotencyKey.objects.filter(pk=record.pk, response_status__isnull=True).delete()
        raise
    return IdempotentResponse(status=response_status, body=response_body, replayed=False)


def idempotency_keys_purge_expired() -> int:
    """Forget keys older than IDEMPOTENCY_KEY_TTL; returns how many."""
    cutoff = timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
