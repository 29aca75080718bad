"""Reading messages straight off SQS in tests."""

from core.sqs import queue_url, sqs_client


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
