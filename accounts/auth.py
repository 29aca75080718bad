"""The API's authentication: knox's token scheme (`Authorization: Token …`), refusing undecodable headers."""

from django.utils import timezone
from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from knox.signals import token_expired
from rest_framework import exceptions


class TokenAuthentication(KnoxTokenAuthentication):
    """knox's scheme; a token that is not UTF-8 is an invalid token (401), not a UnicodeDecodeError (500)."""

    def authenticate_credentials(self, token: bytes) -> tuple:
        try:
            token.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("Invalid token.") from exc
        return super().authenticate_credentials(token)

    def _cleanup_token(self, auth_token) -> bool:
        """Forget the presented token if it has expired (True: it is refused), as knox does.

        knox also reads every other token of the user on every request, to delete the expired ones:
        a query per request for housekeeping that api_token_create already does at each login.
        An expired token is refused (and deleted) when it is presented, whether or not it was swept.
        """
        if auth_token.expiry is not None and auth_token.expiry < timezone.now():
            username = auth_token.user.get_username()
            auth_token.delete()
            token_expired.send(sender=self.__class__, username=username, source="auth_token")
            return True
        return False


class TokenAuthenticationScheme(KnoxTokenScheme):
    """Documents the scheme in the OpenAPI schema as knox's own: an `Authorization` header with prefix `Token`."""

    target_class = TokenAuthentication
