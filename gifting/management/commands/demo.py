"""`manage.py demo` (`make demo`): demo users and a gift in every state, for a first look. Development only.

Thin on purpose: the work is gifting.demo's; this parses and prints.
"""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from gifting.demo import DEFAULT_WAIT_SECONDS, DEMO_PASSWORD, DemoError, DemoResult, demo_run


class Command(BaseCommand):
    help = (
        "Create demo users (alice, nora, rita) and gifts in every state through the real services, then wait for "
        "the worker. Needs `make run` going and DJANGO_DEBUG=true. Safe to re-run: it creates only what is missing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--wait",
            type=float,
            default=DEFAULT_WAIT_SECONDS,
            metavar="SECONDS",
            help=f"How long to wait for the worker (default {DEFAULT_WAIT_SECONDS}); 0 neither checks SQS nor waits.",
        )

    def handle(self, *args, wait: float, **options) -> None:
        if wait < 0:
            raise CommandError("--wait must be zero or more seconds.")
        try:
            result = demo_run(wait_seconds=wait, say=self.stdout.write)
        except DemoError as exc:
            raise CommandError(str(exc)) from exc
        self._report(result)
        if wait and result.astray:
            raise CommandError(
                f"{len(result.astray)} gift(s) made now did not end as meant (marked 'made' above): "
                "the worker's output says why."
            )

    def _report(self, result: DemoResult) -> None:
        write = self.stdout.write
        write(f"\nUsers (password for each: {DEMO_PASSWORD}, demo only):")
        for user in result.users:
            write(f"  {'created' if user.created else 'found  '}  {user.username:<6} {user.note}")
        write("\nGifts:")
        for row in result.gifts:
            gift, spec = row.gift, row.spec
            # A gift moves on after the demo (a hold ends, a reviewer acts): its state now, and the one it was made for.
            state = gift.state if gift.state == spec.expected else f"{gift.state} (made {spec.expected})"
            write(
                f"  {'created' if row.created else 'found  '}  {spec.sender:<6} {gift.amount:>7} {gift.currency} "
                f"to {gift.masked_recipient:<18} {state:<15} {gift.id}  {spec.title}"
            )
        write("\nOpen:")
        for label, url in result.urls.items():
            write(f"  {label}: {url}")
        write(
            "\nThe worker's output (make run) shows the emails: vouchers, and the confirmation link of the gift "
            "waiting for its recipient."
        )
