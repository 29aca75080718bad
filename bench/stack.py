"""The real stack on loopback for the benchmarks (bench/accept.py, bench/drain.py).

PostgreSQL (database `bench`, dropped and created again for each run), Redis
(the machine's, db 12), an SQS server (LocalStack by default, as
../shared/LOCALSTACK.md runs it; moto with --sqs moto), the Procfile's web
(gunicorn, 2 workers) and worker (prefork, concurrency 2) under
config.settings_bench, and an SMTP sink in this process. Every process runs
in its own process group (chaos_lib.Process) and is stopped on exit.

Ports: web 8411, LocalStack 4566 (4576 if taken), moto 9361, SMTP a free one; BENCH_DATABASE,
BENCH_REDIS_DB, BENCH_WEB_PORT, BENCH_LOCALSTACK_PORTS and BENCH_MOTO_PORT change them.
"""

import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import cpu
from aiosmtpd.controller import Controller
from chaos_lib import (
    LOOPBACK,
    Process,
    create_database,
    drop_database,
    free_port,
    port_answers,
    wait_for,
)
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project's packages, once Django is set up

# BENCH_* override these so that two benchmarks (or a benchmark and its author's trial run) can share a
# machine; the figures of runs made side by side are worth nothing, but the runs do not break each other.
DATABASE_URL = "postgres://postgres@127.0.0.1:5432/" + os.environ.get("BENCH_DATABASE", "bench")
REDIS_URL = "redis://127.0.0.1:6379/" + os.environ.get("BENCH_REDIS_DB", "12")
WEB_PORT = int(os.environ.get("BENCH_WEB_PORT", "8411"))
LOCALSTACK_PORTS = tuple(int(port) for port in os.environ.get("BENCH_LOCALSTACK_PORTS", "4566,4576").split(","))
MOTO_PORT = int(os.environ.get("BENCH_MOTO_PORT", "9361"))
LOCALSTACK_PYTHON = ROOT / "var" / "localstack-venv" / "bin" / "python"
QUEUE_PREFIX = "bench-"
BENCH_USERNAME = "bench-sender-{}"
# Keys made once per benchmark process, not per Stack: the process sets Django up once, with the first
# stack's environment, and what it writes (sessions, encrypted recipients, blind indexes) must read back
# in the web and worker of every stack it starts after (bench/growth.py starts one per size).
RUN_KEYS = {
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    "BLIND_INDEX_KEY": secrets.token_urlsafe(32),
}
# Environment the stack replaces wholesale, so nothing of the caller's (a test run's, say) leaks in.
REPLACED_PREFIXES = ("AWS_", "SQS_", "EMAIL_", "GIFT_", "FRAUD_", "RATELIMIT_", "DJANGO_", "DATABASE_URL", "REDIS_",
                     "FIELD_ENCRYPTION_KEYS", "BLIND_INDEX_KEY")  # fmt: skip


class CountingSink:
    """An aiosmtpd handler that accepts every message and counts them (no faults: a benchmark)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:
        with self._lock:
            self.count += 1
        return "250 2.0.0 OK"


def say(message: str) -> None:
    """Progress on stderr: the figures alone go to stdout."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# The parts whose CPU Stack.cpu_seconds reads.
CPU_PARTS = ("web", "worker", "sqs", "postgres", "redis", "bench process")


class Stack:
    """The benchmark's processes and database; `with Stack(...) as stack:` starts and stops them."""

    def __init__(
        self,
        *,
        sqs: str = "localstack",
        senders: int = 1,
        worker: bool = True,
        worker_concurrency: int = 2,
        worker_pool: str = "prefork",
    ) -> None:
        if sqs not in ("localstack", "moto"):
            raise ValueError(f"--sqs must be localstack or moto, not {sqs!r}")
        self.sqs_kind = sqs
        self.with_worker = worker
        self.senders = senders
        self.worker_concurrency = worker_concurrency
        self.worker_pool = worker_pool
        self.log_dir = ROOT / "var" / f"bench-{os.getpid()}"
        self.heartbeat_dir = self.log_dir / "heartbeats"
        self.sqs_port = self._sqs_port()
        self.smtp_port = free_port()
        self.base_url = f"http://{LOOPBACK}:{WEB_PORT}"
        self.env = self._environment()
        self.sink = CountingSink()
        self.sqs: Process | None = None
        self.web: Process | None = None
        self.worker: Process | None = None
        self._smtp: Controller | None = None
        self._workers_started = 0
        self.senders_created: list[tuple[int, str]] = []  # (user id, API token) of each sender

    def _sqs_port(self) -> int:
        if self.sqs_kind == "moto":
            ports = (MOTO_PORT,)
        else:
            ports = LOCALSTACK_PORTS
        for port in ports:
            if not port_answers(port):
                return port
        raise RuntimeError(f"the SQS port{'s' if len(ports) > 1 else ''} {ports} already taken")

    def _environment(self) -> dict[str, str]:
        inherited = {name: value for name, value in os.environ.items() if not name.startswith(REPLACED_PREFIXES)}
        return {
            **inherited,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SETTINGS_MODULE": "config.settings_bench",
            # Production's mode (no debug cursor recording every query), with keys made for the run and
            # plain http on loopback; settings_bench sets LOG_LEVEL and plain static file names.
            "DJANGO_DEBUG": "false",
            **RUN_KEYS,
            "DJANGO_SECURE_SSL_REDIRECT": "false",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": DATABASE_URL,
            "REDIS_URL": REDIS_URL,
            "SQS_ENDPOINT_URL": f"http://{LOOPBACK}:{self.sqs_port}",
            "SQS_QUEUE_PREFIX": QUEUE_PREFIX,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "EMAIL_URL": f"smtp://{LOOPBACK}:{self.smtp_port}",
            "SITE_URL": self.base_url,
            "LOG_FORMAT": "text",
            "PROMETHEUS_MULTIPROC_DIR": str(self.log_dir / "metrics"),
            # The worker's first heartbeat (core/heartbeat.py) is written as its consumer starts: readiness.
            "WORKER_HEARTBEAT_DIR": str(self.heartbeat_dir),
        }

    # --- Start and stop ----------------------------------------------------------------------

    def __enter__(self) -> "Stack":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        """Database (fresh, migrated), SQS and its queues, the bench user, web; the worker unless told not to."""
        if port_answers(WEB_PORT):
            raise RuntimeError(f"port {WEB_PORT} is taken: another benchmark (or server) runs there")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        (self.log_dir / "metrics").mkdir(exist_ok=True)
        say(f"logs in {self.log_dir}")
        drop_database(DATABASE_URL)
        create_database(DATABASE_URL)
        self._setup_django()
        from django.core.management import call_command
        from django.db import connection

        from config.urls_bench import FLOOR_TABLE_DDL

        call_command("migrate", interactive=False, verbosity=0)
        with connection.cursor() as cursor:
            cursor.execute(FLOOR_TABLE_DDL)
        from django.core.cache import cache

        cache.clear()  # Redis db 12 is the benchmark's: rate-limit counters of an earlier run go
        self.start_sqs()
        self.senders_created = [create_bench_user(number) for number in range(self.senders)]
        self._smtp = Controller(self.sink, hostname=LOOPBACK, port=self.smtp_port)
        self._smtp.start()
        self.web = self._process("web", self._web_argv())
        if self.with_worker:
            self.start_worker()
        wait_for(self.web_answers, timeout=90, what="web to answer /healthz")
        if self.with_worker:
            self.wait_worker_ready()
        say(f"up: web :{WEB_PORT}, {self.sqs_kind} :{self.sqs_port}, SMTP sink :{self.smtp_port}")

    def _setup_django(self) -> None:
        for name in [name for name in os.environ if name.startswith(REPLACED_PREFIXES)]:
            del os.environ[name]
        os.environ.update(self.env)
        import django

        django.setup()

    def start_sqs(self) -> None:
        if self.sqs_kind == "moto":
            argv = [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(self.sqs_port)]
            env = self.env
        else:
            if not LOCALSTACK_PYTHON.exists():
                raise RuntimeError("LocalStack is not installed: run bin/ensure-localstack (or use --sqs moto)")
            argv = [str(LOCALSTACK_PYTHON), "-m", "localstack.runtime.main"]
            env = localstack_environment(self.sqs_port, Path(tempfile.mkdtemp(dir=self.log_dir)))
        self.sqs = Process("sqs", argv, env=env, log_path=self.log_dir / "sqs.log", cwd=ROOT).start()
        wait_for(lambda: port_answers(self.sqs_port), timeout=60, what=f"{self.sqs_kind} on :{self.sqs_port}")

        from core.sqs import setup_queues, sqs_client

        def queues_created() -> bool:
            try:
                setup_queues(sqs_client())
            except Exception:  # noqa: BLE001 - not ready yet; the deadline reports it
                return False
            return True

        wait_for(queues_created, timeout=60, what="the SQS queues", interval=0.5)

    def _web_argv(self) -> list[str]:
        # The Procfile's web line. No control socket: gunicorn's default path is per user, shared
        # with any other gunicorn on the machine.
        return [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"{LOOPBACK}:{WEB_PORT}",
                "--workers", "2", "--timeout", "30", "--no-control-socket"]  # fmt: skip

    def start_worker(self) -> None:
        """The Procfile's worker line, at --loglevel WARNING like everything else in a benchmark."""
        from core.sqs import CONSUMED_QUEUES

        self._workers_started += 1
        shutil.rmtree(self.heartbeat_dir, ignore_errors=True)
        self.heartbeat_dir.mkdir(parents=True)
        argv = [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel", "WARNING",
                "--queues", ",".join(CONSUMED_QUEUES), "--concurrency", str(self.worker_concurrency),
                "--pool", self.worker_pool, "--without-mingle", "--without-gossip", "--without-heartbeat",
                "--hostname", f"bench-{self._workers_started}@%h"]  # fmt: skip
        self.worker = self._process(f"worker-{self._workers_started}", argv)

    def wait_worker_ready(self, timeout: float = 90) -> None:
        """Back once the worker's consumer has started (its first heartbeat file is there)."""
        worker = self.worker
        wait_for(lambda: any(self.heartbeat_dir.iterdir()) or not worker.running, timeout=timeout,
                 what="the worker's first heartbeat", interval=0.05)  # fmt: skip
        if not worker.running:
            raise RuntimeError(f"the worker exited: {worker.exit_reason()}")

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop(timeout=30)
            self.worker = None

    def _process(self, name: str, argv: list[str]) -> Process:
        return Process(name, argv, env=self.env, log_path=self.log_dir / f"{name}.log", cwd=ROOT).start()

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds so far of each of CPU_PARTS (bench/cpu.py); the SMTP sink runs in the bench process."""
        groups = {name: process.group for name, process in (("web", self.web), ("worker", self.worker),
                  ("sqs", self.sqs)) if process is not None and process.group is not None}  # fmt: skip
        return cpu.cpu_seconds(groups, {"postgres": "postgres", "redis": "redis-server"})

    def web_answers(self) -> bool:
        import requests

        try:
            return requests.get(f"{self.base_url}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        """SIGTERM every process group, SIGKILL what lingers, stop the SMTP sink."""
        processes = [process for process in (self.worker, self.web, self.sqs) if process is not None]
        for process in processes:
            process.stopped_by_us = True
            process.terminate()
        deadline = time.monotonic() + 10  # LocalStack lingers after SIGTERM; nothing here needs a clean exit
        for process in processes:
            process.wait_exit(max(0.0, deadline - time.monotonic()))
            process.finish()
        if self._smtp is not None:
            self._smtp.stop()
            self._smtp = None
        try:
            from django.db import connections

            connections.close_all()  # the database stays, for a look after the run; the next run drops it
        except Exception:  # noqa: BLE001, S110 - Django may not be set up yet
            pass


def localstack_environment(port: int, filesystem_root: Path) -> dict[str, str]:
    """LocalStack, SQS only, on loopback only, empty at each start (../shared/LOCALSTACK.md)."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(filesystem_root)),
        "GATEWAY_SERVER": "hypercorn",
        "GATEWAY_LISTEN": f"{LOOPBACK}:{port}",
        "DNS_ADDRESS": "0",
        "SERVICES": "sqs",
        "EAGER_SERVICE_LOADING": "1",
        "PERSISTENCE": "0",
        "FILESYSTEM_ROOT": str(filesystem_root),
        "SQS_ENDPOINT_STRATEGY": "path",
        "LOCALSTACK_HOST": f"{LOOPBACK}:{port}",
        "DISABLE_EVENTS": "1",
        "SKIP_SSL_CERT_DOWNLOAD": "1",
    }


def create_bench_user(number: int) -> tuple[int, str]:
    """(user id, API token) of a sender; its account is a month old (no new_account signal)."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from accounts.services import api_token_create

    user = get_user_model().objects.create_user(username=BENCH_USERNAME.format(number), password=None)
    get_user_model().objects.filter(pk=user.pk).update(date_joined=timezone.now() - timedelta(days=30))
    return user.pk, api_token_create(user=user).token


def add_stack_arguments(parser) -> None:
    parser.add_argument("--sqs", choices=("localstack", "moto"), default="localstack", help="the SQS server")


if __name__ == "__main__":  # a smoke check: start everything, print where, stop
    with Stack(sqs=sys.argv[1] if len(sys.argv) > 1 else "localstack") as running:
        say(f"{len(running.senders_created)} sender(s) with a token; stopping")
