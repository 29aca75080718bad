"""Parsing and rendering the token API. Credentials are checked in the view, tokens made in services."""

from rest_framework import serializers

from core.serializer_fields import StrictCharField


class TokenInputSerializer(serializers.Serializer):
    username = StrictCharField(label="Username", write_only=True)
    password = StrictCharField(
        label="Password", style={"input_type": "password"}, trim_whitespace=False, write_only=True
    )


class TokenOutputSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Send it as `Authorization: Token …`; shown once, stored only hashed.")
    expires_at = serializers.DateTimeField(help_text="When the token stops working (ISO 8601); log in again then.")
