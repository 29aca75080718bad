"""The API's answers to abuse: rate limits (django-ratelimit) and django-axes lockouts, both 429.

Limits count in the shared cache (Redis in production), so they hold across
processes. The client's IP comes from core.client_ip through
RATELIMIT_IP_META_KEY, the same address django-axes uses.
"""

import logging

from axes.helpers import get_cool_off
from django.http import HttpRequest
from django_ratelimit.core import get_usage
from redis.exceptions import RedisError
from rest_framework.request import Request

from core.errors import ApplicationError, ErrorCode

logger = logging.getLogger(__name__)


class RateLimited(ApplicationError):
    """429 rate_limited, with Retry-After: the seconds until the limit's window resets.

    `first_in_window` is true for the first request refused in a window: what an
    audit log records, so that a flood of refusals does not become a flood of writes.
    """

    def __init__(self, *, retry_after: int, first_in_window: bool = False) -> None:
        super().__init__(
            code=ErrorCode.RATE_LIMITED,
            detail=f"Too many requests. Try again in {retry_after} seconds.",
            retry_after=retry_after,
        )
        self.first_in_window = first_in_window


class LimitsUnavailable(ApplicationError):
    """503: the shared cache that keeps the counts is down; refuse rather than run unprotected."""

    RETRY_AFTER_SECONDS = 5

    def __init__(self) -> None:
        super().__init__(
            code=ErrorCode.SERVICE_UNAVAILABLE,
            detail="We cannot take this request right now. Try again shortly.",
            retry_after=self.RETRY_AFTER_SECONDS,
        )


class LockedOut(ApplicationError):
    """429 locked_out: django-axes refuses these credentials after too many failures."""

    def __init__(self, *, retry_after: int | None) -> None:
        super().__init__(
            code=ErrorCode.LOCKED_OUT,
            detail="Too many failed login attempts. Try again later.",
            retry_after=retry_after,
        )


def enforce_rate_limit(request: HttpRequest | Request, *, group: str, key: str, rate: str) -> None:
    """Count this request against `group`'s limit for `key` ("user", "ip", ...); over `rate` raise RateLimited.

    Every call counts, whatever happens to the request afterwards.
    """
    try:
        usage = get_usage(request, group=group, key=key, rate=rate, increment=True)
    except (RedisError, OSError) as exc:
        logger.error("rate limit counts unavailable group=%s error=%s", group, type(exc).__name__)
        raise LimitsUnavailable() from exc
    if usage is None or not usage["should_limit"]:  # None: rate limiting is switched off
        return
    # A window includes its last second (time_left 0), so it resets time_left + 1 seconds from
    # now. time_left is -1 when the cache failed: never ask for less than a second.
    retry_after = max(1, usage["time_left"] + 1)
    logger.warning("rate limited group=%s retry_after=%s", group, retry_after)
    raise RateLimited(retry_after=retry_after, first_in_window=usage["count"] == usage["limit"] + 1)


def raise_if_locked_out(request: HttpRequest) -> None:
    """Raise LockedOut if django-axes refused the login attempt just made with `request`.

    axes flags the request passed to authenticate(); its middleware would then
    replace the API's response with a plain-text page. The API answers in its
    own error shape instead, so the flag is taken down once it is read.
    """
    if not getattr(request, "axes_locked_out", False):
        return
    request.axes_locked_out = False
    raise LockedOut(retry_after=cool_off_seconds(request))


def cool_off_seconds(request: HttpRequest) -> int | None:
    """How long a django-axes lockout lasts, for Retry-After; None when it lasts until staff lift it.

    Each attempt while locked out restarts the cool-off (axes's default), so it ends at most this far away.
    """
    cool_off = get_cool_off(request)
    return int(cool_off.total_seconds()) if cool_off else None
