"""`manage.py rotate_encryption_keys`: re-encrypt every encrypted column under the newest key.

    rotate_encryption_keys [--batch-size N] [--limit N] [--dry-run]

To rotate: put a new key first in FIELD_ENCRYPTION_KEYS, keep the old ones after
it, deploy, run this until it says there is nothing to do, then remove the old
keys. Every value carries the id of its key (core.crypto), so the rows still to
do are found by a query: a run that was interrupted, limited or failed simply
continues where it stopped. Each batch is one transaction over rows locked with
SELECT … FOR UPDATE and writes only the encrypted columns, so a delivery working
on a gift waits for the batch (or the batch for it) and neither overwrites the
other. It walks every model of every app, so a new encrypted field is rotated
without changing this command. Every run that re-encrypted rows leaves an audit
entry (`encryption_keys_rotated`) with the counts.
"""

import functools
import operator

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import models, transaction

from audit.models import AuditKind
from audit.services import audit_record
from core import crypto

DEFAULT_BATCH_SIZE = 500
MAX_BATCH_SIZE = 10_000
BAR_WIDTH = 30


def encrypted_models() -> list[tuple[type[models.Model], list[str]]]:
    """Each concrete model with encrypted columns, and their names."""
    found = []
    for model in apps.get_models():
        if model._meta.proxy or not model._meta.managed:
            continue
        names = [field.name for field in model._meta.concrete_fields if isinstance(field, crypto.EncryptedField)]
        if names:
            found.append((model, names))
    return found


def stale_rows(model: type[models.Model], names: list[str]) -> models.QuerySet:
    """Rows with at least one value not under the newest key."""
    condition = functools.reduce(operator.or_, (model._meta.get_field(name).stale_q() for name in names))
    return model._default_manager.filter(condition)


def reencrypt_batch(model: type[models.Model], names: list[str], *, size: int) -> int:
    """Re-encrypt up to `size` stale rows under the newest key, in one transaction; returns how many."""
    with transaction.atomic():
        pks = list(stale_rows(model, names).select_for_update().order_by("pk").values_list("pk", flat=True)[:size])
        try:
            # Loading decrypts under any configured key; saving encrypts under the newest.
            rows = list(model._default_manager.filter(pk__in=pks).only("pk", *names))
        except crypto.DecryptionError:
            raise CommandError(_undecryptable(model, names, pks)) from None
        model._default_manager.bulk_update(rows, names)
    return len(rows)


def _undecryptable(model: type[models.Model], names: list[str], pks: list) -> str:
    """Which row of a batch cannot be decrypted, and why (an error message for the operator)."""
    for pk in pks:
        for name in names:
            try:
                model._default_manager.filter(pk=pk).values_list(name, flat=True).get()
            except crypto.DecryptionError as exc:
                return (
                    f"{model._meta.label} {pk}, column {name}: {exc} Nothing in this batch was changed; "
                    "restore the row or its key, then run the command again."
                )
    return f"{model._meta.label}: a row could not be decrypted, and then could (changed meanwhile?). Run it again."


def bar(done: int, total: int) -> str:
    """`[#########.....]  60%`."""
    filled = BAR_WIDTH * done // total if total else BAR_WIDTH
    percent = 100 * done // total if total else 100
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {percent:3d}%"


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted column of every model under the newest FIELD_ENCRYPTION_KEYS key, in "
        "batches, each in its own transaction with its rows locked. Resumable: run it again after an "
        "interruption and it continues; once it reports nothing to do, the older keys can be removed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_BATCH_SIZE,
            metavar="N",
            help=f"Rows per transaction, 1 to {MAX_BATCH_SIZE} (default {DEFAULT_BATCH_SIZE}).",
        )
        parser.add_argument("--limit", type=int, metavar="N", help="Stop after N rows (continue with another run).")
        parser.add_argument("--dry-run", action="store_true", help="Only count the rows still to re-encrypt.")

    def handle(self, *args, batch_size: int, limit: int | None, dry_run: bool, **options) -> None:
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise CommandError(f"--batch-size must be between 1 and {MAX_BATCH_SIZE}, not {batch_size}.")
        if limit is not None and limit < 1:
            raise CommandError(f"--limit must be at least 1, not {limit}.")
        newest = crypto.current_prefix().rstrip(crypto.SEPARATOR)
        counted = [(model, names, stale_rows(model, names).count()) for model, names in encrypted_models()]
        todo = [(model, names, count) for model, names, count in counted if count]
        total = sum(count for _, _, count in todo)
        if total == 0:
            self.stdout.write(f"Nothing to do: every encrypted value is under the newest key ({newest}).")
            return
        self.stdout.write(f"{total} rows to re-encrypt under key {newest}:")
        for model, names, count in todo:
            self.stdout.write(f"  {model._meta.label}: {count} ({', '.join(names)})")
        if dry_run:
            return
        done: dict[str, int] = {}
        try:
            self._rotate(todo, done, batch_size=batch_size, limit=limit)
        finally:
            # Every run that changed rows is audit-logged, an interrupted or failed one too.
            left = sum(stale_rows(model, names).count() for model, names, _ in todo)
            if sum(done.values()):
                audit_record(
                    kind=AuditKind.ENCRYPTION_KEYS_ROTATED,
                    actor=None,
                    actor_label="manage.py",
                    key_id=newest,
                    rows=sum(done.values()),
                    by_model=done,
                    rows_left=left,
                )
        if left:
            self.stdout.write(f"Re-encrypted {sum(done.values())} rows; {left} left: run the command again.")
        else:
            self.stdout.write(f"Done: re-encrypted {sum(done.values())} rows; the older keys can be removed.")

    def _rotate(self, todo: list, done: dict[str, int], *, batch_size: int, limit: int | None) -> None:
        """Batches until every model is done or `limit` rows are, counting rows per model into `done`."""
        budget = limit
        try:
            for model, names, count in todo:
                label = model._meta.label
                done[label] = 0
                while budget is None or budget > 0:
                    size = batch_size if budget is None else min(batch_size, budget)
                    rotated = reencrypt_batch(model, names, size=size)
                    if not rotated:
                        break
                    done[label] += rotated
                    budget = None if budget is None else budget - rotated
                    self.stdout.write(f"  {label}: {done[label]}/{count} {bar(min(done[label], count), count)}")
        except KeyboardInterrupt:
            raise CommandError(
                f"Interrupted after {sum(done.values())} rows (the batch in progress was rolled back): "
                "run the command again to continue."
            ) from None
