"""Worker heartbeats: proof that a worker's consumer loop still turns, for liveness probes and the ops view.

Celery's own heartbeats, events and remote control do not work on SQS, so each
worker writes its own: a bootstep on the consumer's event loop writes, every
WORKER_HEARTBEAT_INTERVAL seconds, a small JSON file in WORKER_HEARTBEAT_DIR
(for a liveness probe in the same container) and a cache key (for every other
process). A loop that hangs stops writing, so a stale heartbeat means a stuck
or dead worker even when its process is still there.
"""

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from celery import bootsteps
from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

CACHE_KEY_PREFIX = "worker-heartbeat:"


@dataclass(frozen=True)
class Heartbeat:
    hostname: str
    pid: int
    at: float  # seconds since the epoch

    def age(self, *, now: float | None = None) -> float:
        return (now if now is not None else time.time()) - self.at


def heartbeat_dir() -> Path:
    return Path(settings.WORKER_HEARTBEAT_DIR)


def _file_name(hostname: str) -> str:
    return "".join(char if char.isalnum() or char in "-_.@" else "_" for char in hostname) + ".json"


def heartbeat_write(*, hostname: str, pid: int, now: float | None = None) -> Heartbeat:
    """Record that this worker's loop turned just now: the file first (atomic rename), then the cache."""
    beat = Heartbeat(hostname=hostname, pid=pid, at=now if now is not None else time.time())
    directory = heartbeat_dir()
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".{_file_name(hostname)}.{pid}"
    temporary.write_text(json.dumps({"hostname": hostname, "pid": pid, "at": beat.at}))
    temporary.replace(directory / _file_name(hostname))
    try:
        cache.set(CACHE_KEY_PREFIX + hostname, beat.at, timeout=settings.WORKER_HEARTBEAT_STALE_AFTER * 10)
    except Exception as exc:  # noqa: BLE001 - the shared cache being down must not stop the worker
        logger.warning("heartbeat not written to the cache error=%s", type(exc).__name__)
    return beat


def heartbeats_read() -> list[Heartbeat]:
    """Every worker heartbeat file on this machine, unreadable ones skipped."""
    beats = []
    for path in sorted(heartbeat_dir().glob("*.json")):
        try:
            data = json.loads(path.read_text())
            beats.append(Heartbeat(hostname=str(data["hostname"]), pid=int(data["pid"]), at=float(data["at"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return beats


class HeartbeatStep(bootsteps.StartStopStep):
    """A consumer bootstep: writes the heartbeat from the worker's own event loop."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent, **kwargs) -> None:
        super().__init__(parent, **kwargs)
        self._timer_entry = None

    def start(self, parent) -> None:
        hostname = parent.hostname
        self._beat(hostname)
        self._timer_entry = parent.timer.call_repeatedly(
            settings.WORKER_HEARTBEAT_INTERVAL, self._beat, (hostname,), priority=10
        )

    def stop(self, parent) -> None:
        if self._timer_entry is not None:
            self._timer_entry.cancel()
            self._timer_entry = None

    def _beat(self, hostname: str) -> None:
        try:
            heartbeat_write(hostname=hostname, pid=os.getpid())
        except OSError as exc:
            logger.warning("heartbeat file not written error=%s", type(exc).__name__)
