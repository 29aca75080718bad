"""A recorder of the SQS actions a process makes, on which queue, for the IAM cross-check.

Used by tests/integration/test_deploy_iam.py.

Two doors lead to SQS here: boto3 clients (core.sqs, the operators' tools, and
kombu's blocking calls: send, delete, change visibility, queue attributes) and
kombu's asynchronous connection (the worker's long polls), which signs its own
HTTP requests without a boto3 client. The recorder listens at both: botocore's
`provide-client-params.sqs` event on every client a botocore session creates,
and AsyncSQSConnection.make_request. A worker or beat process records through
`run_recorded` (its prefork children inherit the hooks), appending one JSON line
per call to a file, so calls made in other processes are seen too.
"""

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import botocore.session
from django.conf import settings
from kombu.asynchronous.aws.sqs.connection import AsyncSQSConnection

from core.aws_actions import IAM_ACTION_OF_OPERATION

CALLS_FILE_ENV = "AWS_CALLS_FILE"

Call = tuple[str, str]  # (IAM's SQS action, the application's queue name without the prefix)


def iam_action(operation: str) -> str:
    """The IAM action that allows an SQS API operation (a batch call needs its single-message action)."""
    return IAM_ACTION_OF_OPERATION.get(operation, operation)


def queue_of(params: dict) -> str:
    """The queue a call is about, from its QueueName or its QueueUrl, without SQS_QUEUE_PREFIX."""
    name = params.get("QueueName") or str(params.get("QueueUrl", "")).rstrip("/").rsplit("/", 1)[-1]
    prefix = settings.SQS_QUEUE_PREFIX if settings.configured else os.environ.get("SQS_QUEUE_PREFIX", "")
    return name.removeprefix(prefix)


@contextmanager
def recording(record: Callable[[str, dict], None]) -> Iterator[None]:
    """Call `record(action, params)` for every SQS call made in this process (and its forks) meanwhile."""
    original_create_client = botocore.session.Session.create_client
    original_make_request = AsyncSQSConnection.make_request

    def on_params(params: dict, model, **kwargs) -> None:
        record(model.name, params)

    def create_client(self, service_name, *args, **kwargs):
        client = original_create_client(self, service_name, *args, **kwargs)
        if service_name == "sqs":
            client.meta.events.register("provide-client-params.sqs", on_params)
        return client

    def make_request(self, operation_name, params, queue_url, *args, **kwargs):
        record(operation_name, {"QueueUrl": queue_url})
        return original_make_request(self, operation_name, params, queue_url, *args, **kwargs)

    botocore.session.Session.create_client = create_client
    AsyncSQSConnection.make_request = make_request
    try:
        yield
    finally:
        botocore.session.Session.create_client = original_create_client
        AsyncSQSConnection.make_request = original_make_request


class Recorded:
    """The calls of one recording in this process, as a set of (action, queue)."""

    def __init__(self) -> None:
        self.calls: set[Call] = set()

    def __call__(self, action: str, params: dict) -> None:
        self.calls.add((iam_action(action), queue_of(params)))


def read_calls_file(path: Path) -> set[Call]:
    """What processes run through `run_recorded` wrote to `path`."""
    if not path.exists():
        return set()
    return {tuple(json.loads(line)) for line in path.read_text().splitlines() if line.strip()}


def run_recorded() -> None:
    """`python -c 'from tests.test_deploy_recorder import run_recorded; run_recorded()' celery …`.

    Runs the celery command line that follows, recording its SQS calls to $AWS_CALLS_FILE.
    """
    path = Path(os.environ[CALLS_FILE_ENV])

    def append(action: str, params: dict) -> None:
        with path.open("a") as calls:  # one short append per call: the pool's children write here too
            calls.write(json.dumps([iam_action(action), queue_of(params)]) + "\n")

    from celery.__main__ import main

    with recording(append):
        sys.argv = sys.argv[1:]
        main()


def test_the_recorder_sees_boto3_calls_and_their_queue(settings):
    """A call through a fresh boto3 client is recorded with its action and the queue without the prefix.

    No server is needed: the parameters are recorded before the request is sent (here it fails at once).
    """
    import boto3
    from botocore.config import Config
    from botocore.exceptions import EndpointConnectionError

    recorded = Recorded()
    client_config = Config(connect_timeout=0.2, retries={"max_attempts": 0})
    with recording(recorded):
        client = boto3.client(
            "sqs", region_name="us-east-1", endpoint_url="http://127.0.0.1:9", config=client_config,
            aws_access_key_id="k", aws_secret_access_key="s",
        )  # fmt: skip
        try:
            client.get_queue_url(QueueName=f"{settings.SQS_QUEUE_PREFIX}gift-delivery")
        except EndpointConnectionError:
            pass
    assert recorded.calls == {("GetQueueUrl", "gift-delivery")}
