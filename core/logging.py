"""Log records as one JSON object per line, with their context as searchable fields; secrets redacted.

Every record carries time, level, logger, message and request id; records
that pass `extra={...}` (the `[MONITOR]`, `[METRICS]` and `[ALERT]` records
carry `marker`, gift_id, task_id, attempt, receive_count …) get those as
fields too, so a log search can filter on `marker = "ALERT"` instead of
matching text. Callers pass only masked or non-personal values.

No secret reaches a log line: `redact_secrets` is the one place that knows
what a secret looks like in text (SECRET_PATTERNS), and `RedactSecretsFilter`
applies it to whole records. config/settings.py puts that filter on every
handler of LOGGING and routes Django's own loggers (`django.request`'s "Not
Found: /gifts/verify/…", runserver's `django.server`) through them; the access
log redacts its path itself too. core/tracing.py runs span names and
attributes through `redact_secrets` before export.
"""

import logging
import re

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s"
RENAMED = {"asctime": "time", "levelname": "level", "name": "logger"}

MONITOR = "MONITOR"
METRICS = "METRICS"
ALERT = "ALERT"

REDACTED = "[redacted]"

# What a secret looks like in a log line, and the text kept before it.
SECRET_PATTERNS = (
    # A recipient-confirmation link carries its token in the path (config/urls.py, "verify-recipient";
    # tests/core/test_log_redaction.py checks this pattern against the route).
    re.compile(r"(/gifts/verify/)[^/?#\s'\"]+"),
    # An Authorization header's credentials: `Token …` (API tokens), `Bearer …` (METRICS_TOKEN), `Basic …`.
    re.compile(r"(\b(?:Token|Bearer|Basic) )[A-Za-z0-9._~+/=-]{16,}"),
    # A named secret, as a query parameter, a keyword or a JSON field: token=…, "password": "…".
    re.compile(r"""(\b(?:token|password|secret)["']?\s*[:=]\s*["']?)[^\s"'&,;}]+""", re.IGNORECASE),
)

# Every attribute a plain LogRecord has; any other one was added by `extra=` (or by a filter).
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def redact_secrets(text: str) -> str:
    """`text` with every secret SECRET_PATTERNS knows replaced by [redacted]."""
    for pattern in SECRET_PATTERNS:
        text = pattern.sub(rf"\g<1>{REDACTED}", text)
    return text


class RedactSecretsFilter(logging.Filter):
    """Redacts a record in place before its handler formats it: message, `extra` fields, traceback.

    The message is checked as formatted (msg % args), so a secret passed as an argument is
    caught. An `extra` value is checked as the text a formatter would print: django.request
    passes the HttpRequest, which the JSON formatter prints with its path. Records without a
    secret are left exactly as they were.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if (redacted := redact_secrets(message)) != message:
            record.msg, record.args = redacted, None
        for name, value in vars(record).copy().items():
            if name in _RECORD_ATTRIBUTES or isinstance(value, bool | int | float | type(None)):
                continue
            text = value if isinstance(value, str) else str(value)
            if (redacted := redact_secrets(text)) != text:
                setattr(record, name, redacted)
        if record.exc_info:
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            if (redacted := redact_secrets(text)) != text:
                # The JSON formatter prints exc_info whenever it is set: keep the redacted text only.
                record.exc_info, record.exc_text = None, redacted
        if record.stack_info:
            record.stack_info = redact_secrets(record.stack_info)
        return True


class JsonFormatter(_JsonFormatter):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(FIELDS, rename_fields=RENAMED, json_ensure_ascii=False, **kwargs)
