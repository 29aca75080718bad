"""The kept SMTP connection (core/emails.py), against a real aiosmtpd server on loopback.

One connection carries email after email; a connection the server has closed is replaced
without an error; a failed send gives its connection up; and failures are still classified
transient or permanent as they were with one connection per email.
"""

import socket
import threading
from collections import deque

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from core import emails
from gifting.channels import send_voucher_email
from gifting.errors import PermanentDeliveryError, TransientDeliveryError
from tests.waiting import wait_until

IDLE_TIMEOUT = 1.0  # seconds the server keeps an idle connection in the test that lets it drop one


class Server:
    """What the server saw: the connection (numbered) each message came on, and the replies to give."""

    def __init__(self) -> None:
        self.connections: list[int] = []  # the number of the connection each accepted message came on
        self.replies: deque[str] = deque()  # answered to the next DATA commands, in order
        self.opened = 0
        self.closed = 0  # connections ended, by either side
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.replies:
            return self.replies.popleft()
        self.connections.append(server.number)
        return "250 2.0.0 OK"

    def connection_made(self) -> int:
        with self._lock:
            self.opened += 1
            return self.opened

    def connection_lost(self) -> None:
        with self._lock:
            self.closed += 1


class WatchedController(Controller):
    """aiosmtpd's controller, telling the handler when a connection ends."""

    def __init__(self, handler: Server, **smtp_kwargs) -> None:
        super().__init__(handler, hostname="127.0.0.1", port=_free_port(), **smtp_kwargs)

    def factory(self) -> SMTP:
        handler = self.handler

        class WatchedSMTP(SMTP):
            number = handler.connection_made()

            def connection_lost(self, exc) -> None:
                super().connection_lost(exc)
                handler.connection_lost()

        return WatchedSMTP(handler, **self.SMTP_kwargs)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(settings, **smtp_kwargs) -> tuple[Server, Controller]:
    handler = Server()
    controller = WatchedController(handler, **smtp_kwargs)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    return handler, controller


@pytest.fixture(autouse=True)
def no_kept_connection():
    emails.connection_close()
    yield
    emails.connection_close()


@pytest.fixture
def smtp(settings):
    handler, controller = _start(settings)
    yield handler
    controller.stop()


@pytest.fixture
def impatient_smtp(settings):
    """A server that closes a connection idle for IDLE_TIMEOUT seconds, as real ones do after minutes."""
    handler, controller = _start(settings, timeout=IDLE_TIMEOUT)
    yield handler
    controller.stop()


def test_emails_in_a_row_share_one_connection(smtp, gift, voucher):
    for _ in range(3):
        send_voucher_email(gift=gift, voucher=voucher)
    first, second, third = smtp.connections
    assert first == second == third


def test_a_connection_the_server_closed_is_replaced_without_an_error(impatient_smtp, gift, voucher):
    send_voucher_email(gift=gift, voucher=voucher)
    wait_until(
        lambda: impatient_smtp.closed == impatient_smtp.opened,  # ours, and aiosmtpd's own start-up probe
        timeout=10,
        message="the server never dropped the idle connection",
    )
    send_voucher_email(gift=gift, voucher=voucher)
    first, second = impatient_smtp.connections
    assert first != second


@pytest.mark.parametrize(
    ("reply", "error"),
    [("451 4.3.0 Try again later", TransientDeliveryError), ("550 5.1.1 No such user", PermanentDeliveryError)],
)
def test_a_refusal_on_a_kept_connection_is_classified_and_gives_the_connection_up(smtp, gift, voucher, reply, error):
    send_voucher_email(gift=gift, voucher=voucher)
    smtp.replies.append(reply)
    with pytest.raises(error):
        send_voucher_email(gift=gift, voucher=voucher)
    send_voucher_email(gift=gift, voucher=voucher)
    before, after = smtp.connections
    assert before != after  # a new connection: the failed conversation's state is unknown


def test_a_server_gone_for_good_is_a_transient_error(settings, gift, voucher):
    _, controller = _start(settings)
    send_voucher_email(gift=gift, voucher=voucher)
    controller.stop()
    settings.EMAIL_TIMEOUT = 2  # whether the kept socket is reset, refused or left hanging, within this
    with pytest.raises(TransientDeliveryError):
        send_voucher_email(gift=gift, voucher=voucher)


def test_changed_email_settings_open_a_new_connection(settings, smtp, gift, voucher):
    send_voucher_email(gift=gift, voucher=voucher)
    other, controller = _start(settings)
    try:
        send_voucher_email(gift=gift, voucher=voucher)
    finally:
        controller.stop()
    assert len(smtp.connections) == len(other.connections) == 1
