"""Delivery channels: how a voucher reaches its recipient, and how sending fails.

Each channel turns its transport's errors into Transient/PermanentDeliveryError
so the task can decide between retrying and dead-lettering.
"""

import smtplib
import socket
from email.utils import parseaddr

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.template.loader import render_to_string

from gifting.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from gifting.models import Gift
from gifting.wallets import wallet_provider
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


def send_templated_email(
    *, to: str, subject: str, template: str, context: dict, headers: dict[str, str] | None = None
) -> None:
    """Send `template`.txt with `template`.html beside it; raises a DeliveryError on failure."""
    email = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string(f"{template}.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[to],
        headers=headers,
        connection=get_connection(timeout=settings.EMAIL_TIMEOUT),
    )
    email.attach_alternative(render_to_string(f"{template}.html", context), "text/html")
    try:
        email.send(fail_silently=False)
    except (smtplib.SMTPException, OSError) as exc:
        raise classify_smtp_error(exc) from exc


def sender_name(gift: Gift) -> str:
    """How the recipient knows the sender: their full name, else their username."""
    return gift.sender.get_full_name() or gift.sender.get_username()


def send_voucher_email(*, gift: Gift, voucher: Voucher) -> None:
    """Send the one delivery email of a gift; raises a DeliveryError on failure."""
    send_templated_email(
        to=gift.recipient_email,
        subject=f"You received a {gift.amount} {gift.currency} voucher",
        template="gifting/voucher_email",
        context={"gift": gift, "voucher": voucher, "sender_name": sender_name(gift)},
        headers={"Message-ID": message_id_for(gift)},
    )


def deliver_voucher(*, gift: Gift, voucher: Voucher) -> str:
    """Deliver by the gift's recipient kind; returns the channel's name."""
    if gift.recipient_email:
        send_voucher_email(gift=gift, voucher=voucher)
        return "email"
    provider = wallet_provider()
    if provider is None:
        raise PermanentDeliveryError("Wallet delivery is not configured.")
    provider.credit(gift=gift, voucher=voucher)
    return "wallet"
