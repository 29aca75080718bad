from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from audit.models import AuditKind
from audit.services import audit_record
from core.admin import ReadOnlyAdmin
from gifting import review_admin  # noqa: F401 - registers the review queue
from gifting.dead_letters import REDRIVE_PERMISSION, SQS_ERRORS, Outcome, RedriveResult, dead_letters_redrive
from gifting.models import Gift, GiftEvent, GiftStatus

VIEW_ADDRESS_PERMISSION = "gifting.view_recipient_address"
# The gift whose next change page shows its full recipient address, once (set by the reveal POST).
REVEAL_SESSION_KEY = "gifting_revealed_recipient"
RECIPIENT_FIELDS = ("recipient_email", "recipient_wallet")


class GiftEventInline(admin.TabularInline):
    model = GiftEvent
    fields = ["at", "type", "actor_label", "actor", "request_id", "details"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Gift)
class GiftAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "sender", "masked_recipient", "amount", "currency", "status", "attempts"]
    list_filter = ["status", "currency"]
    search_fields = ["id", "sender__username"]
    date_hierarchy = "created_at"
    inlines = [GiftEventInline]
    # The full address is never a field of the page: `recipient` masks it, and only a reveal
    # (VIEW_ADDRESS_PERMISSION, audit-logged) swaps in `recipient_address` for one page view.
    exclude = RECIPIENT_FIELDS
    actions = ["redrive_selected"]

    @admin.display(description="recipient")
    def masked_recipient(self, gift: Gift) -> str:
        return gift.masked_recipient

    @admin.display(description="recipient (full address)")
    def recipient_address(self, gift: Gift) -> str:
        return gift.recipient_email or gift.recipient_wallet

    def get_readonly_fields(self, request: HttpRequest, obj: Gift | None = None) -> list[str]:
        recipient = "recipient_address" if getattr(request, "reveal_recipient", False) else "masked_recipient"
        fields = []
        for field in Gift._meta.fields:
            if field.name == RECIPIENT_FIELDS[0]:
                fields.append(recipient)
            elif not field.name.startswith("recipient_"):  # the address, the wallet, their blind index
                fields.append(field.name)
        return fields

    def get_urls(self):
        reveal = path(
            "<path:object_id>/reveal-recipient/",
            self.admin_site.admin_view(require_POST(self.reveal_recipient_view)),  # admin_view adds CSRF
            name="gifting_gift_reveal_recipient",
        )
        return [reveal, *super().get_urls()]

    def can_view_address(self, request: HttpRequest, gift: Gift | None) -> bool:
        return self.has_view_permission(request, gift) and request.user.has_perm(VIEW_ADDRESS_PERMISSION)

    def reveal_recipient_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: note in the audit log who saw whose address, then show it on the gift's page once."""
        gift = self.get_object(request, unquote(object_id))
        if gift is None:
            raise Http404("No such gift.")
        if not self.can_view_address(request, gift):
            raise PermissionDenied
        audit_record(
            kind=AuditKind.RECIPIENT_ADDRESS_VIEWED,
            actor=request.user,
            actor_label=request.user.get_username(),
            subject=str(gift.pk),
            request=request,
        )
        request.session[REVEAL_SESSION_KEY] = str(gift.pk)
        return HttpResponseRedirect(reverse("admin:gifting_gift_change", args=[quote(gift.pk)]))

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        # One reveal, one page: any gift page takes the mark down, and only this gift's shows the address.
        revealed = request.session.pop(REVEAL_SESSION_KEY, None)
        gift = self.get_object(request, unquote(object_id))
        can_view_address = self.can_view_address(request, gift)
        request.reveal_recipient = can_view_address and gift is not None and revealed == str(gift.pk)
        context = {
            **(extra_context or {}),
            "can_view_recipient_address": can_view_address,
            "recipient_revealed": request.reveal_recipient,
        }
        return super().change_view(request, object_id, form_url, context)

    def has_redrive_permission(self, request: HttpRequest) -> bool:
        # Off on the public web service, whose IAM role may not touch dead letters (core/aws_actions.py).
        return settings.ADMIN_DLQ_TOOLS and request.user.has_perm(REDRIVE_PERMISSION)

    @admin.action(description="Redrive selected failed gifts", permissions=["redrive"])
    def redrive_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        """`dlq redrive --gift` for staff: each failed gift's dead letter goes back, or, if gone, a fresh message.

        Same service as the command (gifting.dead_letters), so a gift is still
        redriven at most once and only while failed; the staff user is the
        operator in the audit log.
        """
        selected = list(queryset.values_list("id", "status"))
        for gift_id, status in selected:
            if status != GiftStatus.FAILED:
                self.message_user(request, f"Gift {gift_id} is {status}, not failed: left alone.", messages.WARNING)
        failed = [gift_id for gift_id, status in selected if status == GiftStatus.FAILED]
        if not failed:
            return
        try:
            report = dead_letters_redrive(
                gift_ids=failed, operator=request.user.get_username(), actor=request.user, republish_missing=True
            )
        except SQS_ERRORS as exc:
            self.message_user(
                request,
                f"SQS failed ({type(exc).__name__}). Gifts already requeued are published again by the outbox "
                "sweeper; try again for the others.",
                messages.ERROR,
            )
            return
        for result in report.results:
            self.message_user(request, *_redrive_message(result))


def _redrive_message(result: RedriveResult) -> tuple[str, int]:
    """What the admin says about one gift of a redrive, and at which level."""
    gift = f"Gift {result.gift_id}"
    if result.outcome is Outcome.REDRIVEN:
        copies = f" {result.duplicates} duplicate copies were deleted." if result.duplicates else ""
        return f"{gift}: its dead letter went back to the gift queue.{copies}", messages.SUCCESS
    if result.outcome is Outcome.REPUBLISHED:
        return f"{gift}: no dead letter was left on the DLQ; a fresh delivery message was published.", messages.SUCCESS
    return f"{gift} is {result.gift_status or 'unknown'}, not failed: left alone.", messages.WARNING


@admin.register(GiftEvent)
class GiftEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "gift", "type", "actor_label", "actor", "request_id"]
    list_filter = ["type", "actor_label"]
    search_fields = ["gift__id", "request_id"]
