"""The email that asks a recipient to confirm their address before a high-value voucher goes out."""

from django.conf import settings
from django.urls import reverse

from gifting.channels import send_templated_email, sender_name
from gifting.models import Gift


def send_verification_email(*, gift: Gift, token: str) -> None:
    """Send the confirmation link; raises a DeliveryError (transient or permanent) on failure."""
    send_templated_email(
        to=gift.recipient_email,
        subject="Please confirm your email address to receive a gift",
        template="fraud/verification_email",
        context={
            "gift": gift,
            "sender_name": sender_name(gift),
            "link": settings.SITE_URL.rstrip("/") + reverse("verify-recipient", args=[token]),
            "valid_hours": settings.FRAUD_VERIFICATION_TTL // 3600,
        },
    )
