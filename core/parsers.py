"""The API's JSON parser: DRF's own, made to refuse the bodies that would otherwise crash a view.

DRF's JSONParser lets a RecursionError from deeply nested JSON escape as a 500,
and returns strings holding lone surrogates (`"\\ud800"`), which no UTF-8 encoder
(the renderer, the database, encryption) can write, so an error message that
echoes one is a 500 too. Here both are malformed JSON: a 400 like any other
parse error. (The body's size is Django's to check: DRF reads JSON through
request.body, which refuses a Content-Length over DATA_UPLOAD_MAX_MEMORY_SIZE
before reading anything; core.exception_handler answers that with a 413.)
"""

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# No request body of this API nests anywhere near this deep; refusing more keeps
# every later walk over the data (validation, fingerprints, rendering) shallow.
MAX_DEPTH = 32
TOO_DEEP = f"JSON parse error - nested more than {MAX_DEPTH} levels deep."


def check_parsed(data: Any) -> None:
    """ParseError if `data` nests deeper than MAX_DEPTH or holds a string (or key) that is not valid Unicode.

    Iterative, so a deep value cannot exhaust the stack here either.
    """
    pending = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            _check_text(value)
            continue
        if not isinstance(value, dict | list):
            continue
        if depth > MAX_DEPTH:
            raise ParseError(TOO_DEEP)
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key)
                pending.append((item, depth + 1))
        else:
            pending.extend((item, depth + 1) for item in value)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ParseError("JSON parse error - strings must be valid Unicode (a lone surrogate escape?).") from exc


class SafeJSONParser(JSONParser):
    """JSONParser that answers 400 for JSON nested too deep or holding invalid Unicode."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError(TOO_DEEP) from exc
        check_parsed(data)
        return data
