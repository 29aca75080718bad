from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from core.admin import ReadOnlyAdmin
from gifting import review_admin  # noqa: F401 - registers the review queue
from gifting.dead_letters import REDRIVE_PERMISSION, SQS_ERRORS, Outcome, RedriveResult, dead_letters_redrive
from gifting.models import Gift, GiftEvent, GiftStatus


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
    readonly_fields = [field.name for field in Gift._meta.fields]
    actions = ["redrive_selected"]

    @admin.display(description="recipient")
    def masked_recipient(self, gift: Gift) -> str:
        return gift.masked_recipient

    def has_redrive_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(REDRIVE_PERMISSION)

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
