"""Delivery channels: how a voucher reaches its recipient, and how sending fails.

Each channel turns its transport's errors into Transient/PermanentDeliveryError
so the task can decide between retrying and dead-lettering.
"""

import smtplib
import socket
from email.utils import parseaddr

from django.conf import settings
from django.urls import reverse

from core.emails import send_templated_email
from gifting.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from gifting.models import Gift
from gifting.wallets import wallet_credit
from vouchers.models import Voucher


def message_id_for(gift: Gift) -> str:
    """A Message-ID derived from the gift id, so any receiver can deduplicate."""
    _, address = parseaddr(settings.DEFAULT_FROM_EMAIL)  # may carry a display name
    domain = address.rpartition("@")[2] or "localhost"
    return f"<gift-{gift.id}@{domain}>"


def classify_smtp_error(exc: Exception) -> DeliveryError:
    """SMTP 4xx, connection errors and timeouts are transient; SMTP 5xx is permanent."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        if codes and all(500 <= code < 600 for code in codes):
            return PermanentDeliveryError("The recipient's mail server refused the address.")
        return TransientDeliveryError("The recipient's mail server is temporarily refusing mail.")
    if isinstance(exc, smtplib.SMTPResponseException):
        if 500 <= exc.smtp_code < 600:
            return PermanentDeliveryError("The mail server rejected the message.")
        return TransientDeliveryError("The mail server is temporarily unavailable.")
    if isinstance(exc, (smtplib.SMTPException, socket.timeout, TimeoutError, ConnectionError, OSError)):
        return TransientDeliveryError("The mail server could not be reached.")
    raise TypeError(f"not an SMTP error: {exc!r}")


def _send(*, to: str, subject: str, template: str, context: dict, headers: dict[str, str] | None = None) -> None:
    """Send a templated email; raises a DeliveryError (transient or permanent) on failure."""
    try:
        send_templated_email(to=to, subject=subject, template=template, context=context, headers=headers)
    except (smtplib.SMTPException, OSError) as exc:
        raise classify_smtp_error(exc) from exc


def sender_name(gift: Gift) -> str:
    """How the recipient knows the sender: their full name, else their username."""
    return gift.sender.get_full_name() or gift.sender.get_username()


def send_voucher_email(*, gift: Gift, voucher: Voucher) -> None:
    """Send the one delivery email of a gift; raises a DeliveryError on failure."""
    _send(
        to=gift.recipient_email,
        subject=f"You received a {gift.amount} {gift.currency} voucher",
        template="gifting/voucher_email",
        context={"gift": gift, "voucher": voucher, "sender_name": sender_name(gift)},
        headers={"Message-ID": message_id_for(gift)},
    )


def send_verification_email(*, gift: Gift, token: str) -> None:
    """Ask the recipient to confirm their address before a high-value voucher goes out."""
    _send(
        to=gift.recipient_email,
        subject="Please confirm your email address to receive a gift",
        template="gifting/verification_email",
        context={
            "gift": gift,
            "sender_name": sender_name(gift),
            "link": settings.SITE_URL.rstrip("/") + reverse("verify-recipient", args=[token]),
            "valid_hours": settings.FRAUD_VERIFICATION_TTL // 3600,
        },
    )


def deliver_voucher(*, gift: Gift, voucher: Voucher) -> str:
    """Deliver by the gift's recipient kind; returns the channel's name."""
    if gift.recipient_email:
        send_voucher_email(gift=gift, voucher=voucher)
        return "email"
    wallet_credit(gift=gift, voucher=voucher)  # the provider's credit, verified on chain
    return "wallet"
