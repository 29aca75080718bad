"""No secret in any log line: a real flow through the Procfile's web process and a real worker, then a scan.

The web runs as the Procfile says (gunicorn, whatever access log it is given), with tracing
printing every span to its output; the worker likewise. The flow: a failed and a successful
login for an API token, a high-value email gift that waits for its recipient, the link from the
email opened, confirmed, opened again once used, and a made-up link; the voucher delivered. Then
every line either process wrote is searched for the confirmation token, the API token, the
passwords, the recipient's address, the message and the voucher code.
"""

import os
import re
import shlex
import signal
import subprocess
import uuid
from datetime import timedelta
from email.message import Message
from pathlib import Path

import pytest
import requests
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.utils import timezone

from gifting.models import Gift, GiftStatus
from tests.integration.conftest import ROOT, _database_url
from tests.integration.test_delivery import DELIVERY_TIMEOUT, wait_for_status
from tests.integration.test_metrics import free_port
from tests.waiting import wait_until
from vouchers.models import Voucher

pytestmark = pytest.mark.integration

PASSWORD = "correct-horse-battery-staple"
WRONG_PASSWORD = "wrong-horse-battery-staple"
RECIPIENT = "dana.logscan+gifts@example.org"
MESSAGE = "A private note for the log scan"
AMOUNT = "150.00"  # under every hold threshold, at the confirmation threshold the web is given below
LINK = re.compile(r"https?://[^/\s]+/gifts/verify/([^/\s]+)/")
CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
# Tracing on, printing each span (with its attributes) to the process's output within 0.1 s.
TRACING_TO_OUTPUT = {"OTEL_TRACES_EXPORTER": "console", "OTEL_BSP_SCHEDULE_DELAY": "100"}


class ProcfileWeb:
    """The Procfile's `web` command, run by a shell as honcho would, on a free loopback port."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log_path = log_path
        command = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))
        shell_env = {
            **env,
            "PATH": f"{ROOT / '.venv/bin'}{os.pathsep}{env.get('PATH', '')}",
            "WEB_BIND": self.url.removeprefix("http://"),
            "WEB_CONCURRENCY": "1",
        }
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            ["sh", "-c", "exec " + command.removeprefix("web:").strip()],
            cwd=ROOT, env=shell_env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            wait_until(self._answers, timeout=60, message=f"web did not start: {shlex.quote(command)}")
        except BaseException:
            self.stop()
            raise

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"web exited with {self.process.returncode}:\n{self.log()}")
        try:
            return requests.get(f"{self.url}/healthz", timeout=10).status_code == 200
        except requests.RequestException:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM: gunicorn's workers finish, export their last spans and exit."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        self._log.close()


def text_of(message: Message) -> str:
    return "".join(
        part.get_payload(decode=True).decode() for part in message.walk() if part.get_content_maintype() == "text"
    )


@pytest.fixture
def sender(transactional_db, make_user):
    """An established account: a new one would add a risk signal and hold the gift for review.

    Its password is hashed with a hasher the web process knows (the tests' fast one is this process's only).
    """
    user = make_user(username="sam.logscan", date_joined=timezone.now() - timedelta(days=90))
    user.password = PBKDF2PasswordHasher().encode(PASSWORD, PBKDF2PasswordHasher().salt(), iterations=1000)
    user.save(update_fields=["password"])
    return user


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_token_address_message_or_code_in_any_log_line(sqs, smtp_sink, start_worker, sender, tmp_path, log_format):
    environment = {"LOG_FORMAT": log_format, **TRACING_TO_OUTPUT}
    worker = start_worker(**environment)
    web = ProcfileWeb(
        {
            **os.environ,
            **environment,
            "DATABASE_URL": _database_url(),
            "FRAUD_VERIFY_RECIPIENT_THRESHOLD": "100",
        },
        tmp_path / "web.log",
    )
    try:
        # An API token, through the endpoint (whichever token model stands behind it), after a failed try.
        failed = requests.post(
            f"{web.url}/api/v1/auth/token/", json={"username": sender.username, "password": WRONG_PASSWORD}, timeout=30
        )
        assert failed.status_code == 400
        login = requests.post(
            f"{web.url}/api/v1/auth/token/", json={"username": sender.username, "password": PASSWORD}, timeout=30
        )
        assert login.status_code == 200, login.text
        api_token = login.json()["token"]
        authorization = {"Authorization": f"Token {api_token}"}

        created = requests.post(
            f"{web.url}/api/v1/gifts/",
            json={"recipient_email": RECIPIENT, "amount": AMOUNT, "currency": "EUR", "message": MESSAGE},
            headers={**authorization, "Idempotency-Key": str(uuid.uuid4())},
            timeout=30,
        )
        assert created.status_code == 202, created.text
        gift = Gift.objects.get(id=created.json()["id"])

        def confirmation_link() -> re.Match | None:
            return next((LINK.search(text_of(m)) for m in smtp_sink.messages if LINK.search(text_of(m))), None)

        link = wait_until(confirmation_link, timeout=DELIVERY_TIMEOUT, message="no confirmation email")
        link_token, page = link.group(1), f"{web.url}/gifts/verify/{link.group(1)}/"
        wait_for_status(gift, GiftStatus.HELD)  # the worker sends the email before it commits the hold
        browser = requests.Session()
        shown = browser.get(page, timeout=30)
        assert shown.status_code == 200 and "Confirm your address" in shown.text
        confirmed = browser.post(
            page, data={"csrfmiddlewaretoken": CSRF_FIELD.search(shown.text).group(1)}, headers={"Referer": page},
            timeout=30,
        )  # fmt: skip
        assert confirmed.status_code == 200, confirmed.text
        assert browser.get(page, timeout=30).status_code == 404  # used: "Not Found: /gifts/verify/…"
        wrong_token = uuid.uuid4().hex
        assert browser.get(f"{web.url}/gifts/verify/{wrong_token}/", timeout=30).status_code == 404

        wait_for_status(gift, GiftStatus.DELIVERED)
        assert requests.get(f"{web.url}/api/v1/gifts/{gift.id}/", headers=authorization, timeout=30).ok
        code = Voucher.objects.get(gift=gift).code
        assert code in text_of(smtp_sink.messages_for(gift.id)[0])

        # Every span is out: the confirmation's request in the web's output, the delivery in the worker's.
        wait_until(lambda: "gifts/verify/<str:token>/" in web.log(), timeout=30, message="no web spans printed")
        wait_until(lambda: "run/gifting.deliver_gift" in worker.log(), timeout=30, message="no worker spans printed")
    finally:
        web.stop()
    worker.stop()

    logs = {"web": web.log(), "worker": worker.log()}
    secrets = {
        "confirmation token": link_token,
        "made-up confirmation token": wrong_token,
        "API token": api_token,
        "password": PASSWORD,
        "wrong password": WRONG_PASSWORD,
        "recipient address": RECIPIENT,
        "message": MESSAGE,
        "voucher code": code,
        "voucher code without dashes": code.replace("-", ""),
    }
    leaks = [
        f"{what} in the {process}'s log: {line.strip()[:300]}"
        for process, text in logs.items()
        for line in text.splitlines()
        for what, secret in secrets.items()
        if secret in line
    ]
    assert leaks == []
    # The lines that would have carried the token are there, redacted: the scan was not vacuous.
    assert "path=/gifts/verify/[redacted]/" in logs["web"]
    assert "Not Found: /gifts/verify/[redacted]/" in logs["web"]
