"""Blocks in the admin: who is blocked, why (the pattern and its figures), until when; staff lift them."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from abuse.models import Block
from abuse.services import block_lift


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("current", "In force"), ("lifted", "Lifted"), ("expired", "Expired")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "current":
            return queryset.current()
        if self.value() == "lifted":
            return queryset.filter(lifted_at__isnull=False)
        if self.value() == "expired":
            return queryset.filter(lifted_at__isnull=True, expires__lte=timezone.now())
        return queryset


@admin.register(Block)
class BlockAdmin(admin.ModelAdmin):
    list_display = ["subject_kind", "subject", "reason", "created", "expires", "in_force", "lifted_by", "lifted_at"]
    list_filter = [StateFilter, "subject_kind", "pattern"]
    search_fields = ["subject"]
    list_select_related = ["lifted_by"]
    fields = ["subject_kind", "subject", "pattern", "reason", "created", "expires", "lifted_at", "lifted_by"]
    readonly_fields = fields
    ordering = ["-created"]
    actions = ["lift_selected"]

    @admin.display(boolean=True, description="in force")
    def in_force(self, block: Block) -> bool:
        return block.in_force

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # blocks come from the request-pattern analysis (abuse/patterns.py)

    def has_delete_permission(self, request: HttpRequest, obj: Block | None = None) -> bool:
        return False  # a block is part of the record: lift it instead

    @admin.action(description="Lift selected blocks", permissions=["change"])
    def lift_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        lifted = sum(block_lift(block=block, by=request.user, request=request) for block in queryset)
        skipped = queryset.count() - lifted
        message = f"Lifted {lifted} block(s); those clients are let back in now."
        if skipped:
            message += f" {skipped} were no longer in force."
        self.message_user(request, message, messages.SUCCESS)
