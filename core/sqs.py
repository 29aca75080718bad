"""Everything the application knows about SQS, in one place.

Queue names (and the prefix that makes them SQS names), client timeouts, the
DelaySeconds cap, queue creation and depth, and reading a Celery message as
kombu puts it on SQS. The Celery transport (config/) and the operators' tools
(gifting's commands, metrics, health) all take these facts from here.
"""

import base64
import binascii
import json

import boto3
from botocore.config import Config
from django.conf import settings

# Celery queue names; the SQS names are these with SQS_QUEUE_PREFIX in front
# (kombu prepends it from its `queue_name_prefix` option, sqs_name() here).
GIFT_QUEUE = "gift-delivery"
GIFT_DLQ = "gift-delivery-dlq"
MAINTENANCE_QUEUE = "gift-maintenance"
ALL_QUEUES = (GIFT_QUEUE, GIFT_DLQ, MAINTENANCE_QUEUE)
CONSUMED_QUEUES = (GIFT_QUEUE, MAINTENANCE_QUEUE)  # workers leave the DLQ to the operators

SQS_MAX_DELAY_SECONDS = 900  # SQS's cap on DelaySeconds
DLQ_RETENTION_SECONDS = 14 * 24 * 3600  # SQS's longest retention: dead letters wait for a person
# Server-side encryption with SQS-owned keys on every queue, as ops/aws/gift-a-voucher.yaml creates them.
QUEUE_ENCRYPTION = {"SqsManagedSseEnabled": "true"}


def client_config(*, wait_time_seconds: int) -> dict:
    """botocore client settings: short timeouts and few retries, so publishing never hangs a request.

    The read timeout outlasts a long poll of `wait_time_seconds`.
    """
    return {
        "connect_timeout": 2,
        "read_timeout": wait_time_seconds + 5,
        "retries": {"max_attempts": 2, "mode": "standard"},
    }


def sqs_client(*, config: Config | None = None):
    """A boto3 SQS client for the configured endpoint, region and credentials; `config` replaces client_config()."""
    return boto3.client(
        "sqs",
        region_name=settings.AWS_REGION,
        endpoint_url=settings.SQS_ENDPOINT_URL,
        aws_access_key_id=settings.AWS_ACCESS_KEY_ID,
        aws_secret_access_key=settings.AWS_SECRET_ACCESS_KEY,
        config=config or Config(**client_config(wait_time_seconds=settings.SQS_WAIT_TIME_SECONDS)),
    )


def sqs_name(queue: str) -> str:
    """The SQS name of one of the application's queues."""
    return settings.SQS_QUEUE_PREFIX + queue


def queue_url(client, queue: str) -> str:
    return client.get_queue_url(QueueName=sqs_name(queue))["QueueUrl"]


def setup_queues(client) -> dict[str, str]:
    """Create every application queue (idempotently); returns SQS name → URL.

    The gift queue gets a RedrivePolicy to its DLQ, so messages that keep
    killing workers end up there. Attributes apply on creation only, so an
    existing queue with other attributes is reported, not silently changed.
    Every queue is encrypted at rest (QUEUE_ENCRYPTION), as the CloudFormation
    template makes them (tests/test_deploy_template.py compares the two).
    """
    urls = {}
    dlq_url = client.create_queue(
        QueueName=sqs_name(GIFT_DLQ),
        Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS), **QUEUE_ENCRYPTION},
    )["QueueUrl"]
    urls[sqs_name(GIFT_DLQ)] = dlq_url
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive_policy = json.dumps(
        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(settings.SQS_MAX_RECEIVE_COUNT)}
    )
    visibility = str(settings.SQS_VISIBILITY_TIMEOUT)
    for queue, attributes in (
        (GIFT_QUEUE, {"VisibilityTimeout": visibility, "RedrivePolicy": redrive_policy, **QUEUE_ENCRYPTION}),
        (MAINTENANCE_QUEUE, {"VisibilityTimeout": visibility, **QUEUE_ENCRYPTION}),
    ):
        urls[sqs_name(queue)] = client.create_queue(QueueName=sqs_name(queue), Attributes=attributes)["QueueUrl"]
    return urls


def queue_depth(client, queue: str) -> dict[str, int]:
    """Visible, in-flight and delayed message counts of a queue (approximate, as SQS says)."""
    attributes = client.get_queue_attributes(
        QueueUrl=queue_url(client, queue),
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return {
        "visible": int(attributes["ApproximateNumberOfMessages"]),
        "in_flight": int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        "delayed": int(attributes["ApproximateNumberOfMessagesDelayed"]),
    }


def decode_task_message(body: str) -> tuple[str, list]:
    """(task name, positional args) of a Celery message as kombu puts it on SQS.

    Raises ValueError for anything else (a foreign or garbled message).
    """
    try:
        # kombu base64-encodes the whole SQS body by default (sqs_base64_encoding).
        raw = body if body.lstrip().startswith("{") else base64.b64decode(body, validate=True)
        envelope = json.loads(raw)
        payload = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            payload = base64.b64decode(payload)
        args, _kwargs, _embed = json.loads(payload)
        return envelope["headers"]["task"], list(args)
    except (binascii.Error, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError("not a Celery task message") from exc
