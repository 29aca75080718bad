"""Real services for integration tests: moto's SQS server, an aiosmtpd SMTP
server and `celery worker` processes, all on loopback.

The addresses come from the test environment in pyproject.toml
(SQS_ENDPOINT_URL, EMAIL_URL), which the worker processes inherit.
"""

import asyncio
import email
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections import deque
from email.message import Message
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from aiosmtpd.controller import Controller
from django.conf import settings
from django.db import connection
from moto.server import ThreadedMotoServer
from rest_framework.test import APIClient

from core import sqs as sqs_facts
from core.sqs import setup_queues, sqs_client
from gifting.services.publisher import publisher_flush
from tests.factories import api_token
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP command


class SqsServer:
    """moto in server mode on the port of SQS_ENDPOINT_URL; can be stopped and started again, empty."""

    def __init__(self) -> None:
        self.port = urlsplit(settings.SQS_ENDPOINT_URL).port
        self._server: ThreadedMotoServer | None = None

    def start(self, *, create_queues: bool = True) -> None:
        """Start the server; empty, as a restarted SQS is, unless the application's queues are created."""
        _fail_if_port_taken(self.port)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        if create_queues:
            setup_queues(sqs_client())

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def reset(self) -> None:
        """Forget every queue and message, then create the queues again (SQS allows one purge a minute)."""
        requests.post(f"{settings.SQS_ENDPOINT_URL}/moto-api/reset", timeout=5).raise_for_status()
        setup_queues(sqs_client())


def _fail_if_port_taken(port: int) -> None:
    """Fail at once, not hang, when another run (or `make run`) holds a port the tests need."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no owner
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            pytest.fail(f"127.0.0.1:{port} is in use: is another test run going? Tests need it for themselves.")


class SmtpSink:
    """An SMTP server that keeps what it accepts and answers as a test tells it.

    `replies` are answered to the next DATA commands in order (e.g. "451 …");
    `default_reply` answers every DATA after that; `hold()` makes the next DATA
    hang until `release()`, to catch a worker mid-send.
    """

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.replies: deque[str] = deque()
        self.default_reply: str | None = None
        self.data_commands = 0
        self._hold = False
        self.holding = threading.Event()
        self._released = threading.Event()

    def reset(self) -> None:
        self.messages.clear()
        self.replies.clear()
        self.default_reply = None
        self.data_commands = 0
        self._hold = False
        self.holding.clear()
        self._released.clear()

    def hold(self) -> None:
        self._hold = True

    def release(self) -> None:
        self._released.set()

    def messages_for(self, gift_id) -> list[Message]:
        return [m for m in self.messages if str(gift_id) in m.get("Message-ID", "")]

    async def handle_DATA(self, server, session, envelope) -> str:
        self.data_commands += 1
        if self._hold:
            self._hold = False
            self.holding.set()
            while not self._released.is_set():
                await asyncio.sleep(0.05)
            return "451 4.3.0 Aborted by the test"
        if self.replies:
            return self.replies.popleft()
        if self.default_reply:
            return self.default_reply
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 2.0.0 OK"


class WorkerProcess:
    """A real `celery worker` (prefork, one child) in its own process group."""

    def __init__(self, log_path: Path, env: dict[str, str], *, wait_until_ready: bool = True) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO",
             "--queues", f"{sqs_facts.GIFT_QUEUE},{sqs_facts.MAINTENANCE_QUEUE}",
             "--concurrency", "1", "--without-mingle", "--without-gossip", "--without-heartbeat"],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        if wait_until_ready:
            wait_until(self.ready, timeout=60, message=f"worker did not start; see {log_path}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.log()}")
        return " ready." in self.log()

    def kill(self) -> None:
        """SIGKILL the whole worker, parent and child: a machine dying mid-task."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()


def _database_url() -> str:
    """The URL of the test database pytest-django created, for the worker processes."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture(autouse=True)
def background_publisher(settings):
    """Publish as production does: from the publisher thread, once the gift is committed.

    The unit tests publish inline (pyproject.toml), inside their test transaction; integration tests
    commit, so the thread sees their gifts. What it still has pending is sent before the next test.
    """
    settings.GIFT_PUBLISH_IN_BACKGROUND = True
    yield
    publisher_flush()


@pytest.fixture
def client(transactional_db, make_user) -> APIClient:
    """An API client with a sender's token (in place of pytest-django's plain client)."""
    sender = make_user(first_name="Alice", last_name="Sender")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token(sender)}")
    return api


@pytest.fixture(scope="session")
def sqs_server():
    server = SqsServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def smtp_server():
    sink = SmtpSink()
    port = urlsplit(os.environ["EMAIL_URL"]).port
    _fail_if_port_taken(port)
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    yield sink
    controller.stop()


@pytest.fixture
def smtp_sink(smtp_server):
    smtp_server.reset()
    yield smtp_server
    smtp_server.release()


@pytest.fixture
def sqs(sqs_server):
    """The SQS server with empty queues."""
    sqs_server.reset()
    return sqs_server


@pytest.fixture
def start_worker(transactional_db, tmp_path):
    """Start worker processes against the test database; all are stopped after the test."""
    env = {**os.environ, "DATABASE_URL": _database_url(), "PYTHONUNBUFFERED": "1", "GIFT_PUBLISH_IN_BACKGROUND": "true"}
    workers: list[WorkerProcess] = []

    def start(*, wait_until_ready: bool = True, **env_overrides: str) -> WorkerProcess:
        log_path = tmp_path / f"worker-{len(workers) + 1}.log"
        worker = WorkerProcess(log_path, {**env, **env_overrides}, wait_until_ready=wait_until_ready)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def wallet_server(monkeypatch, settings, chain, tokens):
    """The wallet provider stub and the chain's node, in the environment the worker processes inherit.

    Modules use it with `pytest.mark.usefixtures("wallet_server")`, so that it is set up before
    `start_worker`, which copies os.environ when it is set up, not when it starts a worker.
    """
    from tests.eth_chain import token_contracts_env  # py-evm loads slowly: only the modules that use it pay
    from tests.wallet_provider import SECRET, WalletProviderStub

    stub = WalletProviderStub(chain=chain, tokens=tokens)
    monkeypatch.setenv("WALLET_PROVIDER_URL", stub.url)
    monkeypatch.setenv("WALLET_PROVIDER_SECRET", SECRET)
    monkeypatch.setenv("ETH_RPC_URL", chain.rpc_url)
    monkeypatch.setenv("ETH_MIN_CONFIRMATIONS", "1")
    monkeypatch.setenv("WALLET_TOKEN_CONTRACTS", token_contracts_env(tokens))
    settings.WALLET_PROVIDER_URL, settings.WALLET_PROVIDER_SECRET = stub.url, SECRET
    yield stub
    stub.stop()
    chain.ensure_running()  # for the next test, if this one stopped the node and failed
