"""fraud's own records in the admin: per-sender limits (staff may override them) and risk assessments."""

from django.contrib import admin

from core.admin import ReadOnlyAdmin
from fraud.models import RiskAssessment, SenderLimits


@admin.register(SenderLimits)
class SenderLimitsAdmin(admin.ModelAdmin):
    list_display = ["user", "max_amount", "daily_count", "daily_value", "weekly_count", "weekly_value", "updated_at"]
    search_fields = ["user__username", "user__email"]
    autocomplete_fields = ["user"]


@admin.register(RiskAssessment)
class RiskAssessmentAdmin(ReadOnlyAdmin):
    list_display = ["gift", "decision", "score", "hold_tier", "review_outcome", "reviewed_by", "created_at"]
    list_filter = ["decision", "hold_tier", "review_outcome"]
    search_fields = ["gift__id"]
