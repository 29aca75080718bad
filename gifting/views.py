"""The page a recipient reaches from their verification email."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from fraud.verification import LinkState, link_find
from gifting.channels import sender_name
from gifting.models import Gift, GiftState
from gifting.services.holds import VerificationError, gift_confirm_recipient, gift_resend_verification


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
    link = link_find(token=token)
    gift = Gift.objects.select_related("sender").filter(id=link.gift_id).first() if link else None
    if gift is None or link.state == LinkState.USED or gift.state != GiftState.HELD_FOR_RECIPIENT:
        message = "It is not valid, it has been used already, or the gift no longer needs it."
        return _page(request, "This link cannot be used", message, status=404)
    if link.state == LinkState.EXPIRED:
        message = "We can send a new link to the same address."
        return _page(request, "This link has expired", message, status=410, can_resend=True)
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
    return render(request, "gifting/verify_recipient.html", context, status=status)
