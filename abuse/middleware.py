"""Blocks, challenges and request-pattern analysis, around every request (inside the access log).

Before the view: a blocked client (IP, or user) gets `429 blocked` with Retry-After, except
the probes and /metrics, and staff signed in to the admin (operators are never locked out of
the tool that lifts blocks). After CSRF (process_view): the token endpoint and the admin
login demand a solved challenge when the client is flagged or failed to log in too often.
After the view: the request is counted into the rolling windows (abuse.patterns); a
completed pattern flags the client, a repeat while flagged blocks it.

The analysis fails open: if the cache is down the request is answered and a warning logged.
It is an extra layer over the rate limits and lockouts, which fail closed (503) and keep
protecting the logins; refusing every request because a second opinion is unavailable would
turn a Redis outage into a full outage.
"""

import json
import logging
import math
import time
from collections.abc import Callable

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django_otp.admin import OTPAdminSite
from redis.exceptions import RedisError
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.settings import api_settings

from abuse import challenge, patterns, services, windows
from abuse.models import SubjectKind
from abuse.signals import FAILED_LOGIN_ATTRIBUTE
from audit.admin_site import refused_page
from core.client_ip import client_ip
from core.crypto import recipient_index
from core.errors import ErrorCode
from core.exception_handler import HTTP_STATUS
from core.recipients import InvalidRecipient

logger = logging.getLogger(__name__)

EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
STATE_ATTRIBUTE = "abuse_state"
CHALLENGE_ATTRIBUTE = "abuse_challenge"  # the admin login template shows the widget when set
CHALLENGE_ERROR_ATTRIBUTE = "abuse_challenge_error"
FAILURE_COUNTED_ATTRIBUTE = "abuse_failure_counted"
OTP_LOGIN_TEMPLATE = "abuse/otp_login.html"
CACHE_ERRORS = (RedisError, OSError)


def _blocked_response(request: HttpRequest, until: float) -> HttpResponse:
    retry_after = max(1, math.ceil(until - time.time()))
    detail = f"Requests from this client are blocked after suspicious activity. Try again in {retry_after} seconds."
    if request.path.startswith(reverse("admin:index")):
        return refused_page(request, status=429, retry_after=retry_after, title="Blocked", message=detail).render()
    response = JsonResponse({"code": ErrorCode.BLOCKED, "detail": detail}, status=HTTP_STATUS[ErrorCode.BLOCKED])
    response["Retry-After"] = str(retry_after)
    return response


def _token_user_id(request: HttpRequest) -> int | None:
    """The user an API token names, as DRF will authenticate it (only asked while a user block may be in force)."""
    if "HTTP_AUTHORIZATION" not in request.META:
        return None
    drf_request = Request(request, authenticators=[auth() for auth in api_settings.DEFAULT_AUTHENTICATION_CLASSES])
    try:
        user = drf_request.user
    except APIException:  # a bad token: the view will answer 401 itself
        return None
    return user.pk if user is not None and user.is_authenticated else None


def _session_user(request: HttpRequest):
    user = getattr(request, "user", None)
    return user if user is not None and user.is_authenticated else None


class AbuseMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path in EXEMPT_PATHS:
            return self.get_response(request)
        ip = client_ip(request)
        refusal = self._refuse_blocked(request, ip)
        if refusal is not None:
            return refusal
        if request.method == "POST" and request.path == reverse("gift-list"):
            # Read the body now, while it can still be read twice: after the view, DRF has consumed
            # the stream, and the recipient's blind index is computed from it.
            try:
                request.body  # noqa: B018
            except RequestDataTooBig:  # refused before reading; the view answers 413 itself
                pass
        response = self.get_response(request)
        if settings.ABUSE_ANALYSIS_ENABLED:
            try:
                self._observe(request, response, ip)
            except CACHE_ERRORS as exc:
                logger.warning("request-pattern analysis unavailable, request not counted error=%s", type(exc).__name__)
        return response

    def _refuse_blocked(self, request: HttpRequest, ip: str) -> HttpResponse | None:
        try:
            state = services.ip_state(ip)
            setattr(request, STATE_ATTRIBUTE, state)
            until = state.blocked_until
            if until is None and state.user_blocks_possible:
                user_id = _token_user_id(request)
                until = services.user_blocked_until(user_id) if user_id is not None else None
        except CACHE_ERRORS as exc:
            logger.warning("block list unavailable, request let through error=%s", type(exc).__name__)
            return None
        if until is None:
            return None
        if request.path.startswith(reverse("admin:index")):
            user = _session_user(request)
            if user is not None and user.is_staff:
                return None
        return _blocked_response(request, until)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs) -> HttpResponse | None:
        """The challenge gate on the two public logins; runs after CSRF's own check."""
        is_token = request.path == reverse("api-token") and request.method == "POST"
        is_admin_login = request.path == reverse("admin:login")
        if not (is_token or is_admin_login):
            return None
        ip = client_ip(request)
        state = getattr(request, STATE_ATTRIBUTE, None)
        try:
            if not services.challenge_required(ip, flagged=state.flagged if state else None):
                return None
        except CACHE_ERRORS as exc:
            logger.warning("challenge state unavailable, login let through error=%s", type(exc).__name__)
            return None
        if is_token:
            verdict = challenge.check_solution(request.headers.get(challenge.HEADER))
            if verdict.accepted:
                return None
            code = ErrorCode.CHALLENGE_REQUIRED
            body = {"code": code, "detail": verdict.reason, "challenge": challenge.new_challenge()}
            return JsonResponse(body, status=HTTP_STATUS[ErrorCode.CHALLENGE_REQUIRED])
        if request.method == "POST":
            verdict = challenge.check_solution(request.POST.get(challenge.FORM_FIELD))
            if verdict.accepted:
                return None
            return self._admin_login_again(request, verdict.reason)
        setattr(request, CHALLENGE_ATTRIBUTE, challenge.new_challenge())
        return None

    def process_template_response(self, request: HttpRequest, response: TemplateResponse) -> TemplateResponse:
        """The admin's form after a failed login that makes the challenge required shows the widget at once."""
        if request.path != reverse("admin:login"):
            return response
        if getattr(request, FAILED_LOGIN_ATTRIBUTE, None) is not None:
            try:
                self._count_failure(request, client_ip(request))
                if not hasattr(request, CHALLENGE_ATTRIBUTE) and services.challenge_required(client_ip(request)):
                    setattr(request, CHALLENGE_ATTRIBUTE, challenge.new_challenge())
            except CACHE_ERRORS as exc:
                logger.warning("challenge state unavailable error=%s", type(exc).__name__)
        names = response.template_name if isinstance(response.template_name, list | tuple) else [response.template_name]
        if hasattr(request, CHALLENGE_ATTRIBUTE) and OTPAdminSite.login_template in names:
            response.template_name = OTP_LOGIN_TEMPLATE  # django-otp's page does not extend admin/login.html
        return response

    @staticmethod
    def _count_failure(request: HttpRequest, ip: str) -> None:
        """Count the request's failed login once, whichever hook sees it first."""
        if getattr(request, FAILURE_COUNTED_ATTRIBUTE, False):
            return
        setattr(request, FAILURE_COUNTED_ATTRIBUTE, True)
        services.login_failure_record(ip)

    def _admin_login_again(self, request: HttpRequest, reason: str) -> HttpResponse:
        """The admin's login form again, with the reason and a new challenge; nothing was authenticated."""
        setattr(request, CHALLENGE_ATTRIBUTE, challenge.new_challenge())
        setattr(request, CHALLENGE_ERROR_ATTRIBUTE, reason)
        site = admin.site
        form_class = site.login_form or AuthenticationForm
        context = {
            **site.each_context(request),
            "title": "Log in",
            "subtitle": None,
            "app_path": request.get_full_path(),
            "username": request.user.get_username() if hasattr(request, "user") else "",
            "form": form_class(request, initial={"username": request.POST.get("username", "")}),
            REDIRECT_FIELD_NAME: request.POST.get(REDIRECT_FIELD_NAME) or reverse("admin:index"),
        }
        template = OTP_LOGIN_TEMPLATE if site.login_template == OTPAdminSite.login_template else "admin/login.html"
        status = HTTP_STATUS[ErrorCode.CHALLENGE_REQUIRED]
        return TemplateResponse(request, template, context, status=status).render()

    def _observe(self, request: HttpRequest, response: HttpResponse, ip: str) -> None:
        user = _session_user(request)  # DRF sets the token's user on the Django request too
        match = getattr(request, "resolver_match", None)
        url_name = match.url_name if match is not None else None
        failed_username = getattr(request, FAILED_LOGIN_ATTRIBUTE, None)
        if failed_username is not None:
            self._count_failure(request, ip)
        observation = patterns.Observation(
            ip=ip,
            user_id=user.pk if user is not None else None,
            method=request.method,
            url_name=url_name,
            status=response.status_code,
            gift_id=match.kwargs.get("gift_id") if url_name == "gift-detail" else None,
            failed_username=failed_username,
            recipient_index=self._recipient_index(request, response) if url_name == "gift-list" else None,
        )
        for detection in patterns.analyse(observation):
            self._escalate(request, detection, user)

    @staticmethod
    def _recipient_index(request: HttpRequest, response: HttpResponse) -> str | None:
        """The blind index of the recipient a gift was accepted (202) or refused by a fraud rule (422) for."""
        if request.method != "POST" or response.status_code not in (202, 422):
            return None
        try:
            body = json.loads(request.body)
            return recipient_index(
                email=str(body.get("recipient_email") or ""), wallet=str(body.get("recipient_wallet") or "")
            )
        except (ValueError, AttributeError, InvalidRecipient):
            return None

    @staticmethod
    def _escalate(request: HttpRequest, detection: patterns.Detection, user) -> None:
        """First detection flags the client (and, for a user, the IP it logs in from); a repeat blocks it."""
        windows.forget(list(detection.windows), windows=detection.windows)
        actor = user if detection.subject_kind == SubjectKind.USER else None
        fields = {
            "pattern": detection.pattern,
            "reason": detection.reason,
            "request": request,
            "actor": actor,
        }
        if services.is_flagged(detection.subject_kind, detection.subject):
            services.client_block(kind=detection.subject_kind, subject=detection.subject, **fields)
            return
        services.client_flag(kind=detection.subject_kind, subject=detection.subject, **fields)
        ip = client_ip(request)
        if detection.subject_kind == SubjectKind.USER and not services.is_flagged(SubjectKind.IP, ip):
            services.client_flag(kind=SubjectKind.IP, subject=ip, **fields)
