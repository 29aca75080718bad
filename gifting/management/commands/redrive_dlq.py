"""Move dead-lettered gift messages back to the gift queue, unchanged."""

import uuid

from django.core.management.base import BaseCommand, CommandError

from core.sqs import GIFT_DLQ, GIFT_QUEUE, decode_task_message, queue_url, sqs_client
from gifting.publishing import DELIVER_TASK, gift_id_from_args
from gifting.services.outbox import gift_requeue_for_redrive


def _gift_id(body: str) -> uuid.UUID | None:
    try:
        task, args = decode_task_message(body)
    except ValueError:
        return None
    return gift_id_from_args(args) if task == DELIVER_TASK else None


class Command(BaseCommand):
    help = (
        "Redrive the gift DLQ: each dead-lettered gift goes back to `queued` and its message back to the "
        "gift queue. Messages that are not gift messages, or name a gift that is not `failed`, stay put."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--limit", type=int, default=100, help="At most this many messages (default 100).")
        parser.add_argument("--dry-run", action="store_true", help="Only report what would be redriven.")

    def handle(self, *args, limit: int, dry_run: bool, **options) -> None:
        if limit < 1:
            raise CommandError("--limit must be at least 1.")
        client = sqs_client()
        dlq, gift_queue = queue_url(client, GIFT_DLQ), queue_url(client, GIFT_QUEUE)
        redriven = skipped = 0
        while redriven + skipped < limit:
            batch = client.receive_message(
                QueueUrl=dlq, MaxNumberOfMessages=min(10, limit - redriven - skipped), WaitTimeSeconds=1
            ).get("Messages", [])
            if not batch:
                break
            for message in batch:
                gift_id = _gift_id(message["Body"])
                if gift_id is None or (not dry_run and not gift_requeue_for_redrive(gift_id=gift_id)):
                    skipped += 1
                    self.stdout.write(f"left  {message['MessageId']} (gift {gift_id or 'unknown'})")
                    continue
                if not dry_run:
                    client.send_message(QueueUrl=gift_queue, MessageBody=message["Body"])
                    client.delete_message(QueueUrl=dlq, ReceiptHandle=message["ReceiptHandle"])
                redriven += 1
                self.stdout.write(f"{'would move' if dry_run else 'moved'} {message['MessageId']} (gift {gift_id})")
        verb = "would be redriven" if dry_run else "redriven"
        self.stdout.write(f"{redriven} {verb}, {skipped} left on the DLQ")
