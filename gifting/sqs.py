"""Direct SQS access for operators' tools: queue setup, depth, dead letters."""

import base64
import binascii
import json

import boto3
from botocore.config import Config
from django.conf import settings


def sqs_client():
    """A boto3 SQS client for the configured endpoint, region and credentials."""
    return boto3.client(
        "sqs",
        region_name=settings.AWS_REGION,
        endpoint_url=settings.SQS_ENDPOINT_URL,
        aws_access_key_id=settings.AWS_ACCESS_KEY_ID,
        aws_secret_access_key=settings.AWS_SECRET_ACCESS_KEY,
        config=Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"}),
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
    """
    urls = {}
    dlq_url = client.create_queue(
        QueueName=sqs_name(settings.GIFT_DLQ), Attributes={"MessageRetentionPeriod": "1209600"}
    )["QueueUrl"]
    urls[sqs_name(settings.GIFT_DLQ)] = dlq_url
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive_policy = json.dumps(
        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(settings.SQS_MAX_RECEIVE_COUNT)}
    )
    visibility = str(settings.SQS_VISIBILITY_TIMEOUT)
    for queue, attributes in (
        (settings.GIFT_QUEUE, {"VisibilityTimeout": visibility, "RedrivePolicy": redrive_policy}),
        (settings.MAINTENANCE_QUEUE, {"VisibilityTimeout": visibility}),
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
