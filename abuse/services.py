"""Flags, blocks and failed-login counts: the state the middleware reads on every request, and its changes.

A client is an IP address or a user (by primary key). The cache is the fast path
(one read per request); every block is also a Block row, which the admin lists and
lifts, and every change is audit-logged. A flushed cache forgets flags and blocks
(the rows stay as the record): blocks are short-lived protection, not a ban list.
"""

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from abuse.models import Block, SubjectKind
from audit.services import audit_record

logger = logging.getLogger(__name__)

ANALYSIS = "abuse-analysis"  # the audit log's actor label for what the analysis decides
CLIENT_FLAGGED = "client_flagged"
CLIENT_BLOCKED = "client_blocked"
BLOCK_LIFTED = "block_lifted"
# Set while any user block may be in force, so that requests carrying a token are only
# identified before the view (a database query) when it can matter.
USER_BLOCKS_HINT = "abuse:user-blocks"


def flag_key(kind: str, subject: str) -> str:
    return f"abuse:flag:{kind}:{subject}"


def block_key(kind: str, subject: str) -> str:
    return f"abuse:block:{kind}:{subject}"


def failures_key(ip: str) -> str:
    return f"abuse:login-failures:{ip}"


@dataclass(frozen=True)
class ClientState:
    blocked_until: float | None  # epoch seconds
    flagged: bool
    user_blocks_possible: bool


def ip_state(ip: str) -> ClientState:
    """What the cache says about this IP, in one round trip."""
    keys = [block_key(SubjectKind.IP, ip), flag_key(SubjectKind.IP, ip), USER_BLOCKS_HINT]
    found = cache.get_many(keys)
    return ClientState(
        blocked_until=_in_future(found.get(keys[0])),
        flagged=keys[1] in found,
        user_blocks_possible=keys[2] in found,
    )


def user_blocked_until(user_id: int) -> float | None:
    return _in_future(cache.get(block_key(SubjectKind.USER, str(user_id))))


def _in_future(until: float | None) -> float | None:
    return until if until is not None and until > time.time() else None


def login_failures(ip: str) -> int:
    return cache.get(failures_key(ip)) or 0


def login_failure_record(ip: str) -> None:
    """Count a failed login (token endpoint or admin) from `ip`, for CHALLENGE_AFTER_FAILURES."""
    key = failures_key(ip)
    # The window starts with the first failure: add() sets the expiry, incr() keeps it.
    cache.add(key, 0, timeout=settings.CHALLENGE_FAILURE_WINDOW)
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=settings.CHALLENGE_FAILURE_WINDOW)


def challenge_required(ip: str, *, flagged: bool | None = None) -> bool:
    """Whether a login from `ip` must first solve a challenge: it is flagged, or failed too often."""
    if flagged is None:
        flagged = flag_key(SubjectKind.IP, ip) in cache.get_many([flag_key(SubjectKind.IP, ip)])
    return flagged or login_failures(ip) >= settings.CHALLENGE_AFTER_FAILURES


def is_flagged(kind: str, subject: str) -> bool:
    return cache.get(flag_key(kind, subject)) is not None


def client_flag(
    *, kind: str, subject: str, pattern: str, reason: str, request: HttpRequest, actor: AbstractBaseUser | None
) -> None:
    """First detection: the client must solve the challenge to log in, for ABUSE_FLAG_SECONDS."""
    cache.set(flag_key(kind, subject), pattern, timeout=settings.ABUSE_FLAG_SECONDS)
    logger.warning("client flagged kind=%s subject=%s pattern=%s", kind, subject, pattern)
    audit_record(
        kind=CLIENT_FLAGGED,
        actor=actor,
        actor_label=ANALYSIS,
        subject=f"{kind}:{subject}",
        request=request,
        pattern=pattern,
        reason=reason,
        seconds=settings.ABUSE_FLAG_SECONDS,
    )


def client_block(
    *, kind: str, subject: str, pattern: str, reason: str, request: HttpRequest, actor: AbstractBaseUser | None
) -> Block:
    """A repeat while flagged: every request from the client answers 429 blocked for ABUSE_BLOCK_SECONDS."""
    now = timezone.now()
    expires = now + timedelta(seconds=settings.ABUSE_BLOCK_SECONDS)
    with transaction.atomic():
        block = Block.objects.create(
            subject_kind=kind, subject=subject, pattern=pattern, reason=reason[:300], created=now, expires=expires
        )
        audit_record(
            kind=CLIENT_BLOCKED,
            actor=actor,
            actor_label=ANALYSIS,
            subject=f"{kind}:{subject}",
            request=request,
            pattern=pattern,
            reason=reason,
            block=block.pk,
            expires=expires,
        )
    cache.set(block_key(kind, subject), expires.timestamp(), timeout=settings.ABUSE_BLOCK_SECONDS)
    if kind == SubjectKind.USER:
        cache.set(USER_BLOCKS_HINT, True, timeout=settings.ABUSE_BLOCK_SECONDS)
    logger.warning("client blocked kind=%s subject=%s pattern=%s block=%s", kind, subject, pattern, block.pk)
    return block


def block_lift(*, block: Block, by: AbstractBaseUser, request: HttpRequest | None = None) -> bool:
    """Lift a block in force: the client is let back in at once (and starts unflagged). False if not in force."""
    with transaction.atomic():
        block = Block.objects.select_for_update().get(pk=block.pk)
        if not block.in_force:
            return False
        block.lifted_at = timezone.now()
        block.lifted_by = by
        block.save(update_fields=["lifted_at", "lifted_by"])
        audit_record(
            kind=BLOCK_LIFTED,
            actor=by,
            actor_label=by.get_username(),
            subject=f"{block.subject_kind}:{block.subject}",
            request=request,
            block=block.pk,
            pattern=block.pattern,
        )
    cache.delete_many([block_key(block.subject_kind, block.subject), flag_key(block.subject_kind, block.subject)])
    return True
