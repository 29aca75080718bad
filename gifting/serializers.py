"""Parsing and rendering gifts for the API. No business logic here."""

from decimal import Decimal

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from gifting.models import GiftStatus
from gifting.selectors import gift_public_timeline
from gifting.wallets import normalize_wallet


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, instead of silently ignoring them."""

    def validate(self, attrs: dict) -> dict:
        unknown = sorted(set(self.initial_data) - set(self.fields)) if isinstance(self.initial_data, dict) else []
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return attrs


class GiftCreateInputSerializer(StrictSerializer):
    recipient_email = serializers.EmailField(required=False, max_length=254)
    recipient_wallet = serializers.CharField(
        required=False, help_text="An Ethereum address: 0x and 40 hex digits; if mixed-case, EIP-55 checksummed."
    )
    amount = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=Decimal("0.01"))
    currency = serializers.CharField(max_length=3)
    message = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")

    def validate_recipient_wallet(self, value: str) -> str:
        """Checked by format and EIP-55 checksum; stored in its checksummed form."""
        try:
            return normalize_wallet(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc

    def validate_currency(self, value: str) -> str:
        if value not in settings.GIFT_CURRENCIES:
            allowed = ", ".join(settings.GIFT_CURRENCIES)
            raise serializers.ValidationError(f"Unsupported currency; use one of: {allowed}.")
        return value

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        has_email, has_wallet = bool(attrs.get("recipient_email")), bool(attrs.get("recipient_wallet"))
        if has_email == has_wallet:
            raise serializers.ValidationError(
                {"non_field_errors": ["Give exactly one of recipient_email or recipient_wallet."]}
            )
        return attrs


class GiftEventOutputSerializer(serializers.Serializer):
    type = serializers.CharField()
    at = serializers.DateTimeField()
    details = serializers.DictField(required=False)


class GiftOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=GiftStatus.choices)
    amount = serializers.DecimalField(max_digits=12, decimal_places=2)
    currency = serializers.CharField()
    recipient = serializers.SerializerMethodField()
    message = serializers.CharField()
    created_at = serializers.DateTimeField()

    def get_recipient(self, gift) -> str:
        return gift.masked_recipient


class GiftDetailOutputSerializer(GiftOutputSerializer):
    attempts = serializers.IntegerField()
    last_error = serializers.SerializerMethodField()
    events = serializers.SerializerMethodField()

    @extend_schema_field(GiftEventOutputSerializer(many=True))
    def get_events(self, gift) -> list[dict]:
        return GiftEventOutputSerializer(gift_public_timeline(gift=gift), many=True).data

    def get_last_error(self, gift) -> str | None:
        return gift.last_error or None


class ErrorSerializer(serializers.Serializer):
    """Every error but a 400: a machine code and a human message."""

    code = serializers.CharField()
    detail = serializers.CharField()
