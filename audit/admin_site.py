"""The admin site, hardened: its login is rate-limited per client IP, lockouts answer 429 with
Retry-After, a TOTP code can be required (ADMIN_REQUIRE_OTP), and every refusal is audit-logged.

HardenedAdminSite is `admin.site` (audit.admin_config), so every app's admin
registers on it as usual. The rate limit counts login POSTs (credentials tried)
from one client IP, like the API's token endpoint, and runs before django-axes
looks at the username, so it also slows an attacker who tries many usernames.
"""

from django.conf import settings
from django.contrib import admin
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django_otp.admin import OTPAdminAuthenticationForm, OTPAdminSite

from audit.models import AuditKind
from audit.services import audit_record
from audit.signals import ANONYMOUS, attempted_username, is_admin_request
from core.errors import ErrorCode
from core.ratelimit import LimitsUnavailable, RateLimited, cool_off_seconds, enforce_rate_limit

REFUSED_TEMPLATE = "admin/login_refused.html"


def refused_page(
    request: HttpRequest, *, status: int, retry_after: int | None, title: str, message: str
) -> TemplateResponse:
    """The admin's page for a login it will not try now, with Retry-After when waiting helps."""
    context = {**admin.site.each_context(request), "title": title, "message": message}
    response = TemplateResponse(request, REFUSED_TEMPLATE, context, status=status)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


def axes_lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict | None = None
) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: the admin's lockout as a page with Retry-After, audit-logged.

    Elsewhere (the API answers its own lockouts and takes axes's flag down
    first, so this is a fallback) the API's JSON shape.
    """
    retry_after = cool_off_seconds(request)
    if not is_admin_request(request):
        body = {"code": ErrorCode.LOCKED_OUT, "detail": "Too many failed login attempts. Try again later."}
        response = JsonResponse(body, status=429)
        if retry_after is not None:
            response["Retry-After"] = str(retry_after)
        return response
    audit_record(
        kind=AuditKind.ADMIN_LOGIN_LOCKED_OUT,
        actor_label=ANONYMOUS,
        subject=attempted_username(request, credentials),
        request=request,
        retry_after=retry_after,
    )
    return refused_page(
        request,
        status=429,
        retry_after=retry_after,
        title="Account locked",
        message="Too many failed login attempts for this account from your address. Try again later.",
    ).render()


class HardenedAdminSite(admin.AdminSite):
    @property
    def login_form(self):
        # None: Django's own AdminAuthenticationForm.
        return OTPAdminAuthenticationForm if settings.ADMIN_REQUIRE_OTP else None

    @property
    def login_template(self):
        return OTPAdminSite.login_template if settings.ADMIN_REQUIRE_OTP else None

    def has_permission(self, request: HttpRequest) -> bool:
        """Active staff, and with ADMIN_REQUIRE_OTP a session verified by a TOTP code (django-otp)."""
        if not super().has_permission(request):
            return False
        if not settings.ADMIN_REQUIRE_OTP:
            return True
        is_verified = getattr(request.user, "is_verified", None)  # set by django-otp's middleware
        return bool(is_verified and is_verified())

    @method_decorator(never_cache)
    @login_not_required
    def login(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        if request.method == "POST":
            try:
                enforce_rate_limit(request, group="admin-login:ip", key="ip", rate=settings.RATELIMIT_ADMIN_LOGIN_IP)
            except RateLimited as exc:
                if exc.first_in_window:
                    audit_record(
                        kind=AuditKind.ADMIN_LOGIN_RATE_LIMITED,
                        actor_label=ANONYMOUS,
                        subject=attempted_username(request),
                        request=request,
                        retry_after=exc.retry_after,
                    )
                return refused_page(
                    request,
                    status=429,
                    retry_after=exc.retry_after,
                    title="Too many login attempts",
                    message=f"Too many login attempts from your address. Try again in {exc.retry_after} seconds.",
                )
            except LimitsUnavailable as exc:
                return refused_page(
                    request,
                    status=503,
                    retry_after=exc.retry_after,
                    title="Login unavailable",
                    message="We cannot take logins right now. Try again shortly.",
                )
        return super().login(request, extra_context)
