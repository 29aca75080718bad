"""The API's authentication: knox's token scheme (`Authorization: Token …`), refusing undecodable headers."""

from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from rest_framework import exceptions


class TokenAuthentication(KnoxTokenAuthentication):
    """knox's scheme; a token that is not UTF-8 is an invalid token (401), not a UnicodeDecodeError (500)."""

    def authenticate_credentials(self, token: bytes) -> tuple:
        try:
            token.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("Invalid token.") from exc
        return super().authenticate_credentials(token)


class TokenAuthenticationScheme(KnoxTokenScheme):
    """Documents the scheme in the OpenAPI schema as knox's own: an `Authorization` header with prefix `Token`."""

    target_class = TokenAuthentication
