"""Reading Celery task messages straight off SQS, as an operator's tool would."""

import base64
import json

from gifting.sqs import queue_url, sqs_client


def decode_envelope(body: str) -> dict:
    """The whole kombu message on SQS, its task payload decoded into `payload`."""
    # kombu base64-encodes the whole SQS body by default (sqs_base64_encoding).
    envelope = json.loads(body if body.lstrip().startswith("{") else base64.b64decode(body))
    payload = envelope["body"]
    if envelope.get("properties", {}).get("body_encoding") == "base64":
        payload = base64.b64decode(payload)
    envelope["payload"] = json.loads(payload)
    return envelope


def decode_task_message(body: str) -> tuple[str, list]:
    """(task name, positional args) of a kombu/Celery message body on SQS."""
    envelope = decode_envelope(body)
    args, _kwargs, _embed = envelope["payload"]
    return envelope["headers"]["task"], args


def receive_all(queue: str, *, wait_seconds: int = 1) -> list[dict]:
    """Receive (without deleting) what is visible on a queue now."""
    client = sqs_client()
    url = queue_url(client, queue)
    messages: list[dict] = []
    while True:
        batch = client.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds, VisibilityTimeout=30
        ).get("Messages", [])
        if not batch:
            return messages
        messages.extend(batch)
