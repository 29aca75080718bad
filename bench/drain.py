"""Drain: how fast the worker delivers a backlog, against two floors measured in the same run.

    bin/ensure-localstack
    .venv/bin/python bench/drain.py [--gifts 600] [--rounds 1] [--concurrency 2] [--pool prefork]
                                    [--prefetch N] [--sqs moto]

Starts the stack (bench/stack.py) without its worker, then, in each round:

1. gifts: queues --gifts gifts through the service (gifting.services.intake.gift_create,
   which publishes each on commit, as the API does), starts the worker (the Procfile's
   line) and times, from its consumer's start (first heartbeat) until every gift is
   `delivered` to the SMTP sink on loopback;
2. the Celery floor: as many no-op tasks (Celery's built-in `celery.accumulate`, which
   only returns its arguments) on the same queue, transport and worker flags, timed the
   same way until the queue is empty (visible + in flight = 0);
3. the raw SQS floor: as many plain messages, then one boto3 client in a loop of
   ReceiveMessage (10) + DeleteMessageBatch until all are gone.

The worker is stopped between phases, so each backlog is complete before it starts.
Prints msgs/s of each (median over rounds) and the ratios gifts/Celery and gifts/raw, the SQS
calls per message (LocalStack's request log), the CPU each part of the stack spent per message
(bench/cpu.py: worker, SQS server, PostgreSQL, Redis, this process with the SMTP sink) and the rate
the machine's cores would allow at that cost, and, for the gifts, the PostgreSQL sessions and
transactions per gift (pg_stat_database; the transactions include this script's progress polls).
--prefetch sets the worker's prefetch multiplier through WORKER_PREFETCH_MULTIPLIER, for both
the gifts and the Celery floor.
"""

import argparse
import os
import re
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

import cpu
from chaos_lib import wait_for
from stack import CPU_PARTS, ROOT, Stack, add_stack_arguments, say

BATCH = 10  # SQS's maximum per receive and per delete batch
CORES = os.cpu_count() or 1
DRAIN_CPU_PARTS = tuple(part for part in CPU_PARTS if part != "web")  # no web process while draining
POLL = 0.05  # seconds between two looks at progress
NOOP_TASK = "celery.accumulate"  # built into every Celery app: returns its arguments, nothing else
# LocalStack logs each call it answers ("AWS sqs.ReceiveMessage => 200"); moto's log does not name them.
SQS_CALL = re.compile(r"AWS sqs\.(\w+) => ")
# The calls that move messages; the benchmark's own progress polls (GetQueueAttributes) are left out.
MESSAGE_CALLS = ("SendMessage", "SendMessageBatch", "ReceiveMessage", "DeleteMessage", "DeleteMessageBatch",
                 "ChangeMessageVisibility", "ChangeMessageVisibilityBatch")  # fmt: skip


@dataclass(frozen=True)
class Drain:
    what: str
    count: int
    seconds: float
    calls: Counter = field(default_factory=Counter)  # SQS calls while draining (LocalStack only)
    database: Counter = field(default_factory=Counter)  # PostgreSQL sessions and transactions while draining
    cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU milliseconds per message while draining, by part

    @property
    def rate(self) -> float:
        return self.count / self.seconds


class SqsCalls:
    """Counts the message calls the SQS server logged since the last mark (empty with moto)."""

    def __init__(self, stack: Stack) -> None:
        self.path = stack.log_dir / "sqs.log"
        self.offset = self.path.stat().st_size

    def mark(self) -> Counter:
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            text = log.read().decode(errors="replace")
            self.offset = log.tell()
        return Counter(name for name in SQS_CALL.findall(text) if name in MESSAGE_CALLS)


def database_activity() -> Counter:
    """The bench database's sessions and commits so far (a session is counted when it ends)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sessions, xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
        )
        sessions, transactions = cursor.fetchone()
    return Counter(sessions=sessions, transactions=transactions)


def per_message(calls: Counter, count: int) -> str:
    return ", ".join(f"{name} {number / count:.2f}" for name, number in sorted(calls.items())) or "(not counted)"


def queue_gifts(stack: Stack, count: int, round_number: int) -> None:
    from django.contrib.auth import get_user_model

    from gifting.models import Gift, GiftStatus
    from gifting.services.intake import gift_create
    from gifting.services.publisher import publisher_flush

    sender = get_user_model().objects.get(pk=stack.senders_created[0][0])
    started = time.monotonic()
    for number in range(count):
        gift_create(
            sender=sender,
            amount=Decimal(f"{1 + number % 150}.{number % 100:02d}"),
            currency="EUR",
            recipient_email=f"drain-{round_number}-{number % 1000}@example.com",
            message="bench",
        )
    # Every message on SQS before the worker starts: the drain measures taking them, not sending them.
    if not publisher_flush(timeout=600):
        raise RuntimeError("the publisher thread did not send every message within 10 minutes")
    queued = Gift.objects.filter(status=GiftStatus.QUEUED).count()
    if queued != count:
        raise RuntimeError(f"{queued} of {count} gifts queued: a limit or rule held or refused some")
    say(f"{count} gifts queued through the service in {time.monotonic() - started:.1f} s")


def backlog() -> int:
    """Messages on the gift queue, visible, in flight or delayed (as SQS counts them)."""
    from core.sqs import GIFT_QUEUE, queue_depth, sqs_client

    return sum(queue_depth(sqs_client(), GIFT_QUEUE).values())


def run_worker_until(stack: Stack, done, *, what: str, count: int, timeout: float) -> Drain:
    """Start the worker, time from its consumer's start until `done()`, stop it."""
    database_before = database_activity()
    stack.start_worker()
    stack.wait_worker_ready()
    calls = SqsCalls(stack)
    cpu_before = stack.cpu_seconds()
    started = time.monotonic()
    wait_for(done, timeout=timeout, what=what, interval=POLL)
    seconds = time.monotonic() - started
    cpu_spent = cpu.difference(stack.cpu_seconds(), cpu_before)
    drained_calls = calls.mark()
    stack.stop_worker()
    database = database_activity() - database_before  # after the stop: the worker's sessions have ended
    # A long poll outlives the worker that sent it: the SQS server still hands the next messages
    # to the dead connection, where they stay invisible for the whole visibility timeout (seen: a
    # drain taking 60 s). So the next phase starts once any such poll has ended.
    from django.conf import settings

    time.sleep(settings.SQS_WAIT_TIME_SECONDS + 1)
    cpu_ms = {part: 1000 * cpu_spent.get(part, 0.0) / count for part in DRAIN_CPU_PARTS}
    return Drain(what=what, count=count, seconds=seconds, calls=drained_calls, database=database, cpu_ms=cpu_ms)


def drain_gifts(stack: Stack, count: int, round_number: int, timeout: float) -> Drain:
    from gifting.models import Gift, GiftStatus

    delivered_before = Gift.objects.filter(status=GiftStatus.DELIVERED).count()
    emails_before = stack.sink.count
    publishing = SqsCalls(stack)
    queue_gifts(stack, count, round_number)
    say(f"SQS calls per gift while queueing: {per_message(publishing.mark(), count)}")
    result = run_worker_until(
        stack,
        lambda: Gift.objects.filter(status=GiftStatus.DELIVERED).count() - delivered_before >= count,
        what="gifts delivered",
        count=count,
        timeout=timeout,
    )
    if stack.sink.count - emails_before < count:
        raise RuntimeError(f"{stack.sink.count - emails_before} emails for {count} delivered gifts")
    return result


def drain_noop_tasks(stack: Stack, count: int, timeout: float) -> Drain:
    from config.celery import app
    from core.sqs import GIFT_QUEUE

    started = time.monotonic()
    with app.producer_or_acquire() as producer:
        for _ in range(count):
            app.send_task(NOOP_TASK, queue=GIFT_QUEUE, producer=producer)
    wait_for(lambda: backlog() >= count, timeout=60, what="the no-op tasks on the queue", interval=POLL)
    say(f"{count} no-op tasks queued in {time.monotonic() - started:.1f} s")
    return run_worker_until(stack, lambda: backlog() == 0, what="Celery no-op tasks", count=count, timeout=timeout)


def drain_raw(count: int, timeout: float) -> Drain:
    """One boto3 client: receive 10, delete them in one batch, until `count` are gone."""
    from core.sqs import GIFT_QUEUE, queue_url, sqs_client

    client = sqs_client()
    url = queue_url(client, GIFT_QUEUE)
    for first in range(0, count, BATCH):
        entries = [{"Id": str(i), "MessageBody": f"raw-{first + i}"} for i in range(min(BATCH, count - first))]
        client.send_message_batch(QueueUrl=url, Entries=entries)
    received = receives = 0
    started = time.monotonic()
    while received < count:
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"raw SQS drain: {received} of {count} within {timeout:g} s")
        messages = client.receive_message(QueueUrl=url, MaxNumberOfMessages=BATCH, WaitTimeSeconds=1).get(
            "Messages", []
        )
        receives += 1
        if messages:
            client.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )
            received += len(messages)
    return Drain(what="raw boto3", count=count, seconds=time.monotonic() - started,
                 calls=Counter(ReceiveMessage=receives, DeleteMessageBatch=receives))  # fmt: skip


def cpu_report(rounds: list[dict[str, Drain]]) -> list[str]:
    """CPU ms per message by part (medians over rounds), and the rate the machine's cores allow at that cost.

    The bench process's share is the SMTP sink's and this script's progress polls (one query every POLL).
    """
    header = " ".join(f"{part:>13}" for part in (*DRAIN_CPU_PARTS, "total"))
    lines = ["CPU ms per message while draining, by part (median over rounds):", f"  {'':10} {header}   cores allow"]
    for what in ("gifts", "celery"):
        medians = {part: statistics.median(r[what].cpu_ms[part] for r in rounds) for part in DRAIN_CPU_PARTS}
        total = sum(medians.values())
        row = " ".join(f"{medians[part]:13.1f}" for part in DRAIN_CPU_PARTS)
        lines.append(f"  {what:10} {row} {total:13.1f}   {1000 * CORES / total:8.1f}/s")
    return lines


def report(rounds: list[dict[str, Drain]], *, args: argparse.Namespace) -> str:
    rate = {what: statistics.median(r[what].rate for r in rounds) for what in rounds[0]}
    gifts, celery, raw = rate["gifts"], rate["celery"], rate["raw"]
    lines = [
        f"drain of {args.gifts} queued messages, worker --pool {args.pool} --concurrency {args.concurrency}, "
        f"prefetch multiplier {args.prefetch}, {len(rounds)} round(s), SQS: {args.sqs}",
        f"{'gifts delivered to SMTP':28} {gifts:8.1f} msgs/s",
        f"{'Celery no-op tasks':28} {celery:8.1f} msgs/s",
        f"{'raw boto3 receive+delete':28} {raw:8.1f} msgs/s",
        f"ratio gifts/Celery floor: {gifts / celery:.2f}x (target >= 0.8x); gifts/raw SQS: {gifts / raw:.3f}x",
        "SQS calls per message while draining (last round):",
        *(f"  {name:26} {per_message(drain.calls, drain.count)}" for name, drain in rounds[-1].items()),
        "PostgreSQL per gift while draining (last round): "
        + per_message(rounds[-1]["gifts"].database, rounds[-1]["gifts"].count),
        *cpu_report(rounds),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gifts", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--pool", choices=("prefork", "threads", "solo"), default="prefork")
    parser.add_argument("--prefetch", type=int, default=1, help="the worker's prefetch multiplier")
    parser.add_argument("--timeout", type=float, default=600, help="seconds a drain may take")
    add_stack_arguments(parser)
    args = parser.parse_args(argv)
    if args.gifts < 1 or args.rounds < 1 or args.concurrency < 1 or args.prefetch < 1:
        parser.error("--gifts, --rounds, --concurrency and --prefetch must be positive")
    # Inherited by the worker through the stack's environment, and read by this process's settings too.
    os.environ["WORKER_PREFETCH_MULTIPLIER"] = str(args.prefetch)

    rounds: list[dict[str, Drain]] = []
    with Stack(sqs=args.sqs, worker=False, worker_concurrency=args.concurrency, worker_pool=args.pool) as stack:
        from config.celery import app

        if app.conf.worker_prefetch_multiplier != args.prefetch:
            raise RuntimeError("the settings do not read WORKER_PREFETCH_MULTIPLIER (see docs/benchmarks-drain.md)")
        for number in range(args.rounds):
            results = {
                "gifts": drain_gifts(stack, args.gifts, number, args.timeout),
                "celery": drain_noop_tasks(stack, args.gifts, args.timeout),
                "raw": drain_raw(args.gifts, args.timeout),
            }
            rounds.append(results)
            say(
                f"round {number + 1}: "
                + ", ".join(f"{d.what} {d.rate:.1f}/s ({d.count} in {d.seconds:.1f} s)" for d in results.values())
            )
    text = report(rounds, args=args)
    print(text, flush=True)
    (ROOT / "var").mkdir(exist_ok=True)
    (ROOT / "var" / "bench-drain.txt").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
