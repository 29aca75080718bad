from django.contrib import admin

from audit.models import AuditEntry
from core.admin import ReadOnlyAdmin


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["at", "kind", "actor_label", "subject", "ip", "request_id"]
    list_filter = ["kind"]
    search_fields = ["actor_label", "subject", "request_id"]
    date_hierarchy = "at"
    fields = ["at", "kind", "actor", "actor_label", "subject", "ip", "request_id", "details", "chain_hash"]
    readonly_fields = fields
