"""The page a recipient reaches from their verification email."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from fraud.verification import verification_find
from gifting.channels import sender_name
from gifting.models import GiftStatus
from gifting.review import VerificationError, gift_confirm_recipient, gift_resend_verification


@require_http_methods(["GET", "POST"])
def verify_recipient(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows a button (so mail scanners that follow links confirm nothing); POST confirms.

    An expired link offers to send a new one to the same address.
    """
    if request.method == "POST":
        try:
            if "resend" in request.POST:
                gift_resend_verification(token=token)
                return _page(request, "A new link is on its way", "Check your inbox for a new confirmation email.")
            gift = gift_confirm_recipient(token=token)
        except VerificationError as exc:
            return _page(request, "This link cannot be used", str(exc), status=400)
        return _page(
            request,
            "Thank you!",
            f"Your address is confirmed. Your {gift.amount} {gift.currency} voucher is on its way.",
        )
    verification = verification_find(token=token)
    if verification is None or verification.confirmed_at is not None or verification.gift.status != GiftStatus.HELD:
        message = "It is not valid, it has been used already, or the gift no longer needs it."
        return _page(request, "This link cannot be used", message, status=404)
    if verification.expires_at <= timezone.now():
        message = "We can send a new link to the same address."
        return _page(request, "This link has expired", message, status=410, can_resend=True)
    gift = verification.gift
    return _page(
        request,
        "Confirm your address",
        f"{sender_name(gift)} is sending you a "
        f"{gift.amount} {gift.currency} voucher. Confirm that this is your email address to receive it.",
        can_confirm=True,
    )


def _page(
    request: HttpRequest,
    title: str,
    message: str,
    *,
    status: int = 200,
    can_confirm: bool = False,
    can_resend: bool = False,
) -> HttpResponse:
    context = {"title": title, "message": message, "can_confirm": can_confirm, "can_resend": can_resend}
    return render(request, "fraud/verify_recipient.html", context, status=status)
