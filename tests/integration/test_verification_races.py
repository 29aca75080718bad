"""Confirmation links under concurrency: the gift row is locked first everywhere, so nothing deadlocks."""

import re
import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.utils import timezone

from fraud.models import RecipientVerification
from gifting.models import Gift, GiftState
from gifting.services.holds import gift_approve
from gifting.services.intake import gift_create
from tests.integration.test_delivery import DELIVERY_TIMEOUT, event_types
from tests.waiting import wait_until

ROUNDS = 4

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="row locks need PostgreSQL; SQLite serialises whole transactions"
    ),
]


def link_tokens(smtp_sink, address: str) -> list[str]:
    """The tokens of every confirmation link sent to `address`, oldest first."""
    tokens = []
    for message in smtp_sink.messages:
        if message["To"] == address:
            text = message.get_payload()[0].get_payload(decode=True).decode()
            tokens += re.findall(r"https?://\S+/gifts/verify/(\S+)/", text)
    return tokens


def wait_for_new_link(smtp_sink, gift: Gift, address: str, *, links_before: int) -> str:
    """The newest link, once the worker has sent one more and holds the gift for its recipient again."""

    def sent():
        gift.refresh_from_db()
        tokens = link_tokens(smtp_sink, address)
        return tokens[-1] if len(tokens) > links_before and gift.state == GiftState.HELD_FOR_RECIPIENT else None

    return wait_until(sent, timeout=DELIVERY_TIMEOUT, message="the worker sent no new confirmation link")


def test_two_resends_at_once_with_a_running_worker_never_deadlock(
    sqs, smtp_sink, start_worker, transactional_db, make_user
):
    """Before the lock order was fixed, the page locked the verification and then the gift while the
    worker locked the gift and then the verification: 3 deadlocks in 4 rounds."""
    worker = start_worker()
    sender = make_user(date_joined=timezone.now() - timedelta(days=90))
    reviewer = make_user(is_staff=True)
    reviewer.user_permissions.add(Permission.objects.get(codename="review_gift"))
    reviewer = type(reviewer).objects.get(pk=reviewer.pk)
    address = "bob@example.com"
    gift = gift_create(sender=sender, recipient_email=address, amount="800.00", currency="EUR")
    gift_approve(gift_id=gift.id, reviewer=reviewer)
    token = wait_for_new_link(smtp_sink, gift, address, links_before=0)
    answers: list[int] = []

    for round_ in range(ROUNDS):
        RecipientVerification.objects.filter(gift=gift).update(expires_at=timezone.now() - timedelta(seconds=1))
        start = threading.Barrier(2)

        def resend(token: str = token, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                answers.append(Client().post(f"/gifts/verify/{token}/", {"resend": "1"}).status_code)
            finally:
                connection.close()

        threads = [threading.Thread(target=resend) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        token = wait_for_new_link(smtp_sink, gift, address, links_before=round_ + 1)

    # One resend per round wins; the other finds the gift queued, or its link superseded: a 400 page.
    assert sorted(answers) == [200] * ROUNDS + [400] * ROUNDS
    assert worker.process.poll() is None
    assert "deadlock" not in worker.log().lower()
    assert "retry_scheduled" not in event_types(gift)
    assert event_types(gift).count("verification_sent") == ROUNDS + 1
