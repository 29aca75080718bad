"""Parsing and rendering gifts for the API. No business logic here."""

import re
from decimal import Decimal
from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiSerializerExtension, OpenApiSerializerFieldExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.recipients import InvalidRecipient, canonical_email
from core.serializer_fields import StrictCharField, StringOnlyMixin, json_kind
from gifting.models import GiftStatus
from gifting.selectors import gift_public_timeline
from gifting.wallets import normalize_wallet


class StrictEmailField(StringOnlyMixin, serializers.EmailField):
    pass


class RecipientEmailField(StrictEmailField):
    """Django's EmailValidator, then what core.recipients refuses: dotless and IP-address hosts, look-alike domains.

    The address is kept as typed (delivery goes to it); only rules and history use its canonical form.
    """

    def run_validators(self, value: str) -> None:
        super().run_validators(value)  # EmailValidator first: a malformed address gets its message alone
        try:
            canonical_email(value)
        except InvalidRecipient as exc:
            raise serializers.ValidationError(str(exc)) from exc


class CurrencyField(StrictCharField):
    """An ISO 4217 code from settings.GIFT_CURRENCIES, read when validating (and documenting), not at import."""

    default_error_messages = {"unsupported": "Unsupported currency; use one of: {allowed}."}

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if value not in settings.GIFT_CURRENCIES:
            self.fail("unsupported", allowed=", ".join(settings.GIFT_CURRENCIES))
        return value


class CurrencyFieldSchema(OpenApiSerializerFieldExtension):
    """Documents CurrencyField as an enum of the currencies this deployment accepts."""

    target_class = CurrencyField

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict:
        return {"type": "string", "enum": list(settings.GIFT_CURRENCIES)}


# What the schema tells a client to send: > 0, at most 10 digits before the point and 2 after.
AMOUNT_PATTERN = r"^(0\.(0[1-9]|[1-9][0-9]?)|[1-9][0-9]{0,9}(\.[0-9]{1,2})?)$"
# What AmountField reads as a decimal string: ASCII digits only (re's [0-9] is ASCII, unlike \d),
# an optional minus (so "-5" gets DRF's "greater than" message), at most one point with digits on
# both sides. DRF then checks the sign, digits and places.
_DECIMAL_STRING = re.compile(r"-?[0-9]+(\.[0-9]+)?")


@extend_schema_field({"type": "string", "format": "decimal", "pattern": AMOUNT_PATTERN, "example": "25.00"})
class AmountField(serializers.DecimalField):
    """DRF's DecimalField, reading strings only in plain decimal notation.

    Python's Decimal would also read " 5", "5 ", "+5", "1e3", "1_000", "NaN", full-width digits
    or Arabic-Indic digits as numbers; none of them is the contract's decimal string. JSON
    numbers are still accepted, as they always were (tested: 25 → "25.00"); booleans,
    arrays and objects are not amounts.
    """

    default_error_messages = {
        "not_decimal_string": 'Enter the amount as a decimal string of ASCII digits, e.g. "25.00": '
        "no spaces, signs, exponents, separators or other digits.",
        "wrong_type": 'Enter the amount as a decimal string, e.g. "25.00", not {kind}.',
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_digits=12, decimal_places=2, min_value=Decimal("0.01"), **kwargs)

    def to_internal_value(self, data: Any) -> Decimal:
        if isinstance(data, bool) or not isinstance(data, str | int | float):
            self.fail("wrong_type", kind=json_kind(data))
        if isinstance(data, str) and not _DECIMAL_STRING.fullmatch(data):
            self.fail("not_decimal_string")
        return super().to_internal_value(data)


@extend_schema_field({"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$"})
class WalletField(StrictCharField):
    pass


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, instead of silently ignoring them."""

    def validate(self, attrs: dict) -> dict:
        unknown = sorted(set(self.initial_data) - set(self.fields)) if isinstance(self.initial_data, dict) else []
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return attrs


class GiftCreateInputSerializer(StrictSerializer):
    """A gift to create: exactly one of recipient_email or recipient_wallet; unknown fields are refused."""

    recipient_email = RecipientEmailField(required=False, max_length=254)
    recipient_wallet = WalletField(
        required=False, help_text="An Ethereum address: 0x and 40 hex digits; if mixed-case, EIP-55 checksummed."
    )
    amount = AmountField(help_text='A decimal string, e.g. "25.00".')
    currency = CurrencyField()
    message = StrictCharField(required=False, allow_blank=True, max_length=500, default="")

    def validate_recipient_wallet(self, value: str) -> str:
        """Checked by format and EIP-55 checksum; stored in its checksummed form."""
        try:
            return normalize_wallet(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        has_email, has_wallet = bool(attrs.get("recipient_email")), bool(attrs.get("recipient_wallet"))
        if has_email == has_wallet:
            raise serializers.ValidationError(
                {"non_field_errors": ["Give exactly one of recipient_email or recipient_wallet."]}
            )
        return attrs


class GiftCreateInputSchema(OpenApiSerializerExtension):
    """Documents what validate() checks: exactly one recipient, and no fields but these."""

    target_class = GiftCreateInputSerializer

    def map_serializer(self, auto_schema: Any, direction: str) -> dict:
        schema = auto_schema._map_basic_serializer(self.target, direction)
        return {
            **schema,
            "additionalProperties": False,
            "oneOf": [{"required": ["recipient_email"]}, {"required": ["recipient_wallet"]}],
        }


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
