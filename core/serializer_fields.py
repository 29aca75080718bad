"""Serializer fields every app's API parses with: JSON strings that are strings."""

from typing import Any

from rest_framework import serializers


def json_kind(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words, for error messages."""
    if isinstance(value, bool):  # before int: True is an int in Python
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else f"a {type(value).__name__}"


class StringOnlyMixin:
    """Refuses JSON values that are not strings, where DRF would turn `0` or `1.5` into "0" or "1.5".

    The contract says these fields are strings; accepting a number would make
    `{"message": 0}` and `{"message": "0"}` the same gift, and the schema a lie.
    """

    default_error_messages = {"not_a_string": "Expected a JSON string, not {kind}."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string", kind=json_kind(data))
        return super().to_internal_value(data)


class StrictCharField(StringOnlyMixin, serializers.CharField):
    pass
