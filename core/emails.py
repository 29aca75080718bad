"""Sending a templated email: `<template>.txt` with `<template>.html` beside it."""

import smtplib

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.template.loader import render_to_string
from opentelemetry.trace import Status, StatusCode

from core.tracing import get_tracer


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
        connection=get_connection(timeout=settings.EMAIL_TIMEOUT),
    )
    email.attach_alternative(render_to_string(f"{template}.html", context), "text/html")
    # The span names the template, never the recipient; an error is recorded by its type and SMTP
    # code only, as an SMTP error's text may quote the address (a no-op span when tracing is off).
    with get_tracer(__name__).start_as_current_span(
        "smtp.send", attributes={"email.template": template}, record_exception=False, set_status_on_exception=False
    ) as span:
        try:
            email.send(fail_silently=False)
        except Exception as exc:
            span.set_attribute("error.type", type(exc).__name__)
            if isinstance(exc, smtplib.SMTPResponseException):
                span.set_attribute("smtp.response.code", exc.smtp_code)
            span.set_status(Status(StatusCode.ERROR))
            raise
