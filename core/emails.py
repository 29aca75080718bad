"""Sending a templated email: `<template>.txt` with `<template>.html` beside it."""

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.template.loader import render_to_string


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
    email.send(fail_silently=False)
