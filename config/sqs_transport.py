"""kombu's SQS transport, with the application's queues predefined and a consumer that outlives SQS faults.

Predefined queues. kombu creates any queue it does not know on first use, with
its own attributes and no RedrivePolicy. Predefined queues stop that, but
kombu wants their URLs, and a URL's shape differs between AWS, moto and
LocalStack. This channel asks SQS for each URL (GetQueueUrl) when it opens, so
queues are only ever created by `manage.py setup_queues`. When SQS does not
answer or a queue is missing, opening fails with SqsUnavailable, a
ConnectionError: Celery treats it as a lost connection and retries with its
own backoff (the worker waits), while a publisher's bounded retry gives up
quickly (the web request still answers, the outbox publishes later).

Polling through faults. kombu's asynchronous receive turns a refused
connection, a timeout or a 5xx into an empty *list*, which its callback then
reads as a dict (AttributeError), and raises a bare Exception for any other
error answer (a missing queue, throttling) or a body it cannot parse; either
ends the worker process (celery#6209). Here every failed poll becomes a
PollFailed value instead: the channel logs one warning when an outage starts
and one line when it ends, and polls again after a bounded, jittered backoff,
so the worker consumes again within seconds of SQS answering.
"""

import logging
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property

from botocore.exceptions import BotoCoreError, ClientError
from kombu.asynchronous.aws.sqs.connection import AsyncSQSConnection
from kombu.transport import SQS

from core.sqs import sqs_name

logger = logging.getLogger(__name__)

BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 5.0


class SqsUnavailable(ConnectionError):
    """SQS did not answer, or one of the application's queues does not exist (yet)."""


@dataclass(frozen=True)
class PollFailed:
    """A receive that got no usable answer; `reason` is coarse (an HTTP status or an error class)."""

    reason: str


class ResilientAsyncSQSConnection(AsyncSQSConnection):
    """kombu's asynchronous SQS client, answering PollFailed where kombu would return [] or raise."""

    def _on_list_ready(self, parent, markers, operation, response):
        if response.status == self.STATUS_CODE_OK and not response.read().lstrip().startswith((b"{", b"<")):
            # SQS answers a JSON object (or XML), even for an empty queue: anything else is not SQS talking.
            return PollFailed("HTTP 200 malformed body")
        try:
            result = super()._on_list_ready(parent, markers, operation, response)
        except Exception as exc:  # noqa: BLE001 - any failed answer is an outage to wait out, never a crash
            return PollFailed(f"HTTP {response.status} {type(exc).__name__}")
        if not isinstance(result, dict):  # kombu's [] for refused connections, timeouts and 5xx
            return PollFailed(f"HTTP {response.status}")
        return result


class Outage:
    """One queue's view of SQS: healthy, or failing since a time, with the backoff before the next poll."""

    def __init__(self) -> None:
        self.failures = 0
        self.since: float | None = None

    def poll_failed(self, queue: str, reason: str) -> None:
        if self.since is None:
            self.since = time.monotonic()
            logger.warning(
                "SQS unavailable queue=%s reason=%s: polling again with backoff up to %ss",
                queue,
                reason,
                BACKOFF_MAX_SECONDS,
            )
        self.failures += 1

    def poll_succeeded(self, queue: str) -> None:
        if self.since is not None:
            logger.warning(
                "SQS available again queue=%s after %.1fs and %s failed polls",
                queue,
                time.monotonic() - self.since,
                self.failures,
            )
        self.failures, self.since = 0, None

    def backoff_seconds(self) -> float:
        """0 while healthy; else exponential in the failures so far, capped, with equal jitter."""
        if not self.failures:
            return 0.0
        ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** (self.failures - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


class Channel(SQS.Channel):
    @cached_property
    def predefined_queues(self) -> dict[str, dict]:
        options = self.transport_options
        credentials = {
            "region": options["region"],
            "access_key_id": options.get("access_key_id"),
            "secret_access_key": options.get("secret_access_key"),
        }
        client = self.new_sqs_client(
            region=credentials["region"],
            access_key_id=credentials["access_key_id"],
            secret_access_key=credentials["secret_access_key"],
        )
        queues = {}
        for name in options["queue_names"]:
            try:
                url = client.get_queue_url(QueueName=sqs_name(name))["QueueUrl"]
            except (BotoCoreError, ClientError, KeyError) as exc:  # KeyError: an answer without QueueUrl
                raise SqsUnavailable(f"cannot look up queue {sqs_name(name)}: {type(exc).__name__}") from exc
            queues[sqs_name(name)] = {"url": url, **credentials}
        return queues

    @cached_property
    def endpoint_url(self) -> str | None:
        return self.transport_options.get("endpoint_url")

    @cached_property
    def outages(self) -> defaultdict[str, Outage]:
        return defaultdict(Outage)

    def asynsqs(self, queue: str | None = None) -> ResilientAsyncSQSConnection:
        """One resilient asynchronous client per predefined queue (all of ours are)."""
        client = self._predefined_queue_async_clients.get(queue)
        if client is None:
            attributes = self.get_message_attributes
            client = self._predefined_queue_async_clients[queue] = ResilientAsyncSQSConnection(
                sqs_connection=self.sqs(queue=queue),
                region=self.predefined_queues[queue].get("region", self.region),
                message_system_attribute_names=attributes.get("MessageSystemAttributeNames"),
                message_attribute_names=attributes.get("MessageAttributeNames"),
            )
        return client

    def _on_messages_ready(self, queue, qname, messages):
        if isinstance(messages, PollFailed):
            self.outages[qname].poll_failed(sqs_name(qname), messages.reason)
            return 0
        self.outages[qname].poll_succeeded(sqs_name(qname))
        return super()._on_messages_ready(queue, qname, messages)

    def _loop1(self, queue, messages_fetched=None):
        delay = self.outages[queue].backoff_seconds()
        if delay:
            self.hub.call_later(delay, self._schedule_queue, queue)
            return
        super()._loop1(queue, messages_fetched)


class Transport(SQS.Transport):
    Channel = Channel
