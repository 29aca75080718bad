"""The fraud reviewers' queue: held gifts with their risk assessment, approved or rejected in bulk.

It reads the gift's assessment through the ORM's `risk` relation (loaded with
the gift) and writes only through gifting.services.holds, which calls fraud's
services.
"""

from collections.abc import Iterable

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.defaultfilters import pluralize
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from core.admin import ReadOnlyAdmin
from fraud.decisions import REVIEW_REASON_MAX_LENGTH, HoldTier
from fraud.rules import RuleName
from gifting import selectors
from gifting.models import GiftReview, GiftStatus, HoldReason
from gifting.services.holds import REVIEW_PERMISSION, ReviewError, gift_approve, gift_reject


def _risk(gift):
    """The gift's risk assessment (loaded with it); gifts from before the fraud rules have none."""
    return getattr(gift, "risk", None)


# The history columns' span (gifting.selectors.REVIEW_HISTORY_PERIOD), in their headers.
HISTORY_DAYS = selectors.REVIEW_HISTORY_PERIOD.days


def _attach_histories(gifts: Iterable) -> None:
    """Give each gift its `sender_counts` and `recipient_counts` (the history columns): two queries for a page."""
    gifts = list(gifts)
    since = timezone.now() - selectors.REVIEW_HISTORY_PERIOD
    senders = selectors.sender_histories(sender_ids={gift.sender_id for gift in gifts}, since=since)
    recipients = selectors.recipient_histories(recipient_indexes={gift.recipient_index for gift in gifts}, since=since)
    for gift in gifts:
        gift.sender_counts = senders[gift.sender_id]
        gift.recipient_counts = recipients[gift.recipient_index]


def _with_histories(gift):
    """The gift with its history counts: a page's rows have them already, a gift on its own page not yet."""
    if not hasattr(gift, "recipient_counts"):
        _attach_histories([gift])
    return gift


class CurrencyFilter(admin.SimpleListFilter):
    """The configured currencies: a plain "currency" filter asks SELECT DISTINCT over every gift, a full scan."""

    title = "currency"
    parameter_name = "currency"

    def lookups(self, request, model_admin):
        return [(code, code) for code in settings.GIFT_CURRENCIES]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(currency=self.value())
        return queryset


class SignalFilter(admin.SimpleListFilter):
    title = "signal"
    parameter_name = "signal"

    def lookups(self, request, model_admin):
        return [(rule.value, rule.value.replace("_", " ")) for rule in RuleName]

    def queryset(self, request, queryset):
        if self.value() in set(RuleName):
            # Text search in the JSON: works on PostgreSQL and SQLite alike.
            return queryset.filter(risk__signals__icontains=f'"rule": "{self.value()}"')
        return queryset


class QueueFilter(admin.SimpleListFilter):
    """Gifts waiting for a reviewer by default: that is the queue; the rest is context."""

    title = "queue"
    parameter_name = "queue"
    WAITING = "waiting"

    def lookups(self, request, model_admin):
        return [
            (self.WAITING, "Waiting for review"),
            ("recipient", "Waiting for the recipient"),
            ("reviewed", "Reviewed"),
            ("all", "All assessed gifts"),
        ]

    def choices(self, changelist):
        for value, label in self.lookup_choices:
            yield {
                "selected": (self.value() or self.WAITING) == value,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": label,
            }

    def queryset(self, request, queryset):
        assessed = queryset.filter(risk__isnull=False)
        value = self.value() or self.WAITING
        if value == "recipient":
            return assessed.filter(status=GiftStatus.HELD, hold=HoldReason.RECIPIENT)
        if value == "reviewed":
            return assessed.exclude(risk__review_outcome="")
        if value == "all":
            return assessed
        return assessed.filter(status=GiftStatus.HELD, hold__in=[HoldReason.DELAY, HoldReason.APPROVAL])


class RejectForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        max_length=REVIEW_REASON_MAX_LENGTH,
        help_text="Kept in the audit log; the sender only sees that the gift was declined.",
    )


@admin.register(GiftReview)
class GiftReviewAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "amount_display",
        "sender",
        "recipient_display",
        "status",
        "tier",
        "score",
        "signal_names",
        "release_at",
        "sender_history",
        "recipient_history",
    ]
    list_filter = [QueueFilter, "risk__hold_tier", SignalFilter, CurrencyFilter]
    search_fields = ["id", "sender__username", "sender__email"]
    ordering = ["created_at"]
    actions = ["approve_selected", "reject_selected"]
    list_select_related = ["sender", "risk"]
    # No "(N total)" beside the filtered count: that is a COUNT(*) over every gift ever, on each page view.
    show_full_result_count = False
    fields = [
        "id",
        "status",
        "amount_display",
        "sender",
        "recipient_display",
        "message",
        "created_at",
        "tier",
        "score",
        "signal_details",
        "release_at",
        "sender_history",
        "recipient_history",
        "review",
    ]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("sender", "risk")

    def get_changelist_instance(self, request: HttpRequest):
        changelist = super().get_changelist_instance(request)
        # The page's rows, fetched here once (the template reads the same, now cached, queryset).
        _attach_histories(changelist.result_list)
        return changelist

    def has_review_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(REVIEW_PERMISSION)

    @admin.display(description="amount")
    def amount_display(self, gift) -> str:
        return f"{gift.amount} {gift.currency}"

    @admin.display(description="recipient")
    def recipient_display(self, gift) -> str:
        return gift.masked_recipient

    @admin.display(description="tier")
    def tier(self, gift) -> str:
        risk = _risk(gift)
        return HoldTier(risk.hold_tier).label if risk and risk.hold_tier else "-"

    @admin.display(description="score")
    def score(self, gift) -> int | str:
        risk = _risk(gift)
        return risk.score if risk else "-"

    @admin.display(description="release at")
    def release_at(self, gift):
        risk = _risk(gift)
        return risk.release_at if risk else None

    @admin.display(description="signals")
    def signal_names(self, gift) -> str:
        risk = _risk(gift)
        return ", ".join(signal["rule"] for signal in risk.signals) if risk and risk.signals else "-"

    @admin.display(description="signals")
    def signal_details(self, gift) -> str:
        risk = _risk(gift)
        if not risk or not risk.signals:
            return "-"
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "", "<li><b>{}</b> (+{}): {}</li>", ((s["rule"], s["score"], s["reason"]) for s in risk.signals)
            ),
        )

    @admin.display(description=f"sender's gifts, last {HISTORY_DAYS} days")
    def sender_history(self, gift) -> str:
        history = _with_histories(gift).sender_counts
        return ", ".join(f"{count} {status}" for status, count in sorted(history.items())) or "-"

    @admin.display(description=f"recipient's gifts, last {HISTORY_DAYS} days")
    def recipient_history(self, gift) -> str:
        history = _with_histories(gift).recipient_counts
        gifts, senders = history["gifts"], history["senders"]
        return f"{gifts} gift{pluralize(gifts)} from {senders} sender{pluralize(senders)}"

    @admin.display(description="review")
    def review(self, gift) -> str:
        risk = _risk(gift)
        if not risk or not risk.review_outcome:
            return "-"
        return f"{risk.review_outcome} by {risk.reviewed_by} at {risk.reviewed_at:%Y-%m-%d %H:%M}: {risk.review_reason}"

    def _review_each(self, request: HttpRequest, queryset: QuerySet, review, verb: str) -> None:
        done = 0
        for gift in queryset:
            try:
                review(gift)
                done += 1
            except ReviewError as exc:
                self.message_user(request, f"Gift {gift.id}: {exc}", messages.ERROR)
        if done:
            self.message_user(request, f"{verb} {done} gift(s).", messages.SUCCESS)

    @admin.action(description="Approve selected gifts", permissions=["review"])
    def approve_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._review_each(
            request, queryset, lambda gift: gift_approve(gift_id=gift.id, reviewer=request.user), "Approved"
        )

    @admin.action(description="Reject selected gifts…", permissions=["review"])
    def reject_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        form = RejectForm(request.POST if "confirm" in request.POST else None)
        if form.is_valid():
            reason = form.cleaned_data["reason"]
            self._review_each(
                request,
                queryset,
                lambda gift: gift_reject(gift_id=gift.id, reviewer=request.user, reason=reason),
                "Rejected",
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Reject gifts",
            "gifts": queryset,
            "form": form,
            "opts": self.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/gifting/reject_gifts.html", context)
