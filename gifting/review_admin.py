"""The fraud reviewers' queue: held gifts with their risk assessment, approved or rejected in bulk.

It reads the gift's assessment through the ORM's `risk` relation (loaded with
the gift) and writes only through gifting.services.holds, which calls fraud's
services.

The list fits a laptop screen (1366 px, the admin's sidebar and filters open):
a few narrow columns per view, chosen by the queue filter; the rest (the
score's breakdown, the histories, the decision in full) is on the gift's page.
Recipients appear as a pseudonym, `c***@example.com · #4f1a` (core.masking),
the same for every gift to one recipient; the full address only through the
gift admin's audit-logged "Show full address".
"""

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.template.defaultfilters import pluralize
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from core.admin import ReadOnlyAdmin
from core.masking import mask_recipient, pseudonymous_recipient, recipient_tag
from fraud.decisions import REVIEW_REASON_MAX_LENGTH, Decision, HoldTier, ReviewOutcome
from fraud.rules import RuleName
from gifting import selectors
from gifting.models import Gift, GiftReview, GiftStatus, HoldReason
from gifting.services.holds import REVIEW_PERMISSION, ReviewError, gift_approve, gift_reject

# Seeing a full address is the gift admin's business (gifting.admin: audit-logged, one page view).
VIEW_ADDRESS_PERMISSIONS = ("gifting.view_gift", "gifting.view_recipient_address")


def _risk(gift):
    """The gift's risk assessment (loaded with it); gifts from before the fraud rules have none."""
    return getattr(gift, "risk", None)


# The history fields' span (gifting.selectors.REVIEW_HISTORY_PERIOD), in their labels.
HISTORY_DAYS = selectors.REVIEW_HISTORY_PERIOD.days


def _attach_histories(gifts: Iterable) -> None:
    """Give each gift its `sender_counts` and `recipient_counts` (the history fields): two queries for any number."""
    gifts = list(gifts)
    since = timezone.now() - selectors.REVIEW_HISTORY_PERIOD
    senders = selectors.sender_histories(sender_ids={gift.sender_id for gift in gifts}, since=since)
    recipients = selectors.recipient_histories(recipient_indexes={gift.recipient_index for gift in gifts}, since=since)
    for gift in gifts:
        gift.sender_counts = senders[gift.sender_id]
        gift.recipient_counts = recipients[gift.recipient_index]


def _with_histories(gift):
    if not hasattr(gift, "recipient_counts"):
        _attach_histories([gift])
    return gift


def _same_recipient_url(gift) -> str:
    """The queue's every assessed gift to this gift's recipient (SameRecipientFilter)."""
    query = urlencode({QueueFilter.parameter_name: QueueFilter.ALL, SameRecipientFilter.parameter_name: gift.pk})
    return f"{reverse('admin:gifting_giftreview_changelist')}?{query}"


def gifts(count: int) -> str:
    """`1 gift`, `2 gifts`."""
    return f"{count} gift{pluralize(count)}"


def short_duration(seconds: float) -> str:
    """`45 s`, `12 min`, `3 h`, `2 d`: what fits a narrow column."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _when(moment: datetime | None) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M") if moment else "-"


# --- The score, explained --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreExplanation:
    """How fraud.decisions.decide reached a verdict from a gift's signals and amount, under today's settings."""

    decision: str  # Decision value
    hold_tier: str  # HoldTier value
    sum: str  # "new_account +30, high_value +20 = 50"
    because: str  # "≥ review score 50 → needs approval"


def explain_score(*, signals: list[dict], amount: Decimal, currency: str) -> ScoreExplanation:
    """The decision table of fraud.decisions.decide, row by row, in words (tests check the two agree)."""
    score = sum(signal["score"] for signal in signals)
    terms = ", ".join(f"{signal['rule']} +{signal['score']}" for signal in signals)
    total = f"{terms} = {score}" if terms else "no signals: score 0"
    money = f"{amount} {currency}"
    review, reject = settings.FRAUD_REVIEW_SCORE, settings.FRAUD_REJECT_SCORE
    if score >= reject:
        return ScoreExplanation(
            Decision.REJECT, HoldTier.NONE, total, f"≥ reject score {reject} → rejected by the rules"
        )
    if score >= review:
        return ScoreExplanation(Decision.HOLD, HoldTier.APPROVAL, total, f"≥ review score {review} → needs approval")
    below_review = f"< review score {review}, and {money}"
    if amount >= settings.FRAUD_APPROVAL_THRESHOLD:
        because = f"{below_review} ≥ approval threshold {settings.FRAUD_APPROVAL_THRESHOLD} → needs approval"
        return ScoreExplanation(Decision.HOLD, HoldTier.APPROVAL, total, because)
    if amount >= settings.FRAUD_DELAY_THRESHOLD:
        period = short_duration(settings.FRAUD_HOLD_PERIOD)
        because = (
            f"{below_review} ≥ delay threshold {settings.FRAUD_DELAY_THRESHOLD} "
            f"→ held for {period}, then released unless rejected"
        )
        return ScoreExplanation(Decision.HOLD, HoldTier.DELAY, total, because)
    because = f"{below_review} < delay threshold {settings.FRAUD_DELAY_THRESHOLD} → allowed"
    return ScoreExplanation(Decision.ALLOW, HoldTier.NONE, total, because)


# --- What became of a held gift ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    decision: str
    by: str
    at: datetime | None
    reason: str


def outcome_of(gift) -> Outcome | None:
    """Who or what ended the gift's hold (or refused it), when and why; None while nothing has."""
    risk = _risk(gift)
    if risk is None:
        return None
    if risk.review_outcome:
        reviewer = risk.reviewed_by.get_username() if risk.reviewed_by else "-"
        return Outcome(ReviewOutcome(risk.review_outcome).label, reviewer, risk.reviewed_at, risk.review_reason or "-")
    if risk.released_at and risk.hold_tier == HoldTier.DELAY:
        period = short_duration(settings.FRAUD_HOLD_PERIOD)
        return Outcome(
            "Released at the period's end", "the sweeper", risk.released_at, f"No rejection within {period}."
        )
    if risk.released_at:
        return Outcome("Confirmed by the recipient", "the recipient", risk.released_at, "Followed the email's link.")
    if risk.decision == Decision.REJECT:
        return Outcome("Rejected by the rules", "the rules", risk.created_at, f"Score {risk.score}.")
    return None


# --- Filters ------------------------------------------------------------------------------------------------


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


class SameRecipientFilter(admin.SimpleListFilter):
    """Gifts to the recipient of one gift, named by the gift's id: the URL carries no address and no index."""

    title = "recipient"
    parameter_name = "same_recipient"

    def _gift_id(self) -> uuid.UUID | None:
        try:
            return uuid.UUID(self.value() or "")
        except ValueError:
            return None

    def lookups(self, request, model_admin):
        # Listed only while in use, so the reviewer sees it and can take it off.
        gift_id = self._gift_id()
        return [(str(gift_id), "the same recipient")] if gift_id else []

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        gift_id = self._gift_id()
        index = Gift.objects.filter(pk=gift_id).values_list("recipient_index", flat=True).first() if gift_id else None
        return queryset.filter(recipient_index=index) if index else queryset.none()


class QueueFilter(admin.SimpleListFilter):
    """Gifts waiting for a reviewer by default: that is the queue; the rest is context."""

    title = "queue"
    parameter_name = "queue"
    WAITING, RECIPIENT, REVIEWED, ALL = "waiting", "recipient", "reviewed", "all"
    LABELS = {
        WAITING: "Waiting for review",
        RECIPIENT: "Waiting for the recipient",
        REVIEWED: "Reviewed or released",
        ALL: "All assessed gifts",
    }

    @classmethod
    def current(cls, request: HttpRequest) -> str:
        value = request.GET.get(cls.parameter_name)
        return value if value in cls.LABELS else cls.WAITING

    def lookups(self, request, model_admin):
        return list(self.LABELS.items())

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
        if value == self.RECIPIENT:
            return assessed.filter(status=GiftStatus.HELD, hold=HoldReason.RECIPIENT)
        if value == self.REVIEWED:
            # A reviewer's decision, or a hold that ended by itself (its period, the recipient's link).
            return assessed.filter(~Q(risk__review_outcome="") | Q(risk__released_at__isnull=False))
        if value == self.ALL:
            return assessed
        return assessed.filter(status=GiftStatus.HELD, hold__in=[HoldReason.DELAY, HoldReason.APPROVAL])


class RejectForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        max_length=REVIEW_REASON_MAX_LENGTH,
        help_text="Kept in the audit log; the sender only sees that the gift was declined.",
    )


# When a reviewer decided or the hold ended by itself: the "Reviewed or released" view's order.
DECIDED_AT = Coalesce("risk__reviewed_at", "risk__released_at")

# The list's columns per queue view: few and narrow, so the table fits beside the filters at 1366 px.
LIST_COLUMNS = {
    QueueFilter.WAITING: ["gift_display", "recipient_display", "tier", "score", "signal_names", "waiting"],
    QueueFilter.RECIPIENT: ["gift_display", "recipient_display", "tier", "score", "signal_names", "waiting"],
    QueueFilter.REVIEWED: ["gift_display", "recipient_display", "decision", "decided_by", "decided_at", "reason"],
    QueueFilter.ALL: ["gift_display", "recipient_display", "status_display", "tier", "score", "signal_names"],
}


@admin.register(GiftReview)
class GiftReviewAdmin(ReadOnlyAdmin):
    list_display = LIST_COLUMNS[QueueFilter.WAITING]
    list_filter = [QueueFilter, "risk__hold_tier", SignalFilter, CurrencyFilter, SameRecipientFilter]
    search_fields = ["id", "sender__username", "sender__email"]
    ordering = ["created_at"]
    actions = ["approve_selected", "reject_selected"]
    list_select_related = ["sender", "risk", "risk__reviewed_by"]
    # No "(N total)" beside the filtered count: that is a COUNT(*) over every gift ever, on each page view.
    show_full_result_count = False
    fieldsets = [
        (None, {"fields": ["id", "status_display", "amount_display", "sender", "recipient_display", "message"]}),
        ("Why it was held", {"fields": ["score_breakdown", "tier", "created_at", "release_at"]}),
        (f"History, last {HISTORY_DAYS} days", {"fields": ["sender_history", "recipient_history"]}),
        ("Decision", {"fields": ["decision", "decided_by", "decided_at", "reason"]}),
    ]
    readonly_fields = [field for _, options in fieldsets for field in options["fields"]]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related(*self.list_select_related)

    def get_fieldsets(self, request: HttpRequest, obj=None):
        # The decision's section once there is one: four dashes say nothing a reviewer needs.
        if obj is not None and outcome_of(obj) is None:
            return [section for section in self.fieldsets if section[0] != "Decision"]
        return self.fieldsets

    def get_list_display(self, request: HttpRequest) -> list[str]:
        return LIST_COLUMNS[QueueFilter.current(request)]

    def get_ordering(self, request: HttpRequest) -> list[str]:
        # The queue oldest first (first come, first reviewed); past decisions newest first.
        view = QueueFilter.current(request)
        if view == QueueFilter.REVIEWED:
            return [DECIDED_AT.desc()]
        return ["-created_at"] if view == QueueFilter.ALL else ["created_at"]

    def changelist_view(self, request: HttpRequest, extra_context=None):
        context = {"title": QueueFilter.LABELS[QueueFilter.current(request)], **(extra_context or {})}
        return super().changelist_view(request, context)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        gift = self.get_object(request, object_id)
        context = {
            "title": f"Gift of {gift.amount} {gift.currency} from {gift.sender}" if gift else "Gift",
            "can_view_recipient_address": request.user.has_perms(VIEW_ADDRESS_PERMISSIONS),
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, context)

    def has_review_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(REVIEW_PERMISSION)

    # --- Columns and fields --------------------------------------------------------------------------

    @admin.display(description="gift", ordering="amount")
    def gift_display(self, gift) -> str:
        return format_html(
            '<span class="review-amount">{} {}</span><br><span class="review-quiet">from {}</span>',
            gift.amount,
            gift.currency,
            gift.sender,
        )

    @admin.display(description="amount")
    def amount_display(self, gift) -> str:
        return f"{gift.amount} {gift.currency}"

    @admin.display(description="recipient")
    def recipient_display(self, gift) -> str:
        """`c***@example.com · #4f1a`, a link to every assessed gift to the same recipient."""
        masked = mask_recipient(email=gift.recipient_email, wallet=gift.recipient_wallet)
        tag = recipient_tag(email=gift.recipient_email, wallet=gift.recipient_wallet)
        return format_html(
            '<a class="review-recipient" href="{}" title="All gifts to this recipient">'
            '<span>{}</span> <span class="review-tag">· #{}</span></a>',
            _same_recipient_url(gift),
            masked,
            tag,
        )

    @admin.display(description="status")
    def status_display(self, gift) -> str:
        status = GiftStatus(gift.status).label
        return f"{status} ({gift.hold})" if gift.status == GiftStatus.HELD else status

    @admin.display(description="tier")
    def tier(self, gift) -> str:
        risk = _risk(gift)
        return risk.hold_tier if risk and risk.hold_tier else "-"

    @admin.display(description="score", ordering="risk__score")
    def score(self, gift) -> int | str:
        risk = _risk(gift)
        return risk.score if risk else "-"

    @admin.display(description="signals")
    def signal_names(self, gift) -> str:
        risk = _risk(gift)
        return ", ".join(signal["rule"] for signal in risk.signals) if risk and risk.signals else "-"

    @admin.display(description="waiting", ordering="created_at")
    def waiting(self, gift) -> str:
        now = timezone.now()
        age = short_duration((now - gift.created_at).total_seconds())
        risk = _risk(gift)
        if gift.hold != HoldReason.DELAY or not risk or not risk.release_at:
            return age
        left = (risk.release_at - now).total_seconds()
        release = f"released in {short_duration(left)}" if left > 0 else "release due"
        return format_html('{}<br><span class="review-quiet">{}</span>', age, release)

    @admin.display(description="release at")
    def release_at(self, gift) -> str:
        risk = _risk(gift)
        return _when(risk.release_at) if risk else "-"

    @admin.display(description="score")
    def score_breakdown(self, gift) -> str:
        """Each signal with its points, the total against the thresholds, and what that decided."""
        risk = _risk(gift)
        if not risk:
            return "No risk assessment: the gift predates the fraud rules."
        explained = explain_score(signals=risk.signals, amount=gift.amount, currency=gift.currency)
        signals = format_html_join(
            "", "<li><b>{}</b> (+{}): {}</li>", ((s["rule"], s["score"], s["reason"]) for s in risk.signals)
        )
        verdict = format_html(
            '<p class="review-sum" id="score-breakdown">{} <span class="review-because">{}</span></p>',
            explained.sum,
            explained.because,
        )
        thresholds = format_html(
            '<p class="review-quiet">Today\'s thresholds: review score {}, reject score {}; '
            "amounts: held for a period from {}, approval from {}, the recipient confirms from {}.</p>",
            settings.FRAUD_REVIEW_SCORE,
            settings.FRAUD_REJECT_SCORE,
            settings.FRAUD_DELAY_THRESHOLD,
            settings.FRAUD_APPROVAL_THRESHOLD,
            settings.FRAUD_VERIFY_RECIPIENT_THRESHOLD,
        )
        changed = ""
        if (explained.decision, explained.hold_tier) != (risk.decision, risk.hold_tier):
            stored = HoldTier(risk.hold_tier).label if risk.hold_tier else Decision(risk.decision).label
            changed = format_html(
                '<p class="review-quiet">The settings have changed since the gift was assessed; then it read: {}.</p>',
                stored,
            )
        signal_list = format_html("<ul>{}</ul>", signals) if risk.signals else ""
        return format_html("{}{}{}{}", signal_list, verdict, thresholds, changed)

    @admin.display(description="sender's gifts")
    def sender_history(self, gift) -> str:
        history = _with_histories(gift).sender_counts
        return ", ".join(f"{count} {status}" for status, count in sorted(history.items())) or "-"

    @admin.display(description="recipient's gifts")
    def recipient_history(self, gift) -> str:
        history = _with_histories(gift).recipient_counts
        senders = history["senders"]
        return format_html(
            '{} from {} sender{} · <a href="{}">list them</a>',
            gifts(history["gifts"]),
            senders,
            pluralize(senders),
            _same_recipient_url(gift),
        )

    @admin.display(description="decision")
    def decision(self, gift) -> str:
        outcome = outcome_of(gift)
        return outcome.decision if outcome else "-"

    @admin.display(description="by")
    def decided_by(self, gift) -> str:
        outcome = outcome_of(gift)
        return outcome.by if outcome else "-"

    @admin.display(description="when", ordering=DECIDED_AT)
    def decided_at(self, gift) -> str:
        outcome = outcome_of(gift)
        return _when(outcome.at) if outcome else "-"

    @admin.display(description="reason")
    def reason(self, gift) -> str:
        outcome = outcome_of(gift)
        return outcome.reason if outcome else "-"

    # --- Actions ---------------------------------------------------------------------------------------

    def _review_each(self, request: HttpRequest, queryset: QuerySet, review, verb: str) -> None:
        done = 0
        for gift in queryset:
            try:
                review(gift)
                done += 1
            except ReviewError as exc:
                self.message_user(request, f"Gift {gift.id}: {exc}", messages.ERROR)
        if done:
            self.message_user(request, f"{verb} {gifts(done)}.", messages.SUCCESS)

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
        selected = list(queryset)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Reject {gifts(len(selected))}",
            "gifts": [
                (gift, pseudonymous_recipient(email=gift.recipient_email, wallet=gift.recipient_wallet))
                for gift in selected
            ],
            "form": form,
            "opts": self.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/gifting/reject_gifts.html", context)
