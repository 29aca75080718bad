"""The gift DLQ for operators: list, redrive and purge dead letters (`manage.py dlq` and the Gift admin).

Both the command and the admin action use this module, because reading a DLQ
safely is the subtle part and must be done one way:

- A scan receives every dead letter once, hidden for SCAN_HIDE_SECONDS so the
  scan never sees a letter twice, and gives back (visibility 0) whatever it did
  not delete as soon as it is done. Listing therefore consumes nothing; it only
  adds to SQS's ApproximateReceiveCount, which counts every receive.
- A redrive first moves the gift from `failed` to `queued` under its lock
  (outbox.gift_requeue_for_redrive), then sends its dead letter, unchanged, to
  the gift queue and deletes it from the DLQ. So a gift that is not `failed`
  keeps its message on the DLQ, two operators at once move a gift once, and
  extra copies of one gift's dead letter are deleted, not moved: one live
  message per queued gift, and one delivery.
- A purge deletes dead letters older than a number of days; their gifts stay
  `failed`, each with a `dead_letter_purged` event naming the operator.

Messages name a gift id and nothing else, so nothing here can print or log a
recipient, a message text or a voucher code.
"""

import logging
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from core.sqs import GIFT_DLQ, GIFT_QUEUE, decode_task_message, queue_url, sqs_client
from gifting import events
from gifting.models import Gift, GiftEvent, GiftEventType, GiftStatus
from gifting.publishing import DELIVER_TASK, gift_id_from_args
from gifting.services import outbox

logger = logging.getLogger(__name__)

REDRIVE_PERMISSION = "gifting.redrive_gift"
# What SQS (or the way to it) raises; callers turn these into a message for a person.
SQS_ERRORS = (BotoCoreError, ClientError)
# Long enough for a scan of a large DLQ to finish before its first letters reappear; a scan
# gives letters back at once when done, so this only matters if the process dies mid-scan.
SCAN_HIDE_SECONDS = 120
RECEIVE_WAIT_SECONDS = 1  # a long poll asks every SQS server: an empty answer means an empty queue
SQS_BATCH = 10  # SQS's cap for receive, delete and change-visibility batches

SqsClient = Any  # boto3's SQS client; no type stubs are installed
# progress(stage, done, total): stage "read" (total None, not known yet) or "redrive" (gifts).
Progress = Callable[[str, int, int | None], None]


@dataclass(frozen=True)
class DeadLetter:
    """One message on the DLQ, as a scan received it (the receipt handle is this scan's)."""

    message_id: str
    receipt_handle: str
    body: str
    message_attributes: dict[str, Any]
    sent_at: datetime
    receive_count: int
    gift_id: uuid.UUID | None  # None: not a gift delivery message ("foreign")

    @property
    def foreign(self) -> bool:
        return self.gift_id is None


def gift_id_of(body: str) -> uuid.UUID | None:
    """The gift a delivery message names, or None for anything else (a foreign or garbled message)."""
    try:
        task, args = decode_task_message(body)
    except ValueError:
        return None
    return gift_id_from_args(args) if task == DELIVER_TASK else None


def sent_at_from_attributes(attributes: dict[str, str]) -> datetime:
    """When SQS first accepted the message: its SentTimestamp (epoch milliseconds), as an aware datetime."""
    return datetime.fromtimestamp(int(attributes["SentTimestamp"]) / 1000, tz=UTC)


def is_older_than(sent_at: datetime, *, days: int, now: datetime) -> bool:
    """A dead letter a purge of `--older-than days` deletes: sent more than `days` whole days before `now`."""
    return sent_at < now - timedelta(days=days)


def _dead_letter(message: dict[str, Any]) -> DeadLetter:
    attributes = message.get("Attributes", {})
    return DeadLetter(
        message_id=message["MessageId"],
        receipt_handle=message["ReceiptHandle"],
        body=message["Body"],
        message_attributes=message.get("MessageAttributes", {}),
        sent_at=sent_at_from_attributes(attributes),
        receive_count=int(attributes.get("ApproximateReceiveCount", 0)),
        gift_id=gift_id_of(message["Body"]),
    )


def _chunks(items: Sequence[DeadLetter]) -> Iterator[Sequence[DeadLetter]]:
    for start in range(0, len(items), SQS_BATCH):
        yield items[start : start + SQS_BATCH]


def dead_letters_scan(
    client: SqsClient, dlq_url: str, *, limit: int | None = None, progress: Progress | None = None
) -> list[DeadLetter]:
    """Receive up to `limit` dead letters (all by default), each once, hidden for SCAN_HIDE_SECONDS.

    Each letter keeps its latest receipt handle, the only one SQS honours. The
    scan stops when SQS has nothing more to give, or gives only letters seen
    already (the scan outlasted SCAN_HIDE_SECONDS and the queue went round).
    The caller deletes what it consumes and gives the rest back (_Scan does both).
    """
    seen: dict[str, DeadLetter] = {}
    while limit is None or len(seen) < limit:
        want = SQS_BATCH if limit is None else min(SQS_BATCH, limit - len(seen))
        batch = client.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=want,
            WaitTimeSeconds=RECEIVE_WAIT_SECONDS,
            VisibilityTimeout=SCAN_HIDE_SECONDS,
            MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        letters = [_dead_letter(message) for message in batch]
        new = [letter for letter in letters if letter.message_id not in seen]
        seen.update((letter.message_id, letter) for letter in letters)
        if not new:
            break
        if progress:
            progress("read", len(seen), None)
    return list(seen.values())


class _Scan:
    """The DLQ's letters, hidden while an operation works on them; deleted ones are remembered."""

    def __init__(self, client: SqsClient, dlq_url: str, letters: list[DeadLetter]) -> None:
        self.client = client
        self.dlq_url = dlq_url
        self.letters = letters
        self._deleted: set[str] = set()

    def delete(self, letters: Sequence[DeadLetter]) -> set[str]:
        """Delete letters from the DLQ; returns the MessageIds SQS confirmed deleted."""
        deleted: set[str] = set()
        for chunk in _chunks(letters):
            response = self.client.delete_message_batch(
                QueueUrl=self.dlq_url,
                Entries=[{"Id": str(n), "ReceiptHandle": letter.receipt_handle} for n, letter in enumerate(chunk)],
            )
            deleted.update(chunk[int(entry["Id"])].message_id for entry in response.get("Successful", []))
            if response.get("Failed"):
                logger.warning("dlq delete refused messages=%s", len(response["Failed"]))
        self._deleted |= deleted
        return deleted

    def release(self) -> None:
        """Give back what was read but not deleted, so the next operator (or list) sees it at once.

        Best effort: a letter not given back reappears by itself after SCAN_HIDE_SECONDS.
        """
        kept = [letter for letter in self.letters if letter.message_id not in self._deleted]
        try:
            for chunk in _chunks(kept):
                self.client.change_message_visibility_batch(
                    QueueUrl=self.dlq_url,
                    Entries=[
                        {"Id": str(n), "ReceiptHandle": letter.receipt_handle, "VisibilityTimeout": 0}
                        for n, letter in enumerate(chunk)
                    ],
                )
        except SQS_ERRORS as exc:
            logger.warning("dlq letters not given back error=%s (they reappear by themselves)", type(exc).__name__)


@contextmanager
def _dlq_scan(*, limit: int | None = None, progress: Progress | None = None) -> Iterator[_Scan]:
    client = sqs_client()
    dlq_url = queue_url(client, GIFT_DLQ)
    scan = _Scan(client, dlq_url, dead_letters_scan(client, dlq_url, limit=limit, progress=progress))
    try:
        yield scan
    finally:
        scan.release()


def _status_of(gift_id: uuid.UUID) -> str | None:
    return Gift.objects.filter(id=gift_id).values_list("status", flat=True).first()


# --- list ---------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetterRow:
    """One dead letter as `dlq list` shows it: ids, the gift's state and failure, age and receives. No personal data."""

    message_id: str
    gift_id: str | None  # None for a foreign message
    foreign: bool
    gift_status: str | None  # None for a foreign message or a gift the database does not have
    reason: str  # Gift.last_error: the coarse reason the sender sees too
    cause: str  # the cause in the gift's latest `failed` event: for staff
    sent_at: str  # ISO 8601, UTC
    age_seconds: int
    receive_count: int


def _latest_failure_causes(gift_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, str]:
    causes: dict[uuid.UUID, str] = {}
    failures = GiftEvent.objects.filter(gift_id__in=gift_ids, type=GiftEventType.FAILED).order_by("at", "id")
    for gift_id, details in failures.values_list("gift_id", "details"):
        causes[gift_id] = str(details.get("cause", ""))  # later events overwrite earlier: the latest wins
    return causes


def dead_letters_list(*, limit: int | None = None, now: datetime | None = None) -> list[DeadLetterRow]:
    """What is on the DLQ (up to `limit` letters), with each gift's failure; nothing is consumed."""
    with _dlq_scan(limit=limit) as scan:
        letters = scan.letters
    now = now or timezone.now()
    gift_ids = {letter.gift_id for letter in letters if letter.gift_id is not None}
    gifts = Gift.objects.only("id", "status", "last_error").in_bulk(gift_ids)
    causes = _latest_failure_causes(gift_ids)
    rows = []
    for letter in letters:
        gift = gifts.get(letter.gift_id) if letter.gift_id else None
        rows.append(
            DeadLetterRow(
                message_id=letter.message_id,
                gift_id=str(letter.gift_id) if letter.gift_id else None,
                foreign=letter.foreign,
                gift_status=gift.status if gift else None,
                reason=gift.last_error if gift else "",
                cause=causes.get(letter.gift_id, "") if letter.gift_id else "",
                sent_at=letter.sent_at.isoformat(),
                age_seconds=max(0, int((now - letter.sent_at).total_seconds())),
                receive_count=letter.receive_count,
            )
        )
    return rows


# --- redrive ------------------------------------------------------------------


class Outcome(StrEnum):
    REDRIVEN = "redriven"  # its dead letter went back to the gift queue; extra copies were deleted
    WOULD_REDRIVE = "would_redrive"  # a dry run's REDRIVEN
    REPUBLISHED = "republished"  # no dead letter left: requeued and a fresh message published (admin)
    LEFT = "left"  # the gift is not failed (or unknown), or the message is foreign: it stays on the DLQ
    NOT_FOUND = "not_found"  # asked for by id, but no dead letter of it is on the DLQ


@dataclass(frozen=True)
class RedriveResult:
    outcome: Outcome
    gift_id: uuid.UUID | None  # None for a foreign message
    message_ids: tuple[str, ...]  # the dead letters concerned, first the one moved
    gift_status: str | None = None  # what the gift is now; None when foreign or unknown
    duplicates: int = 0  # extra copies deleted (or, in a dry run, to delete)


@dataclass(frozen=True)
class RedriveReport:
    results: list[RedriveResult]

    def gifts(self, *outcomes: Outcome) -> list[RedriveResult]:
        return [result for result in self.results if result.outcome in outcomes]

    @property
    def messages_left(self) -> int:
        return sum(len(result.message_ids) for result in self.gifts(Outcome.LEFT))

    @property
    def duplicates(self) -> int:
        return sum(result.duplicates for result in self.gifts(Outcome.REDRIVEN, Outcome.WOULD_REDRIVE))


def _require_no_transaction() -> None:
    if transaction.get_connection().in_atomic_block:
        raise RuntimeError(
            "redrive must run outside a transaction: a message sent before the requeue commits meets a failed gift"
        )


def _by_gift(letters: Iterable[DeadLetter]) -> dict[uuid.UUID, list[DeadLetter]]:
    groups: dict[uuid.UUID, list[DeadLetter]] = {}
    for letter in letters:
        if letter.gift_id is not None:
            groups.setdefault(letter.gift_id, []).append(letter)
    return groups


def _redrive_gift(
    scan: _Scan,
    gift_queue_url: str,
    gift_id: uuid.UUID,
    copies: list[DeadLetter],
    *,
    operator: str,
    actor: AbstractBaseUser | None,
    dry_run: bool,
) -> RedriveResult:
    """Requeue one failed gift, then move its first dead letter and delete the other copies."""
    message_ids = tuple(letter.message_id for letter in copies)
    first, extra = copies[0], copies[1:]
    if dry_run:
        status = _status_of(gift_id)
        if status == GiftStatus.FAILED:
            return RedriveResult(Outcome.WOULD_REDRIVE, gift_id, message_ids, status, duplicates=len(extra))
        return RedriveResult(Outcome.LEFT, gift_id, message_ids, status)
    requeued = outbox.gift_requeue_for_redrive(
        gift_id=gift_id, operator=operator, actor=actor, message_id=first.message_id, duplicates_deleted=len(extra)
    )
    if not requeued:
        return RedriveResult(Outcome.LEFT, gift_id, message_ids, _status_of(gift_id))
    # The gift is queued now. Should SQS fail from here, the error stops the run and the outbox
    # sweeper publishes the gift again (requeued with next_attempt_at = now): never lost.
    attributes = {"MessageAttributes": first.message_attributes} if first.message_attributes else {}
    scan.client.send_message(QueueUrl=gift_queue_url, MessageBody=first.body, **attributes)
    deleted = scan.delete(copies)
    if first.message_id not in deleted:
        logger.warning("dead letter moved but not deleted gift=%s (a later redrive leaves it)", gift_id)
    logger.info("gift redriven gift=%s operator=%s duplicates=%s", gift_id, operator, len(extra))
    return RedriveResult(
        Outcome.REDRIVEN, gift_id, message_ids, GiftStatus.QUEUED, duplicates=len(deleted - {first.message_id})
    )


def _republish(gift_id: uuid.UUID, *, operator: str, actor: AbstractBaseUser | None) -> RedriveResult:
    """A failed gift whose dead letter is gone (purged, or lost by SQS): requeue it, then publish afresh.

    Requeued first, under the gift's lock: a concurrent redrive then finds it
    queued and publishes nothing, so a queued gift never has two live messages
    from a redrive. If the publish fails, the outbox sweeper publishes it. (A
    letter only hidden by another operator's scan just then stays on the DLQ;
    its gift no longer failed, later redrives leave it and a purge ends it.)
    """
    if not outbox.gift_requeue_for_redrive(gift_id=gift_id, operator=operator, actor=actor, message_id=None):
        return RedriveResult(Outcome.NOT_FOUND, gift_id, (), _status_of(gift_id))
    outbox.gift_publish(gift_id=gift_id, actor_label="operator")
    logger.info("gift redriven with a fresh message gift=%s operator=%s", gift_id, operator)
    return RedriveResult(Outcome.REPUBLISHED, gift_id, (), GiftStatus.QUEUED)


def dead_letters_redrive(
    *,
    gift_ids: Collection[uuid.UUID] | None,
    operator: str,
    actor: AbstractBaseUser | None = None,
    dry_run: bool = False,
    republish_missing: bool = False,
    progress: Progress | None = None,
) -> RedriveReport:
    """Send failed gifts back to delivery from the DLQ, each gift at most once.

    `gift_ids` None means every gift on the DLQ; then foreign messages are
    reported as left. With ids, other gifts' letters are not touched, and an id
    without a dead letter is NOT_FOUND, or, with `republish_missing` (the admin
    action), requeued and published afresh. `actor`, when given (the admin),
    must hold the redrive permission. A dry run reads and reports, nothing more.
    """
    _require_no_transaction()
    if actor is not None and not actor.has_perm(REDRIVE_PERMISSION):
        raise PermissionDenied("Redriving gifts needs the redrive permission.")
    wanted = None if gift_ids is None else list(dict.fromkeys(gift_ids))  # in the caller's order, once each
    results: list[RedriveResult] = []
    with _dlq_scan(progress=progress) as scan:
        wanted_set = set(wanted or ())
        groups = _by_gift(letter for letter in scan.letters if wanted is None or letter.gift_id in wanted_set)
        gift_queue_url = queue_url(scan.client, GIFT_QUEUE)
        for done, (gift_id, copies) in enumerate(groups.items(), start=1):
            results.append(
                _redrive_gift(scan, gift_queue_url, gift_id, copies, operator=operator, actor=actor, dry_run=dry_run)
            )
            if progress:
                progress("redrive", done, len(groups))
        if wanted is None:
            results.extend(
                RedriveResult(Outcome.LEFT, None, (letter.message_id,)) for letter in scan.letters if letter.foreign
            )
    missing = [gift_id for gift_id in wanted if gift_id not in groups] if wanted is not None else []
    for gift_id in missing:
        if republish_missing and not dry_run:
            results.append(_republish(gift_id, operator=operator, actor=actor))
        else:
            results.append(RedriveResult(Outcome.NOT_FOUND, gift_id, (), _status_of(gift_id)))
    return RedriveReport(results)


# --- purge --------------------------------------------------------------------


@dataclass(frozen=True)
class PurgeReport:
    purged: int  # messages deleted
    kept: int  # younger dead letters, left on the DLQ
    gift_ids: tuple[uuid.UUID, ...]  # gifts whose dead letters were purged; each got a dead_letter_purged event
    foreign: int  # purged messages that named no gift we have


def dead_letters_purge(
    *, older_than_days: int, operator: str, actor: AbstractBaseUser | None = None, now: datetime | None = None
) -> PurgeReport:
    """Delete dead letters sent more than `older_than_days` days before `now` (default: the current time).

    The gifts stay `failed`: the audit log keeps them, with one event per gift
    saying who purged which messages; a redrive from the admin can still
    publish a purged gift afresh.
    """
    if older_than_days < 1:
        raise ValueError("older_than_days must be a positive number of days")
    now = now or timezone.now()
    with _dlq_scan() as scan:
        old = [letter for letter in scan.letters if is_older_than(letter.sent_at, days=older_than_days, now=now)]
        deleted_ids = scan.delete(old)
        kept = len(scan.letters) - len(deleted_ids)
    deleted = [letter for letter in old if letter.message_id in deleted_ids]
    groups = _by_gift(deleted)
    gifts = Gift.objects.in_bulk(list(groups))
    for gift_id, letters in groups.items():
        if gift_id in gifts:
            events.gift_dead_letter_purged(
                gifts[gift_id],
                operator=operator,
                actor=actor,
                message_ids=[letter.message_id for letter in letters],
                older_than_days=older_than_days,
            )
    foreign = sum(1 for letter in deleted if letter.gift_id not in gifts)
    logger.warning(
        "dlq purged messages=%s gifts=%s foreign=%s kept=%s older_than_days=%s operator=%s",
        len(deleted),
        len(gifts),
        foreign,
        kept,
        older_than_days,
        operator,
    )
    return PurgeReport(purged=len(deleted), kept=kept, gift_ids=tuple(gifts), foreign=foreign)
