"""Parsing and rendering the token API. Credentials are checked in the view, tokens made in services."""

from typing import Any

from rest_framework import serializers


class StrictCharField(serializers.CharField):
    """A JSON string and nothing else: DRF's CharField would read `123` as "123"."""

    default_error_messages = {"not_a_string": "Not a valid string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class TokenInputSerializer(serializers.Serializer):
    username = StrictCharField(label="Username", write_only=True)
    password = StrictCharField(
        label="Password", style={"input_type": "password"}, trim_whitespace=False, write_only=True
    )


class TokenOutputSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Send it as `Authorization: Token …`; shown once, stored only hashed.")
    expires_at = serializers.DateTimeField(help_text="When the token stops working (ISO 8601); log in again then.")
