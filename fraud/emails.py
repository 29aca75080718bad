"""The email that asks a recipient to confirm their address before a high-value voucher goes out."""

import smtplib

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.template.loader import render_to_string
from django.urls import reverse

from gifting.channels import classify_smtp_error
from gifting.models import Gift


def send_verification_email(*, gift: Gift, token: str) -> None:
    """Send the confirmation link; raises a DeliveryError (transient or permanent) on failure."""
    context = {
        "gift": gift,
        "sender_name": gift.sender.get_full_name() or gift.sender.get_username(),
        "link": settings.SITE_URL.rstrip("/") + reverse("verify-recipient", args=[token]),
        "valid_hours": settings.FRAUD_VERIFICATION_TTL // 3600,
    }
    email = EmailMultiAlternatives(
        subject="Please confirm your email address to receive a gift",
        body=render_to_string("fraud/verification_email.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[gift.recipient_email],
        connection=get_connection(timeout=settings.EMAIL_TIMEOUT),
    )
    email.attach_alternative(render_to_string("fraud/verification_email.html", context), "text/html")
    try:
        email.send(fail_silently=False)
    except (smtplib.SMTPException, OSError) as exc:
        raise classify_smtp_error(exc) from exc
