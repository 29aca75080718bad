"""API tokens in the admin: who holds one, since when, until when; staff can revoke, never read or mint one.

Replaces knox's admin, which lists every token's digest and, when staff add a
token, shows the new token in a message.
"""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from knox.models import AuthToken

from accounts.models import ApiToken

admin.site.unregister(AuthToken)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["user", "prefix", "created", "expiry"]
    list_filter = ["created", "expiry"]
    search_fields = ["user__username", "token_key"]
    list_select_related = ["user"]
    # Fields, not the whole row: the digest (the primary key) is never displayed.
    fields = ["user", "prefix", "created", "expiry"]
    readonly_fields = fields
    ordering = ["-created"]
    actions = ["revoke_selected"]

    @admin.display(description="prefix", ordering="token_key")
    def prefix(self, token: ApiToken) -> str:
        """The token's first characters, as knox keeps them to find it: enough to tell tokens apart, not to use one."""
        return f"{token.token_key}…"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tokens come from logging in to the API (POST /api/v1/auth/token/)

    def has_change_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # revoke_selected says what deleting a token means
        return actions

    @admin.action(description="Revoke selected tokens", permissions=["delete"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        tokens = list(queryset.select_related("user"))
        self.log_deletions(request, tokens)
        revoked, _ = queryset.delete()
        self.message_user(
            request, f"Revoked {revoked} token(s); clients using them must log in again.", messages.SUCCESS
        )
