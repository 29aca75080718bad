"""Publishing once a gift is committed, off the request path: a thread per process sends the messages.

The gift is already durable as `queued` (with `next_attempt_at`) when its id is
handed over here, so nothing this thread does or fails to do can lose it: a
message it never sends (SQS down, the process killed, its hand-over queue
full) is sent by the outbox sweeper GIFT_REPUBLISH_AFTER seconds on. What the
thread buys is a request that never waits for SQS: the 202 goes out as soon as
the gift is committed, however slow or dead the broker is.

GIFT_PUBLISH_IN_BACKGROUND=false publishes inline instead, in the committing
thread, as before (the unit tests do, inside their test transaction, which a
second thread's connection cannot see).
"""

import atexit
import contextvars
import logging
import os
import queue
import threading
import time
import uuid
from functools import partial

from django.conf import settings
from django.db import close_old_connections, connections, transaction

from gifting import instruments
from gifting.services.outbox import gift_publish

logger = logging.getLogger(__name__)

# Hand-overs waiting for the thread, per process. Past this the broker is down or crawling, and the
# sweeper will send the rest: memory stays bounded whatever SQS does.
PENDING_CAPACITY = 1_000
# How long a process that is exiting (a gunicorn worker recycled, a management command done) gives
# the thread to send what is pending; the sweeper sends whatever is left.
EXIT_FLUSH_SECONDS = 5.0
# After a failed publish the thread waits before the next one, twice as long each time up to the cap:
# a broker that is down is not hammered (each failed attempt, kombu reconnecting and retrying, costs
# the process CPU its requests need); the gifts wait in the hand-over queue or for the sweeper.
BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
_STOP = object()


class BackgroundPublisher:
    """One daemon thread per process that calls gift_publish for each gift id handed to it."""

    def __init__(self, *, capacity: int = PENDING_CAPACITY) -> None:
        self._capacity = capacity
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._pending: queue.Queue = queue.Queue(maxsize=capacity)
        self._thread: threading.Thread | None = None

    def submit(self, gift_id: uuid.UUID, actor_label: str) -> None:
        """Queue one publication; when the hand-over queue is full, leave the gift to the sweeper."""
        self._ensure_running()
        # The committing request's context goes along: its request id and trace reach the message
        # and the `queued` event, as they would had the request published itself.
        context = contextvars.copy_context()
        try:
            self._pending.put_nowait((gift_id, actor_label, context))
        except queue.Full:
            instruments.PUBLISH_DEFERRED.inc()
            logger.warning("gift publish deferred to the sweeper gift=%s pending=%s", gift_id, self._capacity)

    def flush(self, timeout: float) -> bool:
        """Stop the thread once it has sent what is pending (at most `timeout` seconds); True if it did."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None or self._pid != os.getpid():
            return True
        try:
            self._pending.put(_STOP, timeout=timeout)
        except queue.Full:
            return False
        thread.join(timeout)
        return not thread.is_alive()

    def _ensure_running(self) -> None:
        # A forked child (a prefork pool process) inherits the object but not the thread: start its own.
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._pending = queue.Queue(maxsize=self._capacity)
            self._thread = threading.Thread(target=self._run, name="gift-publisher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        pending = self._pending
        backoff = 0.0
        try:
            while (item := pending.get()) is not _STOP:
                gift_id, actor_label, context = item
                close_old_connections()  # as around a request: a broken or too old connection is replaced
                try:
                    published = context.run(gift_publish, gift_id=gift_id, actor_label=actor_label)
                except Exception:  # the database failed us: the sweeper publishes it later
                    logger.exception("gift publish crashed gift=%s", gift_id)
                    connections.close_all()  # it may be broken: the next gift opens a new one
                    published = False
                if published:
                    backoff = 0.0
                else:
                    backoff = min(max(backoff * 2, BACKOFF_FIRST_SECONDS), BACKOFF_MAX_SECONDS)
                    time.sleep(backoff)
        finally:
            connections.close_all()


_publisher = BackgroundPublisher()
atexit.register(_publisher.flush, EXIT_FLUSH_SECONDS)


def gift_publish_on_commit(*, gift_id: uuid.UUID, actor_label: str = "api") -> None:
    """Publish the gift's delivery message once the current transaction commits (never if it rolls back)."""
    if settings.GIFT_PUBLISH_IN_BACKGROUND:
        transaction.on_commit(partial(_publisher.submit, gift_id, actor_label))
    else:
        transaction.on_commit(partial(gift_publish, gift_id=gift_id, actor_label=actor_label))


def publisher_flush(timeout: float = EXIT_FLUSH_SECONDS) -> bool:
    """Send what this process has pending and stop its thread (the next hand-over starts a new one)."""
    return _publisher.flush(timeout)
