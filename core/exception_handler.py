"""The API's one exception handler: every error in the contract's shapes, with its HTTP status.

A 400 for invalid input keeps DRF's field-error shape; every other error is
`{"code": "...", "detail": "..."}`. This is the one place that knows which
status answers which ErrorCode.
"""

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from core.errors import ApplicationError, ErrorCode

logger = logging.getLogger(__name__)

HTTP_STATUS = {
    ErrorCode.NOT_AUTHENTICATED: status.HTTP_401_UNAUTHORIZED,
    ErrorCode.PERMISSION_DENIED: status.HTTP_403_FORBIDDEN,
    ErrorCode.NOT_FOUND: status.HTTP_404_NOT_FOUND,
    ErrorCode.METHOD_NOT_ALLOWED: status.HTTP_405_METHOD_NOT_ALLOWED,
    ErrorCode.NOT_ACCEPTABLE: status.HTTP_406_NOT_ACCEPTABLE,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
    ErrorCode.PAYLOAD_TOO_LARGE: status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    ErrorCode.IDEMPOTENCY_KEY_IN_USE: status.HTTP_409_CONFLICT,
    ErrorCode.IDEMPOTENCY_KEY_REUSED: status.HTTP_422_UNPROCESSABLE_ENTITY,
    ErrorCode.AMOUNT_LIMIT: status.HTTP_422_UNPROCESSABLE_ENTITY,
    ErrorCode.DAILY_QUOTA: status.HTTP_422_UNPROCESSABLE_ENTITY,
    ErrorCode.WEEKLY_QUOTA: status.HTTP_422_UNPROCESSABLE_ENTITY,
    ErrorCode.RATE_LIMITED: status.HTTP_429_TOO_MANY_REQUESTS,
    ErrorCode.LOCKED_OUT: status.HTTP_429_TOO_MANY_REQUESTS,
    ErrorCode.CHALLENGE_REQUIRED: status.HTTP_428_PRECONDITION_REQUIRED,
    ErrorCode.BLOCKED: status.HTTP_429_TOO_MANY_REQUESTS,
    ErrorCode.SERVICE_UNAVAILABLE: status.HTTP_503_SERVICE_UNAVAILABLE,
    ErrorCode.ERROR: status.HTTP_500_INTERNAL_SERVER_ERROR,
}

# DRF's own exceptions, by the code the API answers them with.
_DRF_CODES = {
    exceptions.NotAuthenticated: ErrorCode.NOT_AUTHENTICATED,
    exceptions.AuthenticationFailed: ErrorCode.NOT_AUTHENTICATED,
    exceptions.NotFound: ErrorCode.NOT_FOUND,
    exceptions.PermissionDenied: ErrorCode.PERMISSION_DENIED,
    exceptions.MethodNotAllowed: ErrorCode.METHOD_NOT_ALLOWED,
    exceptions.NotAcceptable: ErrorCode.NOT_ACCEPTABLE,
    exceptions.UnsupportedMediaType: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    exceptions.Throttled: ErrorCode.RATE_LIMITED,
}


def error_response(exc: ApplicationError) -> Response:
    """The response for an application error: its code, detail, status and Retry-After."""
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
    return Response({"code": exc.code, "detail": exc.detail}, status=HTTP_STATUS[exc.code], headers=headers)


DATABASE_RETRY_AFTER_SECONDS = 5


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, ApplicationError):
        return error_response(exc)
    if isinstance(exc, OperationalError | InterfaceError):
        # The database went away mid-request (a failover, killed connections). Nothing was committed,
        # so the client may retry, with the same Idempotency-Key: a 503, not a 500.
        logger.error("database unavailable during a request error=%s", type(exc).__name__)
        return error_response(
            ApplicationError(
                code=ErrorCode.SERVICE_UNAVAILABLE,
                detail="We cannot take this request right now. Try again shortly.",
                retry_after=DATABASE_RETRY_AFTER_SECONDS,
            )
        )
    if isinstance(exc, RequestDataTooBig):
        # Django refuses a body whose Content-Length is over DATA_UPLOAD_MAX_MEMORY_SIZE, before
        # reading it, when DRF asks for request.body; left to Django it would be an HTML 400.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return error_response(
            ApplicationError(code=ErrorCode.PAYLOAD_TOO_LARGE, detail=f"The request body is over {limit} bytes.")
        )
    if isinstance(exc, exceptions.ParseError):
        # Malformed JSON is invalid input: a field-error shaped 400.
        return Response({"non_field_errors": [str(exc.detail)]}, status=status.HTTP_400_BAD_REQUEST)
    response = exception_handler(exc, context)
    if response is None or isinstance(exc, exceptions.ValidationError):
        return response
    code = next((c for kind, c in _DRF_CODES.items() if isinstance(exc, kind)), ErrorCode.ERROR)
    detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
    response.data = {"code": code, "detail": str(detail)}
    return response
