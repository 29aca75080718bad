"""Create the application's SQS queues, idempotently."""

import time

from botocore.exceptions import BotoCoreError, ClientError
from django.core.management.base import BaseCommand, CommandError

from core.sqs import setup_queues, sqs_client


class Command(BaseCommand):
    help = "Create the gift queue, its DLQ (with a RedrivePolicy) and the maintenance queue. Safe to re-run."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--wait", type=int, default=0, metavar="SECONDS", help="Keep trying this long while SQS is not up yet."
        )

    def handle(self, *args, wait: int, **options) -> None:
        if wait < 0:
            raise CommandError("--wait must be zero or more seconds.")
        deadline = time.monotonic() + wait
        client = sqs_client()
        while True:
            try:
                urls = setup_queues(client)
                break
            except ClientError as exc:
                # An existing queue with other attributes: SQS will not change it for us.
                raise CommandError(f"SQS refused to create a queue: {exc.response['Error'].get('Message')}") from exc
            except BotoCoreError as exc:
                if time.monotonic() >= deadline:
                    raise CommandError(f"SQS is not reachable: {exc}") from exc
                time.sleep(0.5)
        for name, url in urls.items():
            self.stdout.write(f"{name}: {url}")
