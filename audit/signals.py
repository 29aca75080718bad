"""Django's login signals, for the admin site, into the audit log. The receivers only call the service."""

from django.contrib.auth import user_logged_in, user_logged_out, user_login_failed
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest
from django.urls import reverse
from django_otp.forms import otp_verification_failed

from audit.models import AuditKind
from audit.services import audit_record

ANONYMOUS = "anonymous"
USERNAME_MAX_LENGTH = 150


def is_admin_request(request: HttpRequest | None) -> bool:
    """Whether the request is the admin site's (the API's logins are not audit-logged here)."""
    return request is not None and request.path.startswith(reverse("admin:index"))


def attempted_username(request: HttpRequest | None, credentials: dict | None = None) -> str:
    """The username a login attempt named: what an attacker tried, kept to the field's length."""
    username = (credentials or {}).get("username") or (request.POST.get("username", "") if request else "")
    return str(username)[:USERNAME_MAX_LENGTH]


def admin_logged_in(sender, request: HttpRequest | None, user: AbstractBaseUser, **kwargs) -> None:
    if is_admin_request(request):
        audit_record(
            kind=AuditKind.ADMIN_LOGIN,
            actor=user,
            actor_label=user.get_username(),
            subject=user.get_username(),
            request=request,
            otp_verified=getattr(user, "otp_device", None) is not None,
        )


def admin_login_failed(sender, credentials: dict, request: HttpRequest | None = None, **kwargs) -> None:
    if is_admin_request(request):
        audit_record(
            kind=AuditKind.ADMIN_LOGIN_FAILED,
            actor_label=ANONYMOUS,
            subject=attempted_username(request, credentials),
            request=request,
            locked_out=bool(getattr(request, "axes_locked_out", False)),
        )


def admin_logged_out(sender, request: HttpRequest | None, user: AbstractBaseUser | None, **kwargs) -> None:
    if user is not None and is_admin_request(request):
        audit_record(
            kind=AuditKind.ADMIN_LOGOUT,
            actor=user,
            actor_label=user.get_username(),
            subject=user.get_username(),
            request=request,
        )


def admin_otp_failed(sender, user: AbstractBaseUser, **kwargs) -> None:
    """A right password with a wrong TOTP code (django-otp's OTP forms are the admin's only)."""
    audit_record(
        kind=AuditKind.ADMIN_OTP_FAILED, actor=user, actor_label=user.get_username(), subject=user.get_username()
    )


def connect() -> None:
    user_logged_in.connect(admin_logged_in, dispatch_uid="audit.admin_logged_in")
    user_login_failed.connect(admin_login_failed, dispatch_uid="audit.admin_login_failed")
    user_logged_out.connect(admin_logged_out, dispatch_uid="audit.admin_logged_out")
    otp_verification_failed.connect(admin_otp_failed, dispatch_uid="audit.admin_otp_failed")
