"""Rolling windows in the shared cache: counters and distinct-member sets, one round trip per request.

With Redis (REDIS_URL, production) one pipeline does all of a request's work:
- a counter is a sliding-window counter: one INCR on the current window's key, the
  previous window's count weighted by how much of it still overlaps the rolling window;
- a distinct set is a sorted set of members scored by time: ZADD, trim what fell out
  of the window, ZCARD. Members are short hashes (a 404'd id, a username, a recipient's
  blind index), never the value itself.

Without Redis (development's local-memory cache) the same operations go through Django's cache
API: per process and not atomic, so figures are approximate there. Good enough to try it out.
"""

import hashlib
import math
import time
from dataclasses import dataclass, field

from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.redis import RedisCache

PREFIX = "abuse:w:"


def member(value: str) -> str:
    """A short, one-way stand-in for a value kept in a distinct set (a username may be a typed password)."""
    return hashlib.sha256(value.encode()).hexdigest()[:16]


@dataclass
class Batch:
    """What one request adds: counters to count it in, distinct sets to add a member to (name → window seconds)."""

    counters: dict[str, int] = field(default_factory=dict)
    distinct: dict[str, tuple[str, int]] = field(default_factory=dict)  # name → (member, window)
    read_counters: dict[str, int] = field(default_factory=dict)  # read, not counted in


def _bucket_keys(name: str, window: int, now: float) -> tuple[str, str, float]:
    bucket = math.floor(now / window)
    elapsed = (now - bucket * window) / window
    return f"{PREFIX}{name}:{bucket}", f"{PREFIX}{name}:{bucket - 1}", 1.0 - elapsed


def apply(batch: Batch, *, now: float | None = None) -> dict[str, float]:
    """Count the batch in; the figure of every counter and distinct set named, over its rolling window."""
    now = time.time() if now is None else now
    cache = caches[DEFAULT_CACHE_ALIAS]
    if isinstance(cache, RedisCache):
        return _apply_redis(cache, batch, now)
    return _apply_cache(cache, batch, now)


def forget(names: list[str], *, windows: dict[str, int], now: float | None = None) -> None:
    """Empty these windows: after a detection, a repeat has to be produced in full again."""
    now = time.time() if now is None else now
    keys = []
    for name in names:
        window = windows[name]
        current, previous, _ = _bucket_keys(name, window, now)
        keys += [current, previous, f"{PREFIX}{name}"]
    caches[DEFAULT_CACHE_ALIAS].delete_many(keys)


def _apply_redis(cache: RedisCache, batch: Batch, now: float) -> dict[str, float]:
    # Django's RedisCache client: keys through make_key (prefix, version), integers stored as such,
    # so INCR works on them and cache.get reads them back.
    client = cache._cache.get_client(write=True)
    pipe = client.pipeline(transaction=False)
    plan: list[tuple[str, str, float]] = []  # (name, kind, weight of the previous window)
    for name, window in batch.counters.items():
        current, previous, weight = _bucket_keys(name, window, now)
        pipe.incr(cache.make_key(current))
        pipe.expire(cache.make_key(current), 2 * window)
        pipe.get(cache.make_key(previous))
        plan.append((name, "counter", weight))
    for name, window in batch.read_counters.items():
        current, previous, weight = _bucket_keys(name, window, now)
        pipe.get(cache.make_key(current))
        pipe.get(cache.make_key(previous))
        plan.append((name, "read", weight))
    for name, (value, window) in batch.distinct.items():
        key = cache.make_key(f"{PREFIX}{name}")
        pipe.zadd(key, {value: now})
        pipe.zremrangebyscore(key, "-inf", now - window)
        pipe.zcard(key)
        pipe.expire(key, window)
        plan.append((name, "distinct", 0.0))
    results = iter(pipe.execute())
    figures: dict[str, float] = {}
    for name, kind, weight in plan:
        if kind == "counter":
            current, _, previous = next(results), next(results), next(results)
            figures[name] = int(current) + int(previous or 0) * weight
        elif kind == "read":
            current, previous = next(results), next(results)
            figures[name] = int(current or 0) + int(previous or 0) * weight
        else:
            _, _, count, _ = next(results), next(results), next(results), next(results)
            figures[name] = count
    return figures


def _apply_cache(cache: BaseCache, batch: Batch, now: float) -> dict[str, float]:
    figures: dict[str, float] = {}
    for name, window in batch.counters.items():
        current, previous, weight = _bucket_keys(name, window, now)
        cache.add(current, 0, timeout=2 * window)
        figures[name] = cache.incr(current) + (cache.get(previous) or 0) * weight
    for name, window in batch.read_counters.items():
        current, previous, weight = _bucket_keys(name, window, now)
        figures[name] = (cache.get(current) or 0) + (cache.get(previous) or 0) * weight
    for name, (value, window) in batch.distinct.items():
        key = f"{PREFIX}{name}"
        members = {m: at for m, at in (cache.get(key) or {}).items() if at > now - window}
        members[value] = now
        cache.set(key, members, timeout=window)
        figures[name] = len(members)
    return figures
