"""What the schema (GET /api/schema/) says the API's operations answer: the pieces every app's views share.

Every status a view, its parser, its authentication or its rate limits can answer
is listed on the operation, so that a client (and tests/test_api_fuzz.py) can rely
on the schema.
"""

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from core.errors import ErrorCode


def error_response(description: str, *codes: ErrorCode) -> OpenApiResponse:
    """Every error but a 400: `{"code", "detail"}`, with the codes this status can carry."""
    schema = {
        "type": "object",
        "properties": {"code": {"type": "string", "enum": [str(code) for code in codes]}, "detail": {"type": "string"}},
        "required": ["code", "detail"],
    }
    return OpenApiResponse(schema, description=description)


def field_errors(description: str) -> OpenApiResponse:
    """A 400 in DRF's field-error shape: `{"field": ["message"]}`."""
    schema = {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}}
    return OpenApiResponse(schema, description=description)


NOT_AUTHENTICATED = error_response(
    "No valid `Authorization: Token …` header: missing, unknown, expired or revoked.", ErrorCode.NOT_AUTHENTICATED
)
PAYLOAD_TOO_LARGE = error_response(
    "The body is over DATA_UPLOAD_MAX_MEMORY_SIZE bytes; refused before it is read.", ErrorCode.PAYLOAD_TOO_LARGE
)
UNSUPPORTED_MEDIA_TYPE = error_response("The body must be application/json.", ErrorCode.UNSUPPORTED_MEDIA_TYPE)
LIMITS_UNAVAILABLE = error_response(
    "The shared cache that counts rate limits is down; try again after Retry-After seconds.",
    ErrorCode.SERVICE_UNAVAILABLE,
)
RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    int,
    OpenApiParameter.HEADER,
    response=[429, 503],
    description="Seconds to wait before trying again.",
)
