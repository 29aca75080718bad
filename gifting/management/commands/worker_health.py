"""Exit 0 when a worker's heartbeat is fresh, 1 otherwise: a container liveness probe for workers."""

import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.heartbeat import heartbeats_read


class Command(BaseCommand):
    help = (
        "Check the heartbeat that each worker on this machine writes from its event loop. Exits 0 when one "
        "(or the one named by --hostname) is younger than --max-age seconds, 1 when none is."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--hostname", help="Only this worker (its Celery node name, e.g. celery@web-1).")
        parser.add_argument(
            "--max-age",
            type=int,
            default=None,
            metavar="SECONDS",
            help="How old a heartbeat may be (default WORKER_HEARTBEAT_STALE_AFTER).",
        )

    def handle(self, *args, hostname: str | None, max_age: int | None, **options) -> None:
        max_age = settings.WORKER_HEARTBEAT_STALE_AFTER if max_age is None else max_age
        if max_age < 1:
            raise CommandError("--max-age must be at least 1 second.")
        now = time.time()
        beats = [beat for beat in heartbeats_read() if hostname is None or beat.hostname == hostname]
        for beat in beats:
            self.stdout.write(f"{beat.hostname} pid={beat.pid} age={beat.age(now=now):.1f}s")
        if not any(beat.age(now=now) <= max_age for beat in beats):
            who = hostname or "any worker"
            raise CommandError(f"no heartbeat from {who} in the last {max_age} s", returncode=1)
        self.stdout.write("ok")
