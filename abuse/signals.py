"""Failed logins (django.contrib.auth's user_login_failed) marked on the request, for the middleware to count.

The token endpoint and the admin login both call authenticate() with the request, so one
receiver sees both. It only marks the request: the middleware counts the failure and the
username (as a hash) in the same round trip as the rest of the request's analysis.
"""

from django.contrib.auth import user_login_failed
from django.http import HttpRequest

FAILED_LOGIN_ATTRIBUTE = "abuse_failed_login"
USERNAME_MAX_LENGTH = 150


def login_failed(sender, credentials: dict, request: HttpRequest | None = None, **kwargs) -> None:
    if request is not None:
        setattr(request, FAILED_LOGIN_ATTRIBUTE, str(credentials.get("username") or "")[:USERNAME_MAX_LENGTH])


def connect() -> None:
    user_login_failed.connect(login_failed, dispatch_uid="abuse.login_failed")
