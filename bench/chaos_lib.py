"""The reusable pieces of the chaos run (bench/chaos.py).

Processes in their own process groups and the system made of them (SQS server,
web, beat, workers), a fault-injecting SMTP sink, PostgreSQL administration,
the fault plan and the thread that carries it out, the HTTP clients, and the
invariant checks. Nothing here imports Django: the checks read plain facts
that the script collects. Every server listens on, and every client talks to,
127.0.0.1 only.
"""

import asyncio
import email
import logging
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import requests
from aiosmtpd.controller import Controller
from psycopg import sql

LOOPBACK = "127.0.0.1"
MIN_FAULT_GAP = 2.0  # seconds between two faults
SQS_OUTAGE = 2.0  # seconds the SQS server is down
QUEUELESS = 1.0  # seconds it then runs without queues, until the operator's setup_queues
REPEAT_SHARE = 0.05  # share of requests sent a second time with the same key and body
# Ports of `make run` and of the test suite: a chaos run never takes them.
RESERVED_PORTS = frozenset({2525, 2526, 8000, 9324, 9326})
TERMINAL_STATUSES = frozenset({"delivered", "failed", "rejected"})
MESSAGE_ID = re.compile(r"<gift-([0-9a-f-]{36})@")
# A crash explains a duplicate email when it falls this close after the first copy was accepted:
# the worker had sent the email and died (or lost its database) before committing `delivered`.
CRASH_WINDOW_SECONDS = 3.0
CLOCK_SLACK_SECONDS = 0.5

logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP command


# --- Ports, waiting ------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port nobody listens on, never one of RESERVED_PORTS."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((LOOPBACK, 0))
            port = probe.getsockname()[1]
        if port not in RESERVED_PORTS:
            return port
    raise RuntimeError("no free loopback port")


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll `condition` until it holds; TimeoutError naming `what` once `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(interval)


def port_answers(port: int) -> bool:
    """Whether something accepts TCP connections on the loopback port."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1):
            return True
    except OSError:
        return False


# --- Processes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessExit:
    """A process that ended although nobody stopped it."""

    name: str
    returncode: int
    at: float
    reason: str


class Process:
    """One command in its own process group (so its children go with it), output in a log file.

    A group is signalled only while its leader is not yet reaped: until then the
    group id cannot belong to anybody else, even on a machine whose PIDs wrap.
    Exits are therefore detected without reaping (waitid WNOWAIT), and the group
    is killed before the leader is reaped.
    """

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], log_path: Path, cwd: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.cwd = cwd
        self.stopped_by_us = False
        self._popen: subprocess.Popen | None = None

    def start(self) -> "Process":
        with open(self.log_path, "ab") as log:
            self._popen = subprocess.Popen(  # noqa: S603 - commands the chaos run composes itself
                self.argv, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    @property
    def group(self) -> int | None:
        """The process group id (the leader's pid: each Process starts a session of its own)."""
        return self._popen.pid if self._popen is not None else None

    @property
    def running(self) -> bool:
        """Whether the leader is alive; never reaps it."""
        if self._popen is None or self._popen.returncode is not None:
            return False
        try:
            return os.waitid(os.P_PID, self._popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
        except ChildProcessError:
            return False

    def terminate(self) -> None:
        self._signal_group(signal.SIGTERM)

    def wait_exit(self, timeout: float) -> bool:
        """Wait (without reaping) up to `timeout` seconds for the leader to end; True if it did."""
        deadline = time.monotonic() + timeout
        while self.running:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def finish(self) -> None:
        """SIGKILL whatever is left of the group, then reap the leader."""
        if self._popen is not None and self._popen.returncode is None:
            self._signal_group(signal.SIGKILL)
            self._popen.wait(timeout=15)

    def kill(self) -> None:
        """SIGKILL the whole group: a machine dying mid-task."""
        self.stopped_by_us = True
        self.finish()

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM the group, give it `timeout` seconds, then SIGKILL what is left."""
        self.stopped_by_us = True
        self.terminate()
        self.wait_exit(timeout)
        self.finish()

    def exited_on_its_own(self) -> ProcessExit | None:
        """The exit (once), if the process ended without being stopped or killed."""
        if self._popen is None or self.stopped_by_us or self.running:
            return None
        self.stopped_by_us = True
        self.finish()
        return ProcessExit(name=self.name, returncode=self._popen.returncode, at=time.time(), reason=self.exit_reason())

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def exit_reason(self) -> str:
        """The log's last line naming an error, else its last line."""
        lines = [line.strip() for line in self.log_text().splitlines() if line.strip()][-300:]
        for markers in (("Unrecoverable error", "QueueDoesNotExist"), ("Error", "Exception")):
            for line in reversed(lines):
                if any(marker in line for marker in markers):
                    return line[:300]
        return f"no error logged; last line: {lines[-1][:200]}" if lines else "(empty log)"

    def _signal_group(self, signum: int) -> None:
        if self._popen is None or self._popen.returncode is not None:
            return  # reaped: the group id may be someone else's by now
        try:
            os.killpg(self._popen.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


# --- The fault-injecting SMTP sink ---------------------------------------------------------


@dataclass(frozen=True)
class SmtpFaults:
    """How often the sink refuses: per recipient (permanent), then per message (stall, transient)."""

    permanent: float = 0.02  # 550 5.1.1 to RCPT TO
    stall: float = 0.015  # wait longer than EMAIL_TIMEOUT, then 451 to DATA
    transient: float = 0.20  # 451 4.3.0 to DATA
    stall_seconds: float = 3.0


@dataclass(frozen=True)
class AcceptedEmail:
    message_id: str
    at: float


class FaultySmtpSink:
    """An aiosmtpd handler that keeps what it accepts and refuses, at random, what it is told to."""

    def __init__(self, faults: SmtpFaults, *, seed: int) -> None:
        self.faults = faults
        self.injected: Counter[str] = Counter()
        self.accepted: list[AcceptedEmail] = []
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address: str, rcpt_options: list) -> str:
        if self._random.random() < self.faults.permanent:
            self._count("550 no such user")
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        draw = self._random.random()
        if draw < self.faults.stall:
            self._count("stall, then 451")
            await asyncio.sleep(self.faults.stall_seconds)
            return "451 4.3.0 try later"
        if draw < self.faults.stall + self.faults.transient:
            self._count("451 try later")
            return "451 4.3.0 try later"
        message = email.message_from_bytes(envelope.content)
        with self._lock:
            self.accepted.append(AcceptedEmail(message_id=message.get("Message-ID", ""), at=time.time()))
        return "250 2.0.0 OK"

    def snapshot(self) -> tuple[list[AcceptedEmail], Counter[str]]:
        with self._lock:
            return list(self.accepted), Counter(self.injected)

    def _count(self, kind: str) -> None:
        with self._lock:
            self.injected[kind] += 1


def start_smtp_sink(sink: FaultySmtpSink, port: int) -> Controller:
    """Serve the sink on 127.0.0.1:port in a thread; stop it with `.stop()`."""
    controller = Controller(sink, hostname=LOOPBACK, port=port)
    controller.start()
    return controller


# --- PostgreSQL ----------------------------------------------------------------------------


def split_database_url(url: str) -> tuple[str, str]:
    """(URL of the same server's `postgres` database, the database's name)."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if parts.scheme not in ("postgres", "postgresql", "pgsql") or not name:
        raise ValueError(f"not a PostgreSQL database URL: {url!r}")
    if parts.hostname not in (LOOPBACK, "localhost"):
        raise ValueError(f"the chaos database must be on loopback, not {parts.hostname!r}")
    return urlunsplit(parts._replace(scheme="postgresql", path="/postgres")), name


def create_database(url: str) -> bool:
    """Create the database unless it exists; True when this call created it."""
    admin_url, name = split_database_url(url)
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return True


def drop_database(url: str) -> None:
    admin_url, name = split_database_url(url)
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def terminate_backends(url: str) -> int:
    """pg_terminate_backend every other connection to the database; returns how many went."""
    admin_url, name = split_database_url(url)
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        ).fetchone()
    return int(row[0])


# --- The fault schedule --------------------------------------------------------------------

KILL_WORKER = "worker SIGKILL"
RESTART_SQS = "SQS restarted empty"
KILL_DB_CONNECTIONS = "PostgreSQL connections killed"


@dataclass(frozen=True)
class Fault:
    at_progress: float  # fraction of the gifts accepted when the fault is due
    kind: str


def fault_plan(*, kills: int, sqs_restarts: int, db_kills: int = 1) -> list[Fault]:
    """Faults spread evenly over the load, in the order they are due."""
    faults = [Fault((i + 1) / (kills + 1), KILL_WORKER) for i in range(kills)]
    faults += [Fault((i + 1) / (sqs_restarts + 1) + 0.02, RESTART_SQS) for i in range(sqs_restarts)]
    faults += [Fault((i + 1) / (db_kills + 1) - 0.07, KILL_DB_CONNECTIONS) for i in range(db_kills)]
    return sorted(faults, key=lambda fault: fault.at_progress)


# --- What the run observed, and the invariants -----------------------------------------------


@dataclass
class GiftFacts:
    status: str
    vouchers: int
    failed_at: float | None = None
    dead_lettered_at: float | None = None


@dataclass
class RequestRecord:
    """One gift request (one Idempotency-Key) and every 202 it got, first and repeated."""

    sender: int
    key: str
    repeated: bool
    gift_ids: list[str] = field(default_factory=list)
    unflagged_replays: int = 0  # repeats answered 202 without Idempotent-Replayed: true
    refused: str = ""  # why the request never got its 202

    @property
    def gift_id(self) -> str | None:
        return self.gift_ids[0] if self.gift_ids else None


@dataclass(frozen=True)
class Crash:
    at: float
    kind: str  # KILL_WORKER, KILL_DB_CONNECTIONS or an unexpected exit


@dataclass
class Observed:
    gifts: dict[str, GiftFacts]  # every gift of the run's senders, by id
    requests: list[RequestRecord]
    stored_keys: dict[tuple[int, str], str | None]  # (sender, Idempotency-Key) → gift id, as stored
    emails: list[AcceptedEmail]
    dlq_gift_ids: list[str | None]  # one per DLQ message; None when it names no gift
    crashes: list[Crash]
    sqs_outages: list[tuple[float, float]]  # each SQS restart: (stopped, queues set up again)
    unexpected_exits: list[ProcessExit]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    details: tuple[str, ...] = ()


def accepted_gift_ids(observed: Observed) -> set[str]:
    return {record.gift_id for record in observed.requests if record.gift_id}


def check_every_request_accepted(observed: Observed) -> Check:
    refused = [record for record in observed.requests if record.gift_id is None]
    details = tuple(f"key {record.key} of sender {record.sender}: {record.refused}" for record in refused[:10])
    return Check(f"every request was eventually accepted (202): {len(refused)} not", not refused, details)


def lost_gifts(observed: Observed) -> list[str]:
    """Accepted gifts (and any other gift of the run) that are not terminal, or not in the database at all."""
    return sorted(
        gift_id
        for gift_id in accepted_gift_ids(observed) | set(observed.gifts)
        if gift_id not in observed.gifts or observed.gifts[gift_id].status not in TERMINAL_STATUSES
    )


def check_terminal(observed: Observed) -> Check:
    lost = lost_gifts(observed)
    details = tuple(f"{gift_id}: {_status(observed, gift_id)}" for gift_id in lost[:10])
    if len(lost) > 10:
        details += (f"… and {len(lost) - 10} more: {joined(Counter(_status(observed, gift_id) for gift_id in lost))}",)
    return Check(f"every accepted gift is terminal: {len(lost)} lost", not lost, details)


def check_one_voucher(observed: Observed) -> Check:
    doubled = sorted(gift_id for gift_id, gift in observed.gifts.items() if gift.vouchers > 1)
    unissued = sorted(
        gift_id for gift_id, gift in observed.gifts.items() if gift.status == "delivered" and gift.vouchers != 1
    )
    details = tuple(f"{gift_id}: two vouchers" for gift_id in doubled[:10])
    details += tuple(f"{gift_id}: delivered without a voucher" for gift_id in unissued[:10])
    name = f"one voucher per gift: {len(doubled)} gifts with two, {len(unissued)} delivered without"
    return Check(name, not doubled and not unissued, details)


def check_idempotency(observed: Observed) -> Check:
    """Same user + Idempotency-Key → one gift; every repeat got that gift's id back."""
    split = [record for record in observed.requests if len(set(record.gift_ids)) > 1]
    unflagged = sum(record.unflagged_replays for record in observed.requests)
    extra = sorted(set(observed.gifts) - accepted_gift_ids(observed))
    mismatched = [
        record
        for record in observed.requests
        if record.gift_id and observed.stored_keys.get((record.sender, record.key)) != record.gift_id
    ]
    details = tuple(f"key {record.key}: answered {sorted(set(record.gift_ids))}" for record in split[:10])
    details += tuple(f"gift {gift_id} was created but never returned to its client" for gift_id in extra[:10])
    details += tuple(f"key {record.key}: stored for another gift" for record in mismatched[:10])
    if unflagged:
        details += (f"{unflagged} repeats answered 202 without Idempotent-Replayed: true",)
    duplicates = len(split) + len(extra)
    ok = not (split or extra or mismatched or unflagged)
    return Check(f"one gift per Idempotency-Key: {duplicates} duplicate gifts", ok, details)


def email_copies(observed: Observed) -> dict[str, list[float]]:
    """When the sink accepted each copy of each gift's email, by gift id ("" for a message naming no gift)."""
    copies: dict[str, list[float]] = {}
    for accepted in observed.emails:
        match = MESSAGE_ID.search(accepted.message_id)
        copies.setdefault(match.group(1) if match else "", []).append(accepted.at)
    return {gift_id: sorted(times) for gift_id, times in copies.items()}


def crash_after(observed: Observed, at: float) -> Crash | None:
    """The crash that falls just after an email was accepted, if any."""
    for crash in observed.crashes:
        if at - CLOCK_SLACK_SECONDS <= crash.at <= at + CRASH_WINDOW_SECONDS:
            return crash
    return None


def classify_duplicate_emails(observed: Observed) -> tuple[Counter[str], list[str]]:
    """Extra copies of a gift's email by the crash that explains them; and the unexplained ones."""
    explained: Counter[str] = Counter()
    unexplained: list[str] = []
    for gift_id, times in email_copies(observed).items():
        for earlier in times[:-1]:
            crash = crash_after(observed, earlier)
            if crash is None:
                unexplained.append(gift_id)
            else:
                explained[crash.kind] += 1
    return explained, unexplained


def check_emails(observed: Observed) -> Check:
    """Emails accepted for exactly the delivered gifts; extra copies only with the gift's Message-ID, after a crash.

    An email accepted for a gift that is not delivered breaks the invariant even when a crash explains it
    (sent, crashed before the commit, then failed for good on a later attempt): the details say so.
    """
    copies = email_copies(observed)
    delivered = {gift_id for gift_id, gift in observed.gifts.items() if gift.status == "delivered"}
    stray = copies.pop("", [])
    missing = sorted(delivered - set(copies))
    undelivered = sorted(set(copies) - delivered)
    explained, unexplained = classify_duplicate_emails(observed)
    details = tuple(f"{gift_id}: delivered, no email accepted" for gift_id in missing[:10])
    details += tuple(
        f"{gift_id}: email accepted for a gift that is {_status(observed, gift_id)}{_crash_note(observed, gift_id)}"
        for gift_id in undelivered[:10]
    )
    details += tuple(f"{gift_id}: duplicate email with no crash to explain it" for gift_id in unexplained[:10])
    details += tuple(f"{count} duplicate emails (same Message-ID) after: {kind}" for kind, count in explained.items())
    if stray:
        details += (f"{len(stray)} accepted emails name no gift in their Message-ID",)
    ok = not (missing or stray or unexplained or undelivered)
    name = (
        f"emails accepted = delivered gifts: {len(copies)} gifts emailed, {len(delivered)} delivered, "
        f"{sum(explained.values())} duplicates explained by a crash, {len(unexplained)} unexplained"
    )
    return Check(name, ok, details)


def check_dead_letters(observed: Observed) -> Check:
    """Every failed gift has its DLQ message and every DLQ message its failed gift."""
    on_dlq = Counter(observed.dlq_gift_ids)
    failed = {gift_id for gift_id, gift in observed.gifts.items() if gift.status == "failed"}
    dropped = sorted(gift_id for gift_id in failed - set(on_dlq) if _dropped_by_sqs_restart(observed, gift_id))
    missing = sorted(failed - set(on_dlq) - set(dropped))
    orphans = sorted(str(gift_id) for gift_id in on_dlq if gift_id not in failed)
    doubled = sorted(gift_id for gift_id, count in on_dlq.items() if gift_id in failed and count > 1)
    details = tuple(f"{gift_id}: failed, no DLQ message ({_dlq_note(observed, gift_id)})" for gift_id in missing[:10])
    details += tuple(
        f"{gift_id}: DLQ message for a gift that is {_status(observed, gift_id)}" for gift_id in orphans[:10]
    )
    details += tuple(f"{gift_id}: {on_dlq[gift_id]} DLQ messages" for gift_id in doubled[:10])
    if dropped:
        details += (f"{len(dropped)} failed gifts lost their DLQ message to an SQS restart (explained)",)
    name = (
        f"failed gifts ↔ DLQ messages: {len(failed)} failed, {sum(on_dlq.values())} DLQ messages, "
        f"{len(dropped)} dropped by an SQS restart, {len(missing)} missing, {len(orphans)} without a failed gift"
    )
    return Check(name, not (missing or orphans or doubled), details)


def check_processes(observed: Observed) -> Check:
    exits = observed.unexpected_exits
    details = tuple(f"{gone.name} exited with {gone.returncode}: {gone.reason}" for gone in exits)
    return Check(f"processes that exited on their own: {len(exits)}", not exits, details)


CHECKS: tuple[Callable[[Observed], Check], ...] = (
    check_every_request_accepted,
    check_terminal,
    check_one_voucher,
    check_idempotency,
    check_emails,
    check_dead_letters,
    check_processes,
)


def run_checks(observed: Observed) -> list[Check]:
    return [check(observed) for check in CHECKS]


def joined(counts: Counter, separator: str = ": ") -> str:
    """`a: 1, b: 2`, sorted by name; `none` when empty."""
    return ", ".join(f"{name}{separator}{count}" for name, count in sorted(counts.items())) or "none"


def _status(observed: Observed, gift_id: str) -> str:
    gift = observed.gifts.get(gift_id)
    return gift.status if gift else "not in the database"


def _explaining_crash(observed: Observed, gift_id: str) -> Crash | None:
    times = email_copies(observed).get(gift_id, [])
    return next((crash for at in times if (crash := crash_after(observed, at))), None)


def _crash_note(observed: Observed, gift_id: str) -> str:
    crash = _explaining_crash(observed, gift_id)
    return f" (sent, then {crash.kind} before the commit)" if crash else ""


def _dropped_by_sqs_restart(observed: Observed, gift_id: str) -> bool:
    dead_lettered_at = observed.gifts[gift_id].dead_lettered_at
    return dead_lettered_at is not None and any(stop >= dead_lettered_at for stop, _ in observed.sqs_outages)


def _dlq_note(observed: Observed, gift_id: str) -> str:
    gift = observed.gifts[gift_id]
    if gift.dead_lettered_at is not None:
        return "dead_lettered event recorded, message not on the DLQ"
    if gift.failed_at is not None and any(stop <= gift.failed_at <= up for stop, up in observed.sqs_outages):
        return "failed while SQS was down: the failure handler's DLQ publish failed and nothing publishes it later"
    if gift.failed_at is not None and (crash := crash_after(observed, gift.failed_at)):
        return f"{crash.kind} between marking it failed and publishing its dead letter; nothing publishes it later"
    return "no dead_lettered event: the DLQ publish never happened"


# --- The system's processes ----------------------------------------------------------------


@dataclass(frozen=True)
class Ports:
    web: int
    sqs: int
    smtp: int


class System:
    """The run's processes: the SQS server, web, beat and the workers; and the operator's commands."""

    def __init__(self, *, root: Path, env: dict[str, str], ports: Ports, log_dir: Path, consumed_queues: str) -> None:
        self.root = root
        self.env = env
        self.ports = ports
        self.log_dir = log_dir
        self.consumed_queues = consumed_queues
        self.sqs: Process | None = None
        self.web: Process | None = None
        self.beat: Process | None = None
        self.workers: list[Process] = []
        self._started: Counter[str] = Counter()

    def processes(self) -> list[Process]:
        return [process for process in (self.sqs, self.web, self.beat, *self.workers) if process is not None]

    def _process(self, name: str, argv: list[str]) -> Process:
        self._started[name] += 1
        log_path = self.log_dir / f"{name}.{self._started[name]}.log"
        return Process(name, argv, env=self.env, log_path=log_path, cwd=self.root).start()

    def manage(self, *command: str, timeout: float) -> None:
        """Run a manage.py command as an operator would; its output goes to the log directory."""
        with open(self.log_dir / f"manage-{command[0]}.log", "ab") as log:
            subprocess.run(  # noqa: S603 - our own interpreter and manage.py, fixed arguments
                [sys.executable, "manage.py", *command],
                cwd=self.root,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=True,
            )

    def start_sqs(self) -> None:
        """A fresh, empty SQS server on the run's port."""
        argv = [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(self.ports.sqs)]
        self.sqs = self._process("sqs", argv)
        wait_for(lambda: port_answers(self.ports.sqs), timeout=30, what="the SQS server")

    def stop_sqs(self) -> None:
        if self.sqs is not None:
            self.sqs.stop()
        wait_for(lambda: not port_answers(self.ports.sqs), timeout=15, what="the SQS server to stop")

    def start_web(self) -> None:
        bind = f"{LOOPBACK}:{self.ports.web}"
        # No control socket: gunicorn's default path is per user, shared with any other gunicorn on the machine.
        argv = [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", bind, "--workers", "2", "--timeout", "30",
                "--no-control-socket"]  # fmt: skip
        self.web = self._process("web", argv)

    def web_answers(self) -> bool:
        try:
            return requests.get(f"http://{LOOPBACK}:{self.ports.web}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def start_beat(self) -> None:
        schedule = str(self.log_dir / "celerybeat-schedule")
        self.beat = self._process("beat", self._celery("beat", "--schedule", schedule))

    def start_worker(self, slot: int) -> Process:
        """Start (or restart) the worker in `slot`, as the Procfile's worker line does."""
        worker = self._process(
            f"worker-{slot + 1}",
            self._celery(
                "worker",
                "--queues",
                self.consumed_queues,
                "--concurrency",
                "2",
                "--without-mingle",
                "--without-gossip",
                "--without-heartbeat",
                "--hostname",
                f"chaos-{slot + 1}.{self._started[f'worker-{slot + 1}'] + 1}@%h",
            ),
        )
        if slot < len(self.workers):
            self.workers[slot] = worker
        else:
            self.workers.append(worker)
        return worker

    def restart(self, gone: Process) -> None:
        """Replace a process that ended (an SQS server comes back empty, so its queues are set up again)."""
        if gone is self.sqs:
            self.start_sqs()
            self.manage("setup_queues", "--wait", "15", timeout=60)
        elif gone is self.web:
            self.start_web()
            wait_for(self.web_answers, timeout=60, what="web to answer /healthz")
        elif gone is self.beat:
            self.start_beat()
        else:
            self.start_worker(self.workers.index(gone))

    def _celery(self, *command: str) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", "config", *command, "--loglevel", "INFO"]

    def stop_all(self, timeout: float = 20) -> None:
        """SIGTERM every process group at once, give them `timeout` seconds together, then SIGKILL the rest."""
        processes = self.processes()
        for process in processes:
            process.stopped_by_us = True
            process.terminate()
        deadline = time.monotonic() + timeout
        for process in processes:
            process.wait_exit(max(0.0, deadline - time.monotonic()))
            process.finish()


# --- Faults ----------------------------------------------------------------------------------


class FaultInjector(threading.Thread):
    """Carries out the fault plan as the load progresses, and supervises the processes meanwhile.

    With `kill_every`, a random worker is also SIGKILLed every `kill_every` seconds on average
    (jittered ±40 %) until the load is done.
    """

    def __init__(
        self,
        *,
        system: System,
        plan: list[Fault],
        progress: Callable[[], float],
        seed: int,
        db_url: str,
        log: Callable[[str], None],
        kill_every: float | None = None,
    ) -> None:
        super().__init__(name="faults", daemon=True)
        self.system = system
        self.log = log
        self.kill_every = kill_every
        self.pending = deque(plan)
        self.progress = progress
        self.db_url = db_url
        self.random = random.Random(seed)
        self.stopping = threading.Event()
        self.plan_done = threading.Event()
        self.done: Counter[str] = Counter()
        self.crashes: list[Crash] = []
        self.sqs_outages: list[tuple[float, float]] = []  # (stopped, queues set up again)
        self.exits: list[ProcessExit] = []
        self.backends_terminated = 0
        self.error: BaseException | None = None
        self._last_fault = time.monotonic()
        self._next_kill = self._kill_gap()

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                self.supervise()
                if self.pending and self._due(self.pending[0]):
                    self.perform(self.pending.popleft())
                elif self._recurring_kill_due():
                    self.perform(Fault(self.progress(), KILL_WORKER))
                    self._next_kill = self._kill_gap()
                if not self.pending and (self.kill_every is None or self.progress() >= 1):
                    self.plan_done.set()
                self.stopping.wait(0.2)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc
            self.plan_done.set()

    def _due(self, fault: Fault) -> bool:
        return self.progress() >= fault.at_progress and time.monotonic() - self._last_fault >= MIN_FAULT_GAP

    def _recurring_kill_due(self) -> bool:
        return (
            self.kill_every is not None
            and self.progress() < 1
            and time.monotonic() - self._last_fault >= self._next_kill
        )

    def _kill_gap(self) -> float:
        return max(MIN_FAULT_GAP, self.random.uniform(0.6, 1.4) * (self.kill_every or 0))

    def perform(self, fault: Fault) -> None:
        if fault.kind == KILL_WORKER:
            self.kill_worker()
        elif fault.kind == RESTART_SQS:
            self.restart_sqs()
        elif fault.kind == KILL_DB_CONNECTIONS:
            self.backends_terminated += terminate_backends(self.db_url)
            self.crashes.append(Crash(at=time.time(), kind=KILL_DB_CONNECTIONS))
        self.done[fault.kind] += 1
        self._last_fault = time.monotonic()
        self.log(f"fault: {fault.kind} (progress {self.progress():.0%})")

    def kill_worker(self) -> None:
        slot = self.random.randrange(len(self.system.workers))
        self.system.workers[slot].kill()
        self.crashes.append(Crash(at=time.time(), kind=KILL_WORKER))
        self.stopping.wait(0.5)
        self.system.start_worker(slot)

    def restart_sqs(self) -> None:
        """Stop the SQS server, start it again empty, then create the queues as an operator would."""
        stopped = time.time()
        self.system.stop_sqs()
        self.stopping.wait(SQS_OUTAGE)
        self.system.start_sqs()
        self.stopping.wait(QUEUELESS)
        self.system.manage("setup_queues", "--wait", "15", timeout=60)
        self.sqs_outages.append((stopped, time.time()))

    def supervise(self) -> None:
        """Count each process that ended on its own, then restart it as a supervisor would."""
        for process in self.system.processes():
            gone = process.exited_on_its_own()
            if gone is None:
                continue
            self.exits.append(gone)
            self.crashes.append(Crash(at=gone.at, kind=f"{gone.name} exited on its own"))
            self.log(f"{gone.name} exited on its own ({gone.returncode}): {gone.reason}; restarting it")
            self.system.restart(process)


# --- Clients ---------------------------------------------------------------------------------

RETRYABLE = frozenset({409, 429, 500, 502, 503, 504})


@dataclass
class WorkItem:
    record: RequestRecord
    body: dict
    replay: bool = False
    not_before: float = 0.0
    tries: int = 0


class Client(threading.Thread):
    """One sender posting its gifts in turn; retries with the same key, repeats a few on purpose."""

    def __init__(self, *, base_url: str, token: str, items: list[WorkItem], give_up_at: float) -> None:
        super().__init__(daemon=True)
        self.url = f"{base_url}/api/v1/gifts/"
        self.token = token
        self.pending = deque(items)
        self.give_up_at = give_up_at
        self.records = [item.record for item in items]
        self.answers: Counter[str] = Counter()
        self.stopping = threading.Event()

    def run(self) -> None:
        session = requests.Session()
        while self.pending and not self.stopping.is_set():
            item = self.pending.popleft()
            if time.monotonic() > self.give_up_at:
                item.record.refused = f"the client gave up at its deadline; last answer: {item.record.refused or '-'}"
                continue
            if item.not_before > time.monotonic():
                self.pending.append(item)
                self.stopping.wait(0.02)
                continue
            self.send(session, item)

    def send(self, session: requests.Session, item: WorkItem) -> None:
        headers = {"Authorization": f"Token {self.token}", "Idempotency-Key": item.record.key}
        try:
            response = session.post(self.url, json=item.body, headers=headers, timeout=20)
        except requests.RequestException as exc:
            self.answers[type(exc).__name__] += 1
            self.retry_later(item, type(exc).__name__)
            return
        replayed = response.headers.get("Idempotent-Replayed") == "true"
        self.answers[f"{response.status_code}{' replayed' if replayed else ''}"] += 1
        if response.status_code in RETRYABLE:
            self.retry_later(item, f"HTTP {response.status_code}")
        elif response.status_code == 202:
            self.on_accepted(item, response.json()["id"], replayed=replayed)
        elif item.replay:
            item.record.gift_ids.append(f"HTTP {response.status_code}")
        else:
            item.record.refused = f"HTTP {response.status_code}: {response.text[:120]}"

    def on_accepted(self, item: WorkItem, gift_id: str, *, replayed: bool) -> None:
        item.record.gift_ids.append(gift_id)
        if item.replay:
            item.record.unflagged_replays += not replayed
        elif item.record.repeated:
            repeat = WorkItem(record=item.record, body=item.body, replay=True)
            # Half are repeated at once, half at the end of this client's run.
            (self.pending.appendleft if int(item.record.key[-1], 16) % 2 else self.pending.append)(repeat)

    def retry_later(self, item: WorkItem, why: str) -> None:
        item.tries += 1
        item.record.refused = why
        item.not_before = time.monotonic() + min(0.2 * 2**item.tries, 2.0)
        self.pending.append(item)


def gift_requests(*, sender: int, count: int, rng: random.Random) -> list[WorkItem]:
    items = []
    for number in range(count):
        body = {
            "recipient_email": f"friend-{sender}-{number}@example.com",
            "amount": f"{rng.randint(1, 150)}.{rng.randint(0, 99):02d}",
            "currency": rng.choice(["EUR", "USD", "GBP"]),
            "message": "Happy chaos day!",
        }
        key = str(uuid.UUID(int=rng.getrandbits(128)))
        record = RequestRecord(sender=sender, key=key, repeated=rng.random() < REPEAT_SHARE)
        items.append(WorkItem(record=record, body=body))
    return items


class Load:
    """The clients, and how far along they are."""

    def __init__(self, *, gifts: int, clients: list[Client]) -> None:
        self.gifts = gifts
        self.clients = clients
        self.done = threading.Event()

    def start(self) -> None:
        for client in self.clients:
            client.start()

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for client in self.clients:
            client.join(timeout=max(0.0, deadline - time.monotonic()))
        self.done.set()

    def stop(self) -> None:
        for client in self.clients:
            client.stopping.set()

    @property
    def accepted(self) -> int:
        return sum(bool(record.gift_ids) for client in self.clients for record in client.records)

    def progress(self) -> float:
        """The share of gifts accepted so far; 1 once the clients are done."""
        return 1.0 if self.done.is_set() else self.accepted / self.gifts

    def records(self) -> list[RequestRecord]:
        return [record for client in self.clients for record in client.records]

    def answers(self) -> Counter[str]:
        return sum((client.answers for client in self.clients), Counter())
