"""The chaos run (issue 7, point 3): the whole system under faults, then its invariants.

    make chaos                     # the full run: 2,000 gifts from 20 clients
    .venv/bin/python bench/chaos.py --gifts 200 --clients 10 --kills 2 --sqs-restarts 1 --report var/chaos.txt

Starts, on its own free loopback ports, a local SQS server (moto), web
(gunicorn), two workers, beat and an SMTP sink that injects faults (20 % 451,
2 % 550, 1.5 % stalls longer than EMAIL_TIMEOUT), in its own PostgreSQL
database (`chaos_<pid>` on postgres://postgres@127.0.0.1:5432, or the one
CHAOS_DATABASE_URL names; created if missing, then dropped) and with its own
queue prefix. Clients send the gifts, some twice with the same
Idempotency-Key, and retry 409/5xx/connection errors with the same key, as a
careful client would. Meanwhile a random worker is SIGKILLed and restarted
every few seconds (or --kills times, spread over the load), the SQS server is
restarted empty (then an operator runs `setup_queues`), and the database's
connections are killed once. A process that exits on its own is counted and
restarted, as a supervisor would. Once every accepted gift is terminal (or the
deadline passes) the invariants are checked: exit status 1 if any is broken, 2
if the run itself could not be carried out. Everything it started is stopped;
process logs stay in var/chaos-<pid>/ when something broke (or --keep-logs).
"""

import argparse
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

from chaos_lib import (
    KILL_WORKER,
    LOOPBACK,
    TERMINAL_STATUSES,
    Check,
    Client,
    FaultInjector,
    FaultySmtpSink,
    GiftFacts,
    Load,
    Observed,
    Ports,
    SmtpFaults,
    System,
    classify_duplicate_emails,
    create_database,
    drop_database,
    fault_plan,
    free_port,
    gift_requests,
    joined,
    lost_gifts,
    run_checks,
    start_smtp_sink,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project's packages, for the checks (imported once Django is set up)

DEFAULT_SERVER = "postgres://postgres@127.0.0.1:5432"
WORKERS = 2
# Seconds between worker kills on average, unless --kills says how many. A worker takes 6-10 s to boot
# on two busy cores: killed every 10 s (measured: 81 kills in 900 s), the workers spend the run booting
# and the backlog never drains. Every 30 s still kills one mid-delivery again and again.
KILL_EVERY = 30.0
SETTLE = 4.0  # seconds after quiescence for stragglers (a send outliving its transaction)
# Environment the run replaces wholesale, so nothing of the caller's (a test run's, say) leaks in.
REPLACED_PREFIXES = ("AWS_", "SQS_", "EMAIL_", "GIFT_", "FRAUD_", "RATELIMIT_", "DJANGO_", "DATABASE_URL", "REDIS_")

# Short, test-like timings: the run finishes in minutes on two cores.
TIMINGS = {
    "SQS_VISIBILITY_TIMEOUT": "6",
    "SQS_WAIT_TIME_SECONDS": "1",
    "SQS_MAX_RECEIVE_COUNT": "5",
    "EMAIL_TIMEOUT": "2",
    "GIFT_MAX_RETRIES": "3",
    "GIFT_RETRY_BACKOFF_BASE": "1",
    "GIFT_RETRY_BACKOFF_MAX": "2",
    "GIFT_REPUBLISH_AFTER": "4",
    "GIFT_SWEEP_INTERVAL": "2",
}
WIDE_OPEN = "1000000"  # limits and fraud thresholds nobody reaches: no gift is refused or held
OPEN_LIMITS = {
    **{name: f"{WIDE_OPEN}/m" for name in ("RATELIMIT_GIFT_USER", "RATELIMIT_GIFT_IP", "RATELIMIT_TOKEN_IP")},
    **{
        name: WIDE_OPEN
        for name in (
            "FRAUD_DAILY_COUNT",
            "FRAUD_DAILY_VALUE",
            "FRAUD_WEEKLY_COUNT",
            "FRAUD_WEEKLY_VALUE",
            "FRAUD_DELAY_THRESHOLD",
            "FRAUD_APPROVAL_THRESHOLD",
            "FRAUD_VERIFY_RECIPIENT_THRESHOLD",
            "FRAUD_VELOCITY_MIN_COUNT",
            "FRAUD_FANIN_SENDERS",
        )
    },
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gifts", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument(
        "--kills",
        type=int,
        help="workers SIGKILLed (and restarted), spread evenly over the load; default: one every "
        f"~{KILL_EVERY:g} s while the load lasts",
    )
    parser.add_argument("--sqs-restarts", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--report", type=Path, help="also write the report to this file")
    parser.add_argument("--keep-logs", action="store_true", help="keep var/chaos-<pid>/ even when all held")
    parser.add_argument("--quiesce-timeout", type=float, default=600, help="seconds to wait for terminal gifts")
    args = parser.parse_args(argv)
    if args.gifts < 1 or args.clients < 1 or (args.kills or 0) < 0 or args.sqs_restarts < 0:
        parser.error("--gifts and --clients must be positive, --kills and --sqs-restarts not negative")
    return args


# --- The system's processes ----------------------------------------------------------------


def chaos_environment(*, database_url: str, ports: Ports, prefix: str) -> dict[str, str]:
    """The environment of every process of the run (and of this one's Django)."""
    inherited = {name: value for name, value in os.environ.items() if not name.startswith(REPLACED_PREFIXES)}
    return {
        **inherited,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_DEBUG": "true",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": database_url,
        "SQS_ENDPOINT_URL": f"http://{LOOPBACK}:{ports.sqs}",
        "SQS_QUEUE_PREFIX": prefix,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "chaos",
        "AWS_SECRET_ACCESS_KEY": "chaos",
        "EMAIL_URL": f"smtp://{LOOPBACK}:{ports.smtp}",
        "SITE_URL": f"http://{LOOPBACK}:{ports.web}",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "text",
        **TIMINGS,
        **OPEN_LIMITS,
    }


# --- Django: senders, polling, what ended up where ---------------------------------------------
# Imported inside the functions: main() configures Django (this run's database) before calling them.


def create_senders(count: int, run: str) -> list[tuple[int, str]]:
    """(user id, API token) of `count` senders whose accounts are a month old (no new_account signal)."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from accounts.services import api_token_create

    senders = []
    for number in range(count):
        user = get_user_model().objects.create_user(username=f"chaos-{run}-{number}", password=None)
        get_user_model().objects.filter(pk=user.pk).update(date_joined=timezone.now() - timedelta(days=30))
        senders.append((user.pk, api_token_create(user=user).token))
    return senders


def unfinished_gifts(sender_ids: list[int]) -> int | None:
    """Gifts of the run not yet terminal; None while the database does not answer."""
    from django.db import DatabaseError, connection

    from gifting.models import Gift

    try:
        return Gift.objects.filter(sender_id__in=sender_ids).exclude(status__in=TERMINAL_STATUSES).count()
    except DatabaseError:
        connection.close()
        return None


def collect_gifts(sender_ids: list[int]) -> dict[str, GiftFacts]:
    from django.db.models import Count

    from gifting.models import Gift, GiftEvent, GiftEventType
    from vouchers.models import Voucher

    gifts = {
        str(gift_id): GiftFacts(status=status, vouchers=0)
        for gift_id, status in Gift.objects.filter(sender_id__in=sender_ids).values_list("id", "status")
    }
    vouchers = Voucher.objects.filter(gift__sender_id__in=sender_ids).values("gift_id").annotate(count=Count("id"))
    for row in vouchers:
        gifts[str(row["gift_id"])].vouchers = row["count"]
    timed = GiftEvent.objects.filter(
        gift__sender_id__in=sender_ids,
        type__in=[GiftEventType.FAILED, GiftEventType.DEAD_LETTERED],
    ).values_list("gift_id", "type", "at")
    for gift_id, event_type, at in timed:
        if event_type == GiftEventType.FAILED:
            gifts[str(gift_id)].failed_at = at.timestamp()
        else:
            gifts[str(gift_id)].dead_lettered_at = at.timestamp()
    return gifts


def event_counts(sender_ids: list[int]) -> Counter[str]:
    from django.db.models import Count

    from gifting.models import GiftEvent

    rows = GiftEvent.objects.filter(gift__sender_id__in=sender_ids).values("type").annotate(count=Count("id"))
    return Counter({row["type"]: row["count"] for row in rows})


def stored_keys(sender_ids: list[int]) -> dict[tuple[int, str], str | None]:
    from gifting.models import IdempotencyKey

    rows = IdempotencyKey.objects.filter(user_id__in=sender_ids).values_list("user_id", "key", "gift_id")
    return {(user_id, key): str(gift_id) if gift_id else None for user_id, key, gift_id in rows}


def patient_sqs_client():
    """An SQS client for the final checks: moto answers slowly with thousands of messages queued."""
    from botocore.config import Config

    from core.sqs import sqs_client

    return sqs_client(
        config=Config(connect_timeout=5, read_timeout=120, retries={"max_attempts": 5, "mode": "standard"})
    )


def dlq_gift_ids() -> list[str | None]:
    """The gift each message on the DLQ names (None for a message that names none)."""
    from core.sqs import GIFT_DLQ, decode_task_message, queue_url
    from gifting.publishing import gift_id_from_args

    client = patient_sqs_client()
    url = queue_url(client, GIFT_DLQ)
    bodies: list[str] = []
    empty_answers = 0
    for _ in range(10_000):  # bounded: at most 100,000 messages
        messages = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=900).get(
            "Messages", []
        )
        bodies += [message["Body"] for message in messages]
        empty_answers = 0 if messages else empty_answers + 1
        if empty_answers == 3:
            break
    ids: list[str | None] = []
    for body in bodies:
        try:
            gift_id = gift_id_from_args(decode_task_message(body)[1])
        except ValueError:
            gift_id = None
        ids.append(str(gift_id) if gift_id else None)
    return ids


def queue_depths() -> str:
    """Messages left on the application's queues, as SQS counts them."""
    from core.sqs import ALL_QUEUES, queue_depth

    client = patient_sqs_client()
    depths = {queue: queue_depth(client, queue) for queue in ALL_QUEUES}
    return "; ".join(f"{queue} {joined(Counter(depth), ' ')}" for queue, depth in depths.items())


# --- The report ----------------------------------------------------------------------------


def machine() -> str:
    free = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False)  # noqa: S607 - for the report
    return f"nproc {os.cpu_count()}\n{free.stdout.rstrip()}"


def figures(
    *,
    observed: Observed,
    faults: FaultInjector,
    sink: FaultySmtpSink,
    load: Load,
    events: Counter,
    load_seconds: float,
    queues: str,
) -> str:
    emails, smtp_faults = sink.snapshot()
    requests_ = observed.requests
    explained, unexplained = classify_duplicate_emails(observed)
    injected = Counter({**faults.done, **{f"SMTP {kind}": count for kind, count in smtp_faults.items()}})
    rows = {
        "gifts": f"{len(requests_)} requested, {sum(bool(r.gift_id) for r in requests_)} accepted, "
        f"{len(observed.gifts)} in the database; {sum(r.repeated for r in requests_)} sent again with the same key",
        "statuses": joined(Counter(gift.status for gift in observed.gifts.values()), " "),
        "HTTP answers": joined(load.answers()),
        "kills": f"{faults.done[KILL_WORKER]} workers SIGKILLed (and restarted), one per "
        f"{load_seconds / max(faults.done[KILL_WORKER], 1):.1f} s of load",
        "faults injected": f"{joined(injected)}; {faults.backends_terminated} PostgreSQL backends terminated",
        "retries": f"{events['retry_scheduled']} retry_scheduled events",
        "outbox": f"{events['publish_failed']} publish_failed, {events['republished']} republished, "
        f"{events['duplicate_ignored']} duplicate_ignored, {events['dead_lettered']} dead_lettered",
        "emails accepted": f"{len(emails)} ({len({email.message_id for email in emails})} Message-IDs)",
        "DLQ messages": f"{len(observed.dlq_gift_ids)}",
        "SQS at the end": queues,
        "lost": f"{len(lost_gifts(observed))}",
        "duplicates": f"gifts {sum(len(set(r.gift_ids)) > 1 for r in requests_)}, vouchers "
        f"{sum(g.vouchers > 1 for g in observed.gifts.values())}, emails {sum(explained.values())} "
        f"(crash between send and commit: {joined(explained)}) + {len(unexplained)} unexplained",
        "exited on their own": ", ".join(gone.name for gone in observed.unexpected_exits) or "none",
    }
    return "\n".join(f"  {name:<20} {value}" for name, value in rows.items())


def report(*, sections: dict[str, str], checks: list[Check]) -> str:
    lines = [f"{title}\n{body}\n" for title, body in sections.items()]
    lines.append("invariants")
    for check in checks:
        lines.append(f"  [{'ok' if check.ok else 'BROKEN'}] {check.name}")
        lines += [f"           {detail}" for detail in check.details]
    broken = sum(not check.ok for check in checks)
    lines.append(f"\nresult: {f'{broken} invariants BROKEN' if broken else 'all invariants held'}")
    return "\n".join(lines)


# --- The run -----------------------------------------------------------------------------------


class ChaosRun:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_id = str(os.getpid())
        self.log_dir = ROOT / "var" / f"chaos-{self.run_id}"
        self.database_url = os.environ.get("CHAOS_DATABASE_URL") or f"{DEFAULT_SERVER}/chaos_{self.run_id}"
        self.created_database = False
        self.ports = Ports(web=free_port(), sqs=free_port(), smtp=free_port())
        self.env = chaos_environment(database_url=self.database_url, ports=self.ports, prefix=f"chaos{self.run_id}-")
        self.sink = FaultySmtpSink(SmtpFaults(), seed=args.seed)
        self.smtp = None
        self.system: System | None = None
        self.faults: FaultInjector | None = None
        self.load: Load | None = None
        self.times: dict[str, float] = {"start": time.monotonic()}

    def say(self, message: str) -> None:
        """Progress, on stderr: the report alone goes to stdout."""
        print(f"[chaos {time.monotonic() - self.times['start']:6.1f} s] {message}", file=sys.stderr, flush=True)

    def execute(self) -> int:
        self.prepare()
        senders = create_senders(self.args.clients, self.run_id)
        sender_ids = [user_id for user_id, _ in senders]
        self.start_system()
        self.run_load(senders)
        quiescent = self.wait_for_quiescence(sender_ids)
        time.sleep(SETTLE)
        self.faults.stopping.set()
        self.faults.join(timeout=120)
        if self.faults.error is not None:
            raise RuntimeError(f"the fault injector failed: {self.faults.error!r}") from self.faults.error
        observed = self.observe(sender_ids)
        checks = run_checks(observed)
        if not quiescent:
            checks.insert(0, Check("quiescence (every gift terminal) before the deadline", False))
        text = self.report(observed, checks, sender_ids)
        print(text, flush=True)
        if self.args.report:
            self.args.report.parent.mkdir(parents=True, exist_ok=True)
            self.args.report.write_text(text + "\n")
        return 0 if all(check.ok for check in checks) else 1

    def prepare(self) -> None:
        """The log directory, the database (migrated), this process's Django, the SMTP sink."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.created_database = create_database(self.database_url)
        for name in [name for name in os.environ if name.startswith(REPLACED_PREFIXES)]:
            del os.environ[name]
        os.environ.update({**self.env, "LOG_LEVEL": "WARNING"})  # this process's own Django says little
        import django
        from django.core.management import call_command

        django.setup()
        from core.sqs import CONSUMED_QUEUES

        call_command("migrate", interactive=False, verbosity=0)
        self.say(f"database {self.database_url.rpartition('/')[2]} migrated; logs in {self.log_dir}")
        self.system = System(
            root=ROOT, env=self.env, ports=self.ports, log_dir=self.log_dir, consumed_queues=",".join(CONSUMED_QUEUES)
        )
        self.smtp = start_smtp_sink(self.sink, self.ports.smtp)

    def start_system(self) -> None:
        """SQS and its queues first, then web, beat and the workers together; back once they all answer."""
        from core.sqs import setup_queues, sqs_client

        system = self.system
        system.start_sqs()
        setup_queues(sqs_client())
        system.start_web()
        system.start_beat()
        for slot in range(WORKERS):
            system.start_worker(slot)
        wait_for(system.web_answers, timeout=90, what="web to answer /healthz")
        for worker in system.workers:
            wait_for(lambda w=worker: " ready." in w.log_text() or not w.running, timeout=90, what="a worker")
        self.say(f"up: web :{self.ports.web}, SQS :{self.ports.sqs}, SMTP sink :{self.ports.smtp}, {WORKERS} workers")

    def run_load(self, senders: list[tuple[int, str]]) -> None:
        """Every client sends its share of the gifts while the fault injector works through its plan."""
        rng = random.Random(self.args.seed)
        shares = [self.args.gifts // len(senders) + (i < self.args.gifts % len(senders)) for i in range(len(senders))]
        give_up_at = time.monotonic() + 120 + self.args.gifts * 0.5
        base_url = f"http://{LOOPBACK}:{self.ports.web}"
        clients = [
            Client(base_url=base_url, token=token, items=gift_requests(sender=user_id, count=share, rng=rng),
                   give_up_at=give_up_at)
            for (user_id, token), share in zip(senders, shares, strict=True)
        ]  # fmt: skip
        self.load = Load(gifts=self.args.gifts, clients=clients)
        plan = fault_plan(kills=self.args.kills or 0, sqs_restarts=self.args.sqs_restarts)
        self.faults = FaultInjector(
            system=self.system, plan=plan, progress=self.load.progress, seed=self.args.seed,
            db_url=self.database_url, log=self.say, kill_every=None if self.args.kills is not None else KILL_EVERY,
        )  # fmt: skip
        self.times["load"] = time.monotonic()
        recurring = f" and a worker kill every ~{KILL_EVERY:g} s" if self.args.kills is None else ""
        self.say(f"load: {self.args.gifts} gifts from {len(clients)} clients; {len(plan)} faults planned{recurring}")
        self.faults.start()
        self.load.start()
        self.load.wait(timeout=give_up_at - time.monotonic() + 30)
        self.times["load_done"] = time.monotonic()
        self.say(f"load done: {self.load.accepted} accepted")

    def wait_for_quiescence(self, sender_ids: list[int]) -> bool:
        """Until the fault plan is done and every gift of the run is terminal; False at the deadline."""
        if not self.faults.plan_done.wait(timeout=self.args.quiesce_timeout + 60 * self.args.sqs_restarts):
            return False
        self.times["faults_done"] = time.monotonic()
        deadline = time.monotonic() + self.args.quiesce_timeout
        while time.monotonic() < deadline and self.faults.error is None:
            if unfinished_gifts(sender_ids) == 0:
                self.times["quiescent"] = time.monotonic()
                self.say("quiescent: every gift is terminal")
                return True
            time.sleep(0.5)
        self.times["quiescent"] = time.monotonic()
        return False

    def observe(self, sender_ids: list[int]) -> Observed:
        from django.db import connection

        connection.close()  # the PostgreSQL kill may have ended this process's connection too
        emails, _ = self.sink.snapshot()
        return Observed(
            gifts=collect_gifts(sender_ids),
            requests=self.load.records(),
            stored_keys=stored_keys(sender_ids),
            emails=emails,
            dlq_gift_ids=dlq_gift_ids(),
            crashes=self.faults.crashes,
            sqs_outages=self.faults.sqs_outages,
            unexpected_exits=self.faults.exits,
        )

    def report(self, observed: Observed, checks: list[Check], sender_ids: list[int]) -> str:
        times = self.times
        last_disturbance = max(times["load_done"], times.get("faults_done", times["load_done"]))
        timing = (
            f"  setup {times['load'] - times['start']:.1f} s, load {times['load_done'] - times['load']:.1f} s, "
            f"quiescent {times['quiescent'] - last_disturbance:.1f} s after the last request or fault "
            f"({times['quiescent'] - times['load']:.1f} s after the first request), "
            f"total {time.monotonic() - times['start']:.1f} s"
        )
        run = (
            f"  command: {shlex.join([sys.executable, *sys.argv])}\n"
            f"  settings: {' '.join(f'{name}={value}' for name, value in TIMINGS.items())}\n"
            f"  SMTP sink: {SmtpFaults()}\n"
            f"  processes: web (gunicorn, 2 workers), {WORKERS} celery workers (concurrency 2), beat, moto SQS"
        )
        events = event_counts(sender_ids)
        return report(
            sections={
                f"chaos run, seed {self.args.seed}": run,
                "machine": machine(),
                "figures": figures(
                    observed=observed,
                    faults=self.faults,
                    sink=self.sink,
                    load=self.load,
                    events=events,
                    load_seconds=times["load_done"] - times["load"],
                    queues=queue_depths(),
                ),
                "time": timing,
            },
            checks=checks,
        )

    def teardown(self, *, keep_logs: bool) -> None:
        """Stop everything this run started; drop its database (if it made it); keep logs if asked."""
        if self.faults is not None:
            self.faults.stopping.set()
            self.faults.join(timeout=120)
        if self.load is not None:
            self.load.stop()
        if self.system is not None:
            self.system.stop_all()
        if self.smtp is not None:
            self.smtp.stop()
        if "django" in sys.modules:
            from django.db import connections

            connections.close_all()
        if self.created_database:
            drop_database(self.database_url)
        if not keep_logs:
            shutil.rmtree(self.log_dir, ignore_errors=True)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    run = ChaosRun(args)
    status = 2
    try:
        status = run.execute()
    except Exception as exc:  # noqa: BLE001 - the run could not be carried out: say why, keep the logs
        print(f"chaos run failed: {exc!r}", file=sys.stderr, flush=True)
    finally:
        keep_logs = status != 0 or args.keep_logs
        run.teardown(keep_logs=keep_logs)
        if keep_logs:
            print(f"process logs kept in {run.log_dir}", file=sys.stderr, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
