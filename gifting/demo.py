"""`manage.py demo` (`make demo`): demo users and one gift in every state, through the real services.

Development only: it refuses to run with DEBUG off, as its users have fixed,
printed passwords. It expects `make run` to be going (SQS and a worker): it
checks that SQS answers, creates what is missing, then waits, with a deadline,
for the worker to take the gifts it was given.

- alice sends; her account is dated SENDER_ACCOUNT_AGE back, so her gifts meet
  the ordinary tiers (a gift of 200-499 is held for a period).
- nora's account is new: new_account (+30) plus high_value (+20) reach
  FRAUD_REVIEW_SCORE (50), so her 250 EUR gift waits for a reviewer instead.
- rita reviews: staff with the review permission and view access to the review
  queue, nothing else (nobody may review their own gift, hence a second person).

Every gift goes through gift_create and the reviewers' services; the worker
delivers, asks the recipient to confirm, and fails and dead-letters the wallet
gift (wallet delivery is not configured on the defaults: a permanent error).
One thing is forced, as the console email backend never fails: the retried
gift's first attempt runs here, in the gift's creating transaction, against an
SMTP server answering 451; gift_deliver records it and outbox.gift_record_retry
the retry (with no delay, one value of the real backoff's full jitter). The
gift's first publication, on commit, is that retry's message; the worker
delivers it at the second attempt.

Idempotent: each gift is found again by its sender, recipient, amount and
message, so a second run creates nothing and says what it found.
"""

import smtplib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Permission
from django.core.mail.backends.base import BaseEmailBackend
from django.db import transaction
from django.test.utils import override_settings
from django.urls import reverse
from django.utils import timezone

from core.crypto import recipient_index
from core.sqs import GIFT_DLQ, GIFT_QUEUE, queue_url, sqs_client
from gifting.errors import TransientDeliveryError
from gifting.models import Gift, GiftEventType, GiftState, GiftStatus
from gifting.services import delivery, holds, intake, outbox

# Printed at the end of every run and written in the README: demo accounts on a development machine.
DEMO_PASSWORD = "demo-password"  # noqa: S105 - development only (DEBUG), documented
SENDER, NEW_SENDER, REVIEWER = "alice", "nora", "rita"
SENDER_ACCOUNT_AGE = timedelta(days=60)
REVIEWER_PERMISSIONS = ("review_gift", "view_giftreview")  # gifting.<codename>: review, and see the queue
DEFAULT_WAIT_SECONDS = 60
POLL_SECONDS = 0.5


class DemoError(Exception):
    """The demo cannot run (DEBUG off, SQS down) or the worker did not finish in time; the message says why."""


class Step(StrEnum):
    """What the demo does to a gift after creating it."""

    NONE = ""
    FIRST_ATTEMPT_FAILS = "first attempt fails"
    APPROVE = "approve"
    REJECT = "reject"


@dataclass(frozen=True)
class DemoGift:
    title: str
    sender: str
    amount: Decimal
    expected: GiftState
    recipient_email: str = ""
    recipient_wallet: str = ""
    step: str = Step.NONE

    @property
    def message(self) -> str:
        """The gift's message, also its demo marker."""
        return f"Demo gift: {self.title}."


DEMO_GIFTS = (
    DemoGift("delivered", SENDER, Decimal("25.00"), GiftState.DELIVERED, recipient_email="bob@example.com"),
    DemoGift(
        "retried, then delivered",
        SENDER,
        Decimal("30.00"),
        GiftState.DELIVERED,
        recipient_email="carol@example.com",
        step=Step.FIRST_ATTEMPT_FAILS,
    ),
    DemoGift(
        "failed and dead-lettered",
        SENDER,
        Decimal("40.00"),
        GiftState.FAILED,
        recipient_wallet="0xdEde00000000000000000000000000000000beEF",
    ),
    DemoGift(
        "held for a period", SENDER, Decimal("200.00"), GiftState.HELD_FOR_PERIOD, recipient_email="dave@example.com"
    ),
    DemoGift(
        "held for approval (a new account)",
        NEW_SENDER,
        Decimal("250.00"),
        GiftState.HELD_FOR_APPROVAL,
        recipient_email="erin@example.com",
    ),
    DemoGift(
        "approved, waiting for the recipient",
        SENDER,
        Decimal("500.00"),
        GiftState.HELD_FOR_RECIPIENT,
        recipient_email="frank@example.com",
        step=Step.APPROVE,
    ),
    DemoGift(
        "rejected by a reviewer",
        SENDER,
        Decimal("300.00"),
        GiftState.REJECTED,
        recipient_email="grace@example.com",
        step=Step.REJECT,
    ),
)
APPROVE_REASON = "Demo: the sender confirmed they know the recipient."
REJECT_REASON = "Demo: the recipient's address was reported as taken over."


@dataclass(frozen=True)
class DemoUser:
    username: str
    created: bool
    note: str


@dataclass(frozen=True)
class DemoGiftResult:
    spec: DemoGift
    gift: Gift
    created: bool


@dataclass(frozen=True)
class DemoResult:
    users: list[DemoUser]
    gifts: list[DemoGiftResult]
    urls: dict[str, str]

    @property
    def astray(self) -> list[DemoGiftResult]:
        """Gifts made by this run that are not in the state they were made for (found ones may have moved on)."""
        return [row for row in self.gifts if row.created and row.gift.state != row.spec.expected]


class _TemporarilyUnavailable(BaseEmailBackend):
    """A mail server that answers 451 to every message, as a greylisting one does at first."""

    def send_messages(self, email_messages) -> int:
        raise smtplib.SMTPResponseException(451, b"4.7.1 Greylisted, try again later")


def demo_run(*, wait_seconds: float = DEFAULT_WAIT_SECONDS, say: Callable[[str], None] = print) -> DemoResult:
    """Create what is missing of the demo, then wait up to `wait_seconds` for the worker (0: no SQS check, no wait)."""
    if not settings.DEBUG:
        raise DemoError("The demo creates users with known passwords: it runs only with DJANGO_DEBUG=true.")
    if wait_seconds:
        _check_sqs()
    users = [_sender(), _new_sender(), _reviewer()]
    people = {u.username: get_user_model().objects.get(username=u.username) for u in users}
    gifts = [_gift(spec, sender=people[spec.sender], reviewer=people[REVIEWER]) for spec in DEMO_GIFTS]
    if wait_seconds:
        say(f"Waiting up to {wait_seconds:g} s for the worker to take the queued gifts…")
        _wait_for_worker([result.gift.id for result in gifts], wait_seconds=wait_seconds)
    gifts = [DemoGiftResult(r.spec, Gift.objects.get(id=r.gift.id), r.created) for r in gifts]
    return DemoResult(users=users, gifts=gifts, urls=_urls(gifts))


def _check_sqs() -> None:
    try:
        client = sqs_client()
        for queue in (GIFT_QUEUE, GIFT_DLQ):
            queue_url(client, queue)
    except (BotoCoreError, ClientError) as exc:
        raise DemoError(
            f"SQS does not answer at {settings.SQS_ENDPOINT_URL or 'AWS'} ({type(exc).__name__}). "
            "The demo needs the running system: start `make run` in another terminal, then run `make demo` again."
        ) from exc


def _user(username: str, **defaults) -> tuple[AbstractBaseUser, bool]:
    """The demo user, created if missing; its password is (again) the demo password either way."""
    user, created = get_user_model().objects.get_or_create(
        username=username, defaults={"email": f"{username}@example.com", **defaults}
    )
    user.set_password(DEMO_PASSWORD)
    user.save(update_fields=["password"])
    return user, created


def _sender() -> DemoUser:
    user, created = _user(SENDER, first_name="Alice")
    established = timezone.now() - SENDER_ACCOUNT_AGE
    if user.date_joined > established:
        # An older account meets the ordinary tiers (see the module docstring); set once, kept after.
        user.date_joined = established
        user.save(update_fields=["date_joined"])
    return DemoUser(SENDER, created, f"sends gifts; account dated {SENDER_ACCOUNT_AGE.days} days back")


def _new_sender() -> DemoUser:
    _, created = _user(NEW_SENDER, first_name="Nora")
    return DemoUser(NEW_SENDER, created, "a new account: her 200-499 gifts need approval")


def _reviewer() -> DemoUser:
    user, created = _user(REVIEWER, first_name="Rita")
    user.is_staff, user.is_superuser = True, False
    user.save(update_fields=["is_staff", "is_superuser"])
    user.groups.clear()
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="gifting", codename__in=REVIEWER_PERMISSIONS)
    )
    return DemoUser(REVIEWER, created, "staff: the review queue only (view it, approve or reject)")


def _find(spec: DemoGift, *, sender: AbstractBaseUser) -> Gift | None:
    """The demo gift made from this spec, if a run made it: its recipient and amount narrow, its message decides."""
    candidates = Gift.objects.filter(
        sender=sender,
        recipient_index=recipient_index(email=spec.recipient_email, wallet=spec.recipient_wallet),
        amount=spec.amount,
        currency="EUR",
    )
    return next((gift for gift in candidates if gift.message == spec.message), None)


def _gift(spec: DemoGift, *, sender: AbstractBaseUser, reviewer: AbstractBaseUser) -> DemoGiftResult:
    gift = _find(spec, sender=sender)
    created = gift is None
    if created:
        with transaction.atomic():
            gift = intake.gift_create(
                sender=sender,
                amount=spec.amount,
                currency="EUR",
                recipient_email=spec.recipient_email,
                recipient_wallet=spec.recipient_wallet,
                message=spec.message,
            )
            if spec.step == Step.FIRST_ATTEMPT_FAILS and gift.state == GiftState.QUEUED:
                _first_attempt_fails(gift)
    # A review happens once, when the gift is still held as it was created (also after an interrupted run).
    gift.refresh_from_db()
    if gift.status == GiftStatus.HELD and gift.state != GiftState.HELD_FOR_RECIPIENT:
        if spec.step == Step.APPROVE:
            gift = holds.gift_approve(gift_id=gift.id, reviewer=reviewer, reason=APPROVE_REASON)
        elif spec.step == Step.REJECT:
            gift = holds.gift_reject(gift_id=gift.id, reviewer=reviewer, reason=REJECT_REASON)
    return DemoGiftResult(spec, gift, created)


def _first_attempt_fails(gift: Gift) -> None:
    """The worker's first attempt, here, against a mail server answering 451; then the retry, as the task notes it."""
    try:
        with override_settings(EMAIL_BACKEND=f"{__name__}._TemporarilyUnavailable"):
            delivery.gift_deliver(gift_id=gift.id)
    except TransientDeliveryError as exc:
        outbox.gift_record_retry(gift_id=gift.id, reason=exc.reason, delay_seconds=0, error=type(exc).__name__)
    else:
        raise AssertionError("the demo's mail server accepted a message it should have refused")


def _worker_done(gift_ids: list) -> bool:
    """None of the gifts is queued any more, and every failed one has its dead letter on the DLQ."""
    gifts = Gift.objects.filter(id__in=gift_ids)
    if gifts.filter(status=GiftStatus.QUEUED).exists():
        return False
    failed = gifts.filter(status=GiftStatus.FAILED)
    return not failed.exclude(events__type=GiftEventType.DEAD_LETTERED).exists()


def _wait_for_worker(gift_ids: list, *, wait_seconds: float) -> None:
    deadline = time.monotonic() + wait_seconds
    while not _worker_done(gift_ids):
        if time.monotonic() > deadline:
            raise DemoError(
                f"The worker has not taken the demo's queued gifts within {wait_seconds:g} s. Is `make run` going "
                "(its worker and beat)? Run `make demo` again once it is: it carries on where it stopped."
            )
        time.sleep(POLL_SECONDS)


def _urls(gifts: list[DemoGiftResult]) -> dict[str, str]:
    base = settings.SITE_URL.rstrip("/")
    delivered = next((r.gift for r in gifts if r.gift.status == GiftStatus.DELIVERED), gifts[0].gift)
    return {
        "review queue (log in as rita)": base + reverse("admin:gifting_giftreview_changelist"),
        "operations page (rita is staff)": base + reverse("admin-operations"),
        "API docs": base + reverse("api-docs"),
        f"one of {delivered.sender.get_username()}'s gifts (API, with her token)": base
        + reverse("gift-detail", args=[delivered.id]),
    }
