from django.contrib import admin

from core.admin import ReadOnlyAdmin
from gifting import review_admin  # noqa: F401 - registers the review queue
from gifting.models import Gift, GiftEvent


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

    @admin.display(description="recipient")
    def masked_recipient(self, gift: Gift) -> str:
        return gift.masked_recipient


@admin.register(GiftEvent)
class GiftEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "gift", "type", "actor_label", "actor", "request_id"]
    list_filter = ["type", "actor_label"]
    search_fields = ["gift__id", "request_id"]
