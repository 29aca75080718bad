"""`manage.py demo`: its users, a gift in every state, idempotence, DEBUG only; and the README's "Try it" block.

The worker is played in-process here: each queued gift's message runs the real
task eagerly (deliver_gift.apply), on_failure and all. tests/integration/test_demo.py
runs the command against a real worker and SQS.
"""

import re
import shlex
import shutil
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from core.sqs import GIFT_DLQ
from gifting.demo import DEMO_GIFTS, DEMO_PASSWORD, NEW_SENDER, REVIEWER, SENDER, demo_run
from gifting.models import Gift, GiftEvent, GiftState, GiftStatus
from gifting.services import holds, outbox
from gifting.tasks import deliver_gift

ROOT = Path(__file__).resolve().parents[2]
EVERY_STATE = {
    GiftState.DELIVERED,
    GiftState.FAILED,
    GiftState.HELD_FOR_PERIOD,
    GiftState.HELD_FOR_APPROVAL,
    GiftState.HELD_FOR_RECIPIENT,
    GiftState.REJECTED,
}


@pytest.fixture(autouse=True)
def development_mode(settings):
    """Django runs tests with DEBUG off whatever the environment says; the demo is for development."""
    settings.DEBUG = True


@pytest.fixture
def published(monkeypatch) -> list[tuple[str, str]]:
    """A fake broker: (gift id, queue) of every message sent."""
    messages = []

    def publish(gift_id, *, queue="gift-delivery", delay_seconds=0):
        messages.append((str(gift_id), queue))
        return f"message-{len(messages)}"

    monkeypatch.setattr(outbox, "publish_delivery", publish)
    return messages


def run_demo(**options) -> str:
    out = StringIO()
    call_command("demo", wait=0, stdout=out, **options)
    return out.getvalue()


def work_off_queue() -> None:
    """The worker: each queued gift's message, through the real task (eagerly, in this process)."""
    for gift_id in Gift.objects.filter(status=GiftStatus.QUEUED).values_list("id", flat=True):
        deliver_gift.apply(args=[str(gift_id)])


def demo_gift(title: str) -> Gift:
    spec = next(spec for spec in DEMO_GIFTS if spec.title == title)
    return next(g for g in Gift.objects.filter(sender__username=spec.sender) if g.message == spec.message)


def event_types(gift: Gift) -> list[str]:
    return list(GiftEvent.objects.filter(gift=gift).order_by("at", "id").values_list("type", flat=True))


@pytest.mark.django_db
def test_the_demo_makes_a_gift_in_every_state(published, outbox):
    run_demo()
    work_off_queue()

    states = {spec.title: demo_gift(spec.title).state for spec in DEMO_GIFTS}
    assert states == {spec.title: spec.expected for spec in DEMO_GIFTS}
    assert set(states.values()) == EVERY_STATE

    retried = demo_gift("retried, then delivered")
    assert retried.attempts == 2
    assert event_types(retried)[:3] == ["created", "delivery_attempted", "retry_scheduled"]
    assert event_types(retried)[-2:] == ["delivery_attempted", "delivered"]

    failed = demo_gift("failed and dead-lettered")
    assert ["failed", "dead_lettered"] == event_types(failed)[-2:]
    assert (str(failed.id), GIFT_DLQ) in published

    # The 451 was the demo's own mail server; the real (here: in-memory) one got the vouchers and the link.
    subjects = sorted(message.subject for message in outbox)
    assert subjects == [
        "Please confirm your email address to receive a gift",
        "You received a 25.00 EUR voucher",
        "You received a 30.00 EUR voucher",
    ]


@pytest.mark.django_db
def test_the_new_account_is_held_for_approval_by_its_score_and_the_older_one_for_a_period(published):
    run_demo()

    new = demo_gift("held for approval (a new account)")
    assert (new.sender.username, new.amount, new.risk.hold_tier) == (NEW_SENDER, 250, "approval")
    assert {s["rule"]: s["score"] for s in new.risk.signals} == {"new_account": 30, "high_value": 20}
    assert new.risk.score == 50
    older = demo_gift("held for a period")
    assert (older.sender.username, older.risk.hold_tier, older.risk.score) == (SENDER, "delay", 20)


@pytest.mark.django_db
def test_the_reviewer_may_only_review_and_approves_a_held_gift(published):
    run_demo()
    rita = get_user_model().objects.get(username=REVIEWER)

    assert rita.is_staff and not rita.is_superuser
    assert rita.get_all_permissions() == {"gifting.review_gift", "gifting.view_giftreview"}
    assert rita.check_password(DEMO_PASSWORD)

    held = demo_gift("held for approval (a new account)")
    holds.gift_approve(gift_id=held.id, reviewer=rita)
    assert Gift.objects.get(id=held.id).state == GiftState.QUEUED
    # The senders cannot approve their own gifts: that is why the demo has a reviewer.
    alice = get_user_model().objects.get(username=SENDER)
    with pytest.raises(holds.ReviewError):
        holds.gift_approve(gift_id=demo_gift("held for a period").id, reviewer=alice)


@pytest.mark.django_db
def test_a_second_run_creates_nothing_and_says_what_it_found(published, outbox):
    first = run_demo()
    work_off_queue()
    counts = (get_user_model().objects.count(), Gift.objects.count(), GiftEvent.objects.count(), len(published))

    second = run_demo()

    assert (get_user_model().objects.count(), Gift.objects.count(), GiftEvent.objects.count(), len(published)) == (
        counts
    )
    assert first.count("created ") == len(DEMO_GIFTS) + 3
    assert "created " not in second
    assert second.count("found ") == len(DEMO_GIFTS) + 3
    assert get_user_model().objects.get(username=SENDER).check_password(DEMO_PASSWORD)


@pytest.mark.django_db
def test_it_prints_the_logins_and_the_urls_to_open(published):
    output = run_demo()
    assert DEMO_PASSWORD in output
    for text in ("/admin/gifting/giftreview/", "/admin/operations/", "/api/docs/", "/api/v1/gifts/"):
        assert text in output


@pytest.mark.django_db
def test_it_tells_which_gifts_it_made_did_not_end_as_meant(published, settings):
    settings.FRAUD_NEW_ACCOUNT_DAYS = 0  # nora is not new: her 250 is held for a period, not for approval
    made = demo_run(wait_seconds=0, say=print)
    assert "held for approval (a new account)" in [row.spec.title for row in made.astray]
    assert "held for a period" not in [row.spec.title for row in made.astray]

    found = demo_run(wait_seconds=0, say=print)
    assert found.astray == []  # only what a run made is held to its plan: found gifts may have moved on


def test_it_refuses_with_debug_off(settings, db):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DJANGO_DEBUG"):
        run_demo()
    assert not get_user_model().objects.filter(username__in=[SENDER, NEW_SENDER, REVIEWER]).exists()


def test_it_says_to_start_make_run_when_sqs_does_not_answer(settings, db):
    settings.SQS_ENDPOINT_URL = "http://127.0.0.1:9"  # discard: nothing listens
    with pytest.raises(CommandError, match="make run"):
        call_command("demo", wait=1, stdout=StringIO())


# The README's "Try it" block runs line by line on a fresh machine: only what the project installs.
TRY_IT_ALLOWED = {"make", "curl", ".venv/bin/python", "echo", "export"}


def try_it_block() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Try it\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    assert blocks, "the Try it section has no sh block"
    return "\n".join(blocks)


def commands_of(block: str) -> set[str]:
    """The programs a shell block runs: each line's first word, and each $( … )'s."""
    names = set()
    script = block.replace("\\\n", " ")
    for line in script.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        for part in [line, *re.findall(r"\$\(([^()]*)\)", line)]:
            words = shlex.split(part.replace("$(", " ").replace(")", " "), posix=True)
            while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):  # VAR=value assignments
                words = words[1:]
            if words:
                names.add(words[0])
        for piped in re.findall(r"\|\s*([^\s|)]+)", line):
            names.add(piped)
    return names


def test_the_try_it_block_uses_only_what_the_project_installs():
    names = commands_of(try_it_block())
    assert names <= TRY_IT_ALLOWED, f"not installed by the project: {sorted(names - TRY_IT_ALLOWED)}"
    assert "uuidgen" not in try_it_block() and "jq" not in names


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_try_it_block_is_valid_shell():
    subprocess.run(["bash", "-n"], input=try_it_block(), text=True, check=True)


def test_the_try_it_block_python_one_liners_run():
    """Each `.venv/bin/python -c '…'` of the block runs (here with this interpreter) on sample input."""
    snippets = re.findall(r"\.venv/bin/python -c '([^']*)'", try_it_block())
    assert snippets
    sample = '{"token": "t", "id": "00000000-0000-0000-0000-000000000000", "status": "queued"}'
    for code in snippets:
        subprocess.run([sys.executable, "-c", code], input=sample, text=True, check=True, capture_output=True)
