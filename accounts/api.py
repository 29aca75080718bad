"""The token API: log in for a token, log out (this token), log out everywhere (every token of the user)."""

from django.conf import settings
from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.serializers import TokenInputSerializer, TokenOutputSerializer
from accounts.services import api_login, api_token_revoke, api_token_revoke_all
from core.errors import ErrorCode
from core.openapi import (
    LIMITS_UNAVAILABLE,
    NOT_AUTHENTICATED,
    PAYLOAD_TOO_LARGE,
    RETRY_AFTER,
    UNSUPPORTED_MEDIA_TYPE,
    error_response,
    field_errors,
)
from core.parsers import SafeJSONParser
from core.ratelimit import enforce_rate_limit, raise_if_locked_out

INVALID_CREDENTIALS = "Unable to log in with provided credentials."


FIELD_ERRORS = field_errors(
    'Invalid input or wrong credentials, in DRF\'s field-error shape: `{"field": ["message"]}`; '
    "wrong credentials and malformed JSON under `non_field_errors`."
)


class TokenObtainApi(APIView):
    """POST {username, password} → {token, expires_at}; wrong credentials → 400; locked out by django-axes → 429."""

    authentication_classes = []
    permission_classes = []
    # JSON only: anyone may call this endpoint, so a form or a large upload is refused (415, or
    # 413) before it is read.
    parser_classes = [SafeJSONParser]

    @extend_schema(
        request=TokenInputSerializer,
        responses={
            200: TokenOutputSerializer,
            400: FIELD_ERRORS,
            413: PAYLOAD_TOO_LARGE,
            415: UNSUPPORTED_MEDIA_TYPE,
            428: error_response(
                "After failed logins from this address, or while it is flagged (abuse/): the body's `challenge` "
                "(ALTCHA: find n with SHA-256(salt + n) = challenge, n <= maxnumber) must be solved and sent as "
                "the base64 JSON payload {algorithm, challenge, number, salt, signature} in the "
                "`X-Challenge-Solution` header. A wrong, expired or used solution gets a new challenge.",
                ErrorCode.CHALLENGE_REQUIRED,
            ),
            429: error_response(
                "Too many requests from this address (rate_limited), too many failed logins (locked_out), "
                "or this client is blocked after suspicious activity (blocked).",
                ErrorCode.RATE_LIMITED,
                ErrorCode.LOCKED_OUT,
                ErrorCode.BLOCKED,
            ),
            503: LIMITS_UNAVAILABLE,
        },
        parameters=[
            RETRY_AFTER,
            OpenApiParameter(
                "X-Challenge-Solution",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="The solution of a 428's challenge: base64 JSON {algorithm, challenge, number, salt, "
                "signature}.",
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        enforce_rate_limit(request, group="auth-token:ip", key="ip", rate=settings.RATELIMIT_TOKEN_IP)
        serializer = TokenInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        # django-axes records failures from, and flags lockouts on, the request given to
        # authenticate(). Give it Django's HttpRequest, as it expects, not DRF's wrapper:
        # attributes set on the wrapper would not reach raise_if_locked_out or AxesMiddleware.
        user = authenticate(request._request, **serializer.validated_data)
        if user is None:
            raise_if_locked_out(request._request)
            raise ValidationError({"non_field_errors": [INVALID_CREDENTIALS]}, code="authorization")
        issued = api_login(request=request._request, user=user)
        return Response(TokenOutputSerializer(issued).data)


class LogoutApi(APIView):
    """POST with the token → 204; that token no longer works, the user's others still do."""

    @extend_schema(request=None, responses={204: None, 401: NOT_AUTHENTICATED})
    def post(self, request: Request) -> Response:
        api_token_revoke(request=request._request, token=request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LogoutAllApi(APIView):
    """POST with any token of the user → 204; every token of the user no longer works."""

    @extend_schema(request=None, responses={204: None, 401: NOT_AUTHENTICATED})
    def post(self, request: Request) -> Response:
        api_token_revoke_all(request=request._request, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
