"""Sending a templated email: `<template>.txt` with `<template>.html` beside it.

One SMTP connection per process (per thread with a threads pool) is kept open and
reused, as a mail server's own client does: opening one costs a TCP handshake,
EHLO (STARTTLS and AUTH when configured) and QUIT, several times the cost of
the message itself. A kept connection is given up, and a new one opened, when
it has been idle or open too long, when the server has said or closed something
since its last reply (its idle timeout, a 421), when any send on it failed, and
when the email settings change. Each connection is opened with EMAIL_TIMEOUT as
before, so a stuck server still fails a send within it. Other backends (console,
locmem) are created per email, as before.
"""

import os
import select
import smtplib
import threading
import time

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.smtp import EmailBackend as SmtpBackend
from django.template.loader import render_to_string
from django.utils.module_loading import import_string
from opentelemetry.trace import Status, StatusCode

from core.tracing import get_tracer

# Postfix's SMTP client keeps an idle connection for 2 s and reuses one for 300 s at most
# (smtp_connection_cache_time_limit, smtp_connection_reuse_time_limit); a little more idle time here,
# as a worker takes its next message within milliseconds under load and far later when idle.
MAX_IDLE_SECONDS = 10.0
MAX_AGE_SECONDS = 300.0


class _KeptConnection(threading.local):
    """This thread's open email backend, what it was opened with, and when."""

    backend: SmtpBackend | None = None
    key: tuple = ()
    pid: int = 0
    opened_at: float = 0.0
    last_used: float = 0.0


_kept = _KeptConnection()


def _settings_key() -> tuple:
    """What a connection is opened with: a change (a test's override) means a new connection."""
    return (
        settings.EMAIL_BACKEND,
        settings.EMAIL_HOST,
        settings.EMAIL_PORT,
        settings.EMAIL_HOST_USER,
        settings.EMAIL_HOST_PASSWORD,
        settings.EMAIL_USE_TLS,
        settings.EMAIL_USE_SSL,
        settings.EMAIL_TIMEOUT,
    )


def _server_spoke(smtp: smtplib.SMTP | None) -> bool:
    """The server sent something unasked (a 421 before closing) or closed the connection: not reusable.

    Between two conversations a healthy connection has nothing to read; a poll that does not wait
    tells, without a round trip, whether the server has given up on it.
    """
    if smtp is None or smtp.sock is None:
        return True
    readable, _, _ = select.select([smtp.sock], [], [], 0)
    return bool(readable)


def _reusable(now: float) -> bool:
    if _kept.backend is None or _kept.key != _settings_key() or _kept.pid != os.getpid():
        return False
    if now - _kept.last_used > MAX_IDLE_SECONDS or now - _kept.opened_at > MAX_AGE_SECONDS:
        return False
    return not _server_spoke(_kept.backend.connection)


def connection_close() -> None:
    """Give up this thread's kept connection, if any.

    Without QUIT: a server that has timed the connection out may not answer it and would hold the
    next send for EMAIL_TIMEOUT, and after a failed send the conversation is in an unknown state.
    Servers take a client that goes away in their stride (RFC 5321, 3.8).
    """
    backend, _kept.backend = _kept.backend, None
    if backend is None or _kept.pid != os.getpid():
        return  # nothing kept, or a connection inherited across a fork: the parent's socket, not ours
    if backend.connection is not None:
        backend.connection.close()
        backend.connection = None


def _connection() -> BaseEmailBackend:
    """This thread's open SMTP backend: the kept one while it is good, else a new one, opened here.

    Other backends (console, locmem, a test's) hold no connection: a new one per email, as before.
    """
    if not issubclass(import_string(settings.EMAIL_BACKEND), SmtpBackend):
        return get_connection(timeout=settings.EMAIL_TIMEOUT)
    now = time.monotonic()
    if not _reusable(now):
        connection_close()
        backend = get_connection(timeout=settings.EMAIL_TIMEOUT)
        backend.open()  # raises on failure (fail_silently is off), before anything is kept
        _kept.backend, _kept.key, _kept.pid, _kept.opened_at = backend, _settings_key(), os.getpid(), now
    return _kept.backend


def send_templated_email(
    *, to: str, subject: str, template: str, context: dict, headers: dict[str, str] | None = None
) -> None:
    """Send one email, bounded by EMAIL_TIMEOUT; SMTP errors and OSErrors reach the caller to classify."""
    email = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string(f"{template}.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[to],
        headers=headers,
    )
    email.attach_alternative(render_to_string(f"{template}.html", context), "text/html")
    # The span names the template, never the recipient; an error is recorded by its type and SMTP
    # code only, as an SMTP error's text may quote the address (a no-op span when tracing is off).
    with get_tracer(__name__).start_as_current_span(
        "smtp.send", attributes={"email.template": template}, record_exception=False, set_status_on_exception=False
    ) as span:
        try:
            email.connection = _connection()
            email.send(fail_silently=False)
        except Exception as exc:
            # Whatever state the conversation was left in, the next email starts on a new connection.
            connection_close()
            span.set_attribute("error.type", type(exc).__name__)
            if isinstance(exc, smtplib.SMTPResponseException):
                span.set_attribute("smtp.response.code", exc.smtp_code)
            span.set_status(Status(StatusCode.ERROR))
            raise
        _kept.last_used = time.monotonic()
