"""Every write to API tokens: issue one at login, revoke one, revoke all of a user's.

knox creates the token and stores only its digest; the token itself exists
once, in the return value handed to the client.
"""

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from knox.models import AuthToken
from knox.settings import knox_settings

from accounts.models import ApiToken


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime


def api_token_create(*, user: AbstractBaseUser) -> IssuedToken:
    """A new token for `user`, expiring after API_TOKEN_TTL; the user's oldest live tokens go beyond the limit.

    Expired tokens of the user are deleted on the way. The limit evicts rather than
    refuses (knox's own login view answers 403): a client that forgot to log out
    must not lock its user out for a whole TTL.
    """
    with transaction.atomic():
        tokens = ApiToken.objects.filter(user=user)
        tokens.filter(expiry__lt=timezone.now()).delete()
        newest_first = tokens.order_by("-created", "digest").values_list("digest", flat=True)
        tokens.filter(digest__in=list(newest_first[knox_settings.TOKEN_LIMIT_PER_USER - 1 :])).delete()
        instance, token = ApiToken.objects.create(user=user)
    return IssuedToken(token=token, expires_at=instance.expiry)


def api_login(*, request: HttpRequest, user: AbstractBaseUser) -> IssuedToken:
    """Getting a token is logging in: axes forgets the client's failures and logs the access, Django sets last_login."""
    issued = api_token_create(user=user)
    user_logged_in.send(sender=type(user), request=request, user=user)
    return issued


def api_token_revoke(*, request: HttpRequest, token: AuthToken) -> None:
    """Log out: the token used for this request stops working."""
    token.delete()
    user_logged_out.send(sender=type(token.user), request=request, user=token.user)


def api_token_revoke_all(*, request: HttpRequest, user: AbstractBaseUser) -> int:
    """Log out everywhere: every token of `user` stops working. Returns how many there were."""
    revoked, _ = ApiToken.objects.filter(user=user).delete()
    user_logged_out.send(sender=type(user), request=request, user=user)
    return revoked
