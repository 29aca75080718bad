"""Recompute the audit chains (every gift's events, the security audit log); exit 1 at the first broken link."""

from django.core.management.base import BaseCommand, CommandError

from audit.selectors import audit_log_check
from gifting.events import gift_event_chains_check

MAX_BATCH_SIZE = 10_000
BAD_USAGE = 2  # as argparse's own usage errors


class Command(BaseCommand):
    help = (
        "Recompute the keyed hash chains of the gift events (one chain per gift) and of the security audit "
        "log, in batches. Exits 0 with counts and the audit log's head when both are intact, 1 with the first "
        "broken link of each (gift, event or entry id, expected and found hash) otherwise. Keep the head "
        "printed by each run elsewhere: a chain cannot show on its own that rows were cut off its end."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=500,
            metavar="N",
            help=f"Gifts, or audit entries, read per query (1 to {MAX_BATCH_SIZE}; default 500).",
        )

    def handle(self, *args, batch_size: int, **options) -> None:
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise CommandError(
                f"--batch-size must be between 1 and {MAX_BATCH_SIZE}, not {batch_size}.", returncode=BAD_USAGE
            )
        broken = []

        gifts = gift_event_chains_check(batch_size=batch_size)
        if gifts.broken is None:
            self.stdout.write(f"gift events: intact ({gifts.events} events of {gifts.gifts} gifts)")
        elif gifts.broken.link is None:
            broken.append(f"gift events: gift {gifts.broken.gift_id} has no events: its audit trail is gone")
        else:
            link = gifts.broken.link
            broken.append(
                f"gift events: broken at gift {gifts.broken.gift_id}, event {link.row_id}: "
                f"expected chain_hash {link.expected}, found {link.found or '(empty)'} "
                f"({gifts.events} events of {gifts.gifts} gifts verified before it)"
            )

        audit = audit_log_check(batch_size=batch_size)
        if audit.broken is None:
            self.stdout.write(f"audit log: intact ({audit.rows} entries, head {audit.head})")
        else:
            broken.append(
                f"audit log: broken at entry {audit.broken.row_id}: expected chain_hash {audit.broken.expected}, "
                f"found {audit.broken.found or '(empty)'} ({audit.rows} entries verified before it)"
            )

        for line in broken:
            self.stderr.write(line)
        if broken:
            raise CommandError("the audit log has been altered: see the broken links above", returncode=1)
        self.stdout.write("ok")
