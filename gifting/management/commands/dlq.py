"""`manage.py dlq`: the operators' tools for the gift DLQ. Its usage is a contract (DESIGN.md, "Monitoring").

    dlq list [--json] [--limit N]
    dlq redrive (--gift ID | --all) [--dry-run] [--operator NAME]
    dlq purge --older-than DAYS --yes [--operator NAME]

Thin on purpose: it parses and prints. The work is gifting.dead_letters',
shared with the Gift admin's redrive action, so both behave the same.
"""

import argparse
import getpass
import json
import uuid
from dataclasses import asdict
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from gifting.dead_letters import (
    SQS_ERRORS,
    DeadLetterRow,
    Outcome,
    RedriveResult,
    dead_letters_list,
    dead_letters_purge,
    dead_letters_redrive,
)

LIST_LIMIT = 1000
PROGRESS_EVERY = 100  # a progress line on stderr every this many messages (reading) or gifts (redriving)
OPERATOR_MAX_LENGTH = 150


def positive_int(value: str) -> int:
    """argparse type: a whole number of at least 1 (a limit, a number of days)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be a positive whole number (1 or more)")
    return number


def gift_id(value: str) -> uuid.UUID:
    """argparse type: a gift id, i.e. a UUID."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a gift id (a UUID)") from None


def operator_name(given: str | None) -> str:
    """Who runs the command, for the audit log: --operator NAME, or else the OS user."""
    if given is not None:
        name = given.strip()
        if not name or len(name) > OPERATOR_MAX_LENGTH:
            raise CommandError(f"--operator must be a name of 1 to {OPERATOR_MAX_LENGTH} characters.")
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError, ImportError) as exc:
        raise CommandError("Cannot tell who you are: pass --operator NAME (it goes into the audit log).") from exc


def human_age(seconds: int) -> str:
    """An age an operator reads at a glance: `42s`, `5m 03s`, `2h 10m`, `3d 04h`."""
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


class Command(BaseCommand):
    help = (
        "The gift DLQ: `list` what is on it, `redrive` failed gifts back to delivery, "
        "`purge` old dead letters. Redrives and purges are audit-logged with the operator."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{list,redrive,purge}")

        listing = actions.add_parser(
            "list",
            help="Show the dead letters without consuming them.",
            description=(
                "Each dead letter: its gift, the gift's status and failure (reason and cause), its age "
                "(now - SentTimestamp) and SQS's receive count, which counts every receive, listings included. "
                "Messages that are not gift messages are shown as foreign."
            ),
        )
        listing.add_argument("--json", action="store_true", help="Print a JSON array instead of a table.")
        listing.add_argument(
            "--limit", type=positive_int, default=LIST_LIMIT, metavar="N", help=f"At most N (default {LIST_LIMIT})."
        )

        redrive = actions.add_parser(
            "redrive",
            help="Send failed gifts back to delivery.",
            description=(
                "Each failed gift goes back to `queued` and its dead letter, unchanged, to the gift queue; "
                "extra copies of one gift's dead letter are deleted, so it is delivered once. A gift that is "
                "not failed, and a foreign message, stay on the DLQ and are reported."
            ),
        )
        which = redrive.add_mutually_exclusive_group()
        which.add_argument("--gift", type=gift_id, metavar="ID", help="Only this gift's dead letter(s).")
        which.add_argument("--all", action="store_true", help="Every gift on the DLQ.")
        redrive.add_argument("--dry-run", action="store_true", help="Only report what would be redriven.")
        redrive.add_argument("--operator", metavar="NAME", help="Who redrives, for the audit log (default: OS user).")

        purge = actions.add_parser(
            "purge",
            help="Delete old dead letters; their gifts stay failed.",
            description="Delete dead letters sent more than DAYS days ago. The gifts stay `failed`.",
        )
        purge.add_argument(
            "--older-than", type=positive_int, required=True, metavar="DAYS", help="Age in whole days (1 or more)."
        )
        purge.add_argument("--yes", action="store_true", help="Really delete: a purge cannot be undone.")
        purge.add_argument("--operator", metavar="NAME", help="Who purges, for the audit log (default: OS user).")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        self._progress_shown: dict[str, int] = {}
        try:
            if action == "list":
                self._list(as_json=options["json"], limit=options["limit"])
            elif action == "redrive":
                self._redrive(
                    gift=options["gift"], every=options["all"], dry_run=options["dry_run"], operator=options["operator"]
                )
            else:
                self._purge(days=options["older_than"], yes=options["yes"], operator=options["operator"])
        except SQS_ERRORS as exc:
            raise CommandError(
                f"SQS failed ({type(exc).__name__}: {exc}). Gifts already requeued are published again by the "
                "outbox sweeper; letters read but not handled reappear on the DLQ by themselves."
            ) from exc

    # --- list -----------------------------------------------------------------

    def _list(self, *, as_json: bool, limit: int) -> None:
        rows = dead_letters_list(limit=limit)
        if as_json:
            self.stdout.write(json.dumps([asdict(row) for row in rows], indent=2))
            return
        self._table(rows)
        foreign = sum(row.foreign for row in rows)
        self.stdout.write(f"{len(rows)} dead letter(s), {foreign} foreign")
        if len(rows) >= limit:
            self.stderr.write(f"--limit {limit} reached: more may be waiting on the DLQ.")

    def _table(self, rows: list[DeadLetterRow]) -> None:
        header = ("MESSAGE ID", "GIFT", "STATUS", "AGE", "RECEIVES", "REASON", "CAUSE")
        lines = [
            (
                row.message_id,
                row.gift_id or "foreign",
                row.gift_status or ("-" if row.foreign else "unknown"),
                human_age(row.age_seconds),
                str(row.receive_count),
                row.reason or "-",
                row.cause or "-",
            )
            for row in rows
        ]
        widths = [max(len(cells[n]) for cells in [header, *lines]) for n in range(len(header))]
        for cells in [header, *lines]:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip())

    # --- redrive --------------------------------------------------------------

    def _redrive(self, *, gift: uuid.UUID | None, every: bool, dry_run: bool, operator: str | None) -> None:
        if gift is None and not every:
            raise CommandError("Say which: --gift ID for one gift, or --all for every gift on the DLQ.")
        report = dead_letters_redrive(
            gift_ids=None if every else [gift],
            operator=operator_name(operator),
            dry_run=dry_run,
            progress=self._progress,
        )
        for result in report.results:
            for line in self._lines(result):
                self.stdout.write(line)
        redriven = len(report.gifts(Outcome.WOULD_REDRIVE if dry_run else Outcome.REDRIVEN))
        verb = "would be redriven" if dry_run else "redriven"
        summary = f"{redriven} {verb}, {report.messages_left} left on the DLQ"
        if report.duplicates:
            summary += f", {report.duplicates} duplicate copies {'would be ' if dry_run else ''}deleted"
        self.stdout.write(summary)
        if gift is not None and report.gifts(Outcome.NOT_FOUND):
            raise CommandError(
                f"No dead letter of gift {gift} is on the DLQ. If it is failed and its dead letter was purged or "
                "lost, the Gift admin's redrive action publishes it afresh."
            )

    @staticmethod
    def _lines(result: RedriveResult) -> list[str]:
        if result.gift_id is None:
            return [f"left        {message_id}  foreign message" for message_id in result.message_ids]
        gift = f"gift {result.gift_id}"
        duplicates = f" (+{result.duplicates} duplicate copies)" if result.duplicates else ""
        if result.outcome is Outcome.REDRIVEN:
            return [f"moved       {result.message_ids[0]}  {gift}{duplicates}"]
        if result.outcome is Outcome.WOULD_REDRIVE:
            return [f"would move  {result.message_ids[0]}  {gift}{duplicates}"]
        if result.outcome is Outcome.REPUBLISHED:
            return [f"republished {gift}"]
        status = result.gift_status or "unknown"
        if result.outcome is Outcome.NOT_FOUND:
            return [f"not found   {gift} ({status}): no dead letter on the DLQ"]
        return [f"left        {message_id}  {gift} is {status}, not failed" for message_id in result.message_ids]

    def _progress(self, stage: str, done: int, total: int | None) -> None:
        """A line on stderr each time PROGRESS_EVERY more messages or gifts are done: a long run shows it is alive.

        Reading goes up to ten at a time: a line is due whenever `done` passes a
        multiple of PROGRESS_EVERY, and at the end of a batch that needed any.
        """
        shown = self._progress_shown.get(stage, 0)
        due = done // PROGRESS_EVERY > shown // PROGRESS_EVERY
        finished = total is not None and done == total and total >= PROGRESS_EVERY
        if due or finished:
            self._progress_shown[stage] = done
            of = f"/{total}" if total is not None else ""
            noun = "messages read" if stage == "read" else "gifts handled"
            self.stderr.write(f"dlq {stage}: {done}{of} {noun}")
            self.stderr.flush()

    # --- purge ----------------------------------------------------------------

    def _purge(self, *, days: int, yes: bool, operator: str | None) -> None:
        if not yes:
            raise CommandError(
                f"Refusing to purge without --yes: dead letters older than {days} days would be deleted for good "
                "(their gifts stay failed). Run `dlq list` first, then add --yes."
            )
        report = dead_letters_purge(older_than_days=days, operator=operator_name(operator))
        self.stdout.write(
            f"{report.purged} dead letter(s) older than {days} days purged ({len(report.gift_ids)} gifts, "
            f"{report.foreign} foreign), {report.kept} kept"
        )
