"""Delivery channels: which SMTP failures are worth retrying, and which are not."""

import smtplib
import socket

import pytest

from gifting.channels import classify_smtp_error, deliver_voucher, message_id_for, send_voucher_email
from gifting.errors import PermanentDeliveryError, TransientDeliveryError


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (smtplib.SMTPResponseException(451, b"try again later"), TransientDeliveryError),
        (smtplib.SMTPResponseException(421, b"closing"), TransientDeliveryError),
        (smtplib.SMTPResponseException(550, b"no such user"), PermanentDeliveryError),
        (smtplib.SMTPResponseException(554, b"rejected"), PermanentDeliveryError),
        (smtplib.SMTPSenderRefused(553, b"bad sender", "gifts@localhost"), PermanentDeliveryError),
        (smtplib.SMTPDataError(452, b"out of storage"), TransientDeliveryError),
        (smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"no")}), PermanentDeliveryError),
        (
            smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"no"), "b@example.com": (553, b"no")}),
            PermanentDeliveryError,
        ),
        (
            smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"no"), "b@example.com": (450, b"busy")}),
            TransientDeliveryError,
        ),
        (smtplib.SMTPRecipientsRefused({"a@example.com": (451, b"greylisted")}), TransientDeliveryError),
        (smtplib.SMTPServerDisconnected("gone"), TransientDeliveryError),
        (ConnectionRefusedError(111, "Connection refused"), TransientDeliveryError),
        (ConnectionResetError(104, "reset"), TransientDeliveryError),
        (socket.timeout("timed out"), TransientDeliveryError),  # noqa: UP041 - the name smtplib users know
        (socket.gaierror(-2, "Name or service not known"), TransientDeliveryError),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else value.__name__,
)
def test_classify_smtp_error(exc, expected):
    error = classify_smtp_error(exc)
    assert type(error) is expected
    assert error.reason  # coarse and safe to show the sender


def test_classify_refuses_what_is_not_an_smtp_error():
    with pytest.raises(TypeError):
        classify_smtp_error(ValueError("not mail"))


def test_reasons_do_not_leak_the_server_reply():
    error = classify_smtp_error(smtplib.SMTPResponseException(550, b"5.1.1 <bob@corp.example> unknown"))
    assert "bob" not in error.reason
    assert "5.1.1" not in error.reason


@pytest.fixture
def closed_smtp_port(settings):
    """Point the SMTP backend at a loopback port that is bound but not listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as reserved:
        reserved.bind(("127.0.0.1", 0))
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = reserved.getsockname()[1]
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.EMAIL_TIMEOUT = 2
        yield settings.EMAIL_PORT


def test_a_refused_connection_is_a_transient_delivery_error(closed_smtp_port, gift, voucher):
    with pytest.raises(TransientDeliveryError) as raised:
        send_voucher_email(gift=gift, voucher=voucher)
    assert isinstance(raised.value.__cause__, ConnectionRefusedError)


def test_send_voucher_email_sends_to_the_recipient(outbox, gift, voucher):
    send_voucher_email(gift=gift, voucher=voucher)
    [email] = outbox
    assert email.to == ["recipient@example.com"]
    assert email.extra_headers["Message-ID"] == message_id_for(gift)
    assert str(gift.id) in message_id_for(gift)


def test_deliver_voucher_names_the_channel(outbox, gift, voucher):
    assert deliver_voucher(gift=gift, voucher=voucher) == "email"
    assert len(outbox) == 1


def test_the_message_id_is_well_formed_when_the_sender_has_a_display_name(settings, gift):
    settings.DEFAULT_FROM_EMAIL = "Gift a Voucher <gifts@example.com>"
    assert message_id_for(gift) == f"<gift-{gift.id}@example.com>"


def test_the_senders_message_is_escaped_in_the_html_part(outbox, gift, voucher):
    gift.message = '<script>alert("hi")</script>'
    send_voucher_email(gift=gift, voucher=voucher)
    [(html, _)] = outbox[0].alternatives
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
