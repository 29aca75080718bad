"""One application error type and one enum of machine codes; no HTTP here.

Domain code raises ApplicationError with a code; the API layer
(core.exception_handler) turns the code into an HTTP status. A code is never
a free string typed twice: every one the API can answer is listed here.
"""

from enum import StrEnum


class ErrorCode(StrEnum):
    NOT_AUTHENTICATED = "not_authenticated"
    PERMISSION_DENIED = "permission_denied"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_ACCEPTABLE = "not_acceptable"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    IDEMPOTENCY_KEY_IN_USE = "idempotency_key_in_use"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    AMOUNT_LIMIT = "amount_limit"
    DAILY_QUOTA = "daily_quota"
    WEEKLY_QUOTA = "weekly_quota"
    RATE_LIMITED = "rate_limited"
    LOCKED_OUT = "locked_out"
    CHALLENGE_REQUIRED = "challenge_required"
    BLOCKED = "blocked"
    SERVICE_UNAVAILABLE = "service_unavailable"
    ERROR = "error"


class ApplicationError(Exception):
    """An error with a machine code, a human message and, when waiting helps, the seconds to wait."""

    def __init__(self, *, code: ErrorCode, detail: str, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.retry_after = retry_after
