"""Property-based tests (hypothesis): amount and currency parsing, voucher codes, Idempotency-Key handling."""

import json
import os
import random
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from gifting.idempotency import MAX_KEY_LENGTH, fingerprint, validate_key
from gifting.serializers import GiftCreateInputSerializer
from vouchers.codes import ALPHABET, generate_code

# Hypothesis keeps caches in ./.hypothesis unless told otherwise; keep them under var/ with the other local state.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(Path(__file__).resolve().parents[1] / "var" / "hypothesis"))
# database=None: no example database kept; a failure prints its own reproduction.
PROPERTY = hypothesis_settings(database=None, max_examples=100, deadline=None)
VALID = {"recipient_email": "recipient@example.com", "amount": "25.00", "currency": "EUR"}
# ASCII digits, at most 2 decimals, at most 10 before the point (DecimalField(max_digits=12, decimal_places=2)).
VALID_AMOUNT = re.compile(r"(?P<whole>[0-9]+)(\.[0-9]{1,2})?")
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=8,
)
PRINTABLE_ASCII = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


def parse(**change: Any) -> GiftCreateInputSerializer:
    serializer = GiftCreateInputSerializer(data={**VALID, **change})
    serializer.is_valid()
    return serializer


def is_valid_amount(text: str) -> bool:
    """The contract's amount: ASCII digits with at most 2 decimals, > 0, within max_digits (leading zeros free)."""
    match = VALID_AMOUNT.fullmatch(text)
    return bool(match) and len(match["whole"].lstrip("0")) <= 10 and Decimal(text) > 0


# --- amount and currency ----------------------------------------------------------------------


@PROPERTY
@given(
    whole=st.text(alphabet="0123456789", min_size=1, max_size=10),
    places=st.text(alphabet="0123456789", max_size=2),
    leading_zeros=st.integers(0, 3),
)
def test_a_positive_decimal_string_with_at_most_2_places_is_accepted_and_round_trips(whole, places, leading_zeros):
    text = "0" * leading_zeros + whole + (f".{places}" if places else "")
    if Decimal(text) == 0:
        return
    serializer = parse(amount=text)
    assert serializer.errors == {}
    amount = serializer.validated_data["amount"]
    assert amount == Decimal(text)
    assert serializer.fields["amount"].to_representation(amount) == f"{Decimal(text):.2f}"


@PROPERTY
@given(st.text())
def test_any_other_amount_string_is_a_field_error(text):
    if is_valid_amount(text):
        return
    serializer = parse(amount=text)
    assert list(serializer.errors) == ["amount"]
    assert all(isinstance(message, str) for message in serializer.errors["amount"])


@PROPERTY
@given(st.none() | st.booleans() | st.lists(JSON_SCALARS) | st.dictionaries(st.text(), JSON_SCALARS))
def test_an_amount_that_is_not_a_string_or_a_number_is_a_field_error(value):
    assert list(parse(amount=value).errors) == ["amount"]


@PROPERTY
@given(st.sampled_from(settings.GIFT_CURRENCIES))
def test_every_configured_currency_is_accepted(currency):
    serializer = parse(currency=currency)
    assert serializer.errors == {}
    assert serializer.validated_data["currency"] == currency


@PROPERTY
@given(JSON_VALUES.filter(lambda value: value not in settings.GIFT_CURRENCIES))
def test_any_other_currency_value_is_a_field_error(value):
    assert list(parse(currency=value).errors) == ["currency"]


@PROPERTY
@given(JSON_VALUES.filter(lambda value: not isinstance(value, str)))
def test_a_message_that_is_not_a_string_is_a_field_error(value):
    assert list(parse(message=value).errors) == ["message"]


# --- voucher codes ----------------------------------------------------------------------------

CODE = re.compile(rf"[{ALPHABET}]{{4}}(-[{ALPHABET}]{{4}}){{4}}")


def test_the_alphabet_has_no_look_alikes():
    assert set(ALPHABET).isdisjoint("01OILUV")
    assert len(set(ALPHABET)) == len(ALPHABET)


def test_codes_have_the_format_and_alphabet_and_do_not_repeat():
    codes = [generate_code() for _ in range(5000)]
    assert all(CODE.fullmatch(code) for code in codes)
    assert len(set(codes)) == len(codes)
    # Every symbol turns up: the codes use the whole alphabet, not a part of it.
    assert set("".join(codes).replace("-", "")) == set(ALPHABET)


# --- Idempotency-Key ----------------------------------------------------------------------------


@PROPERTY
@given(st.text(alphabet=PRINTABLE_ASCII, min_size=1, max_size=MAX_KEY_LENGTH))
def test_a_key_of_1_to_255_printable_ascii_characters_is_accepted_as_is(key):
    assert validate_key(key) == key


@PROPERTY
@given(st.text(max_size=MAX_KEY_LENGTH + 10) | st.text(alphabet=PRINTABLE_ASCII, min_size=MAX_KEY_LENGTH + 1))
def test_any_other_key_is_refused_with_a_value_error(key):
    if 1 <= len(key) <= MAX_KEY_LENGTH and all(" " <= char <= "~" for char in key):
        return
    with pytest.raises(ValueError):
        validate_key(key)


@pytest.mark.parametrize("key", [None, ""])
def test_a_missing_key_is_refused(key):
    with pytest.raises(ValueError):
        validate_key(key)


def reordered(value: Any, rng: random.Random) -> Any:
    """The same JSON value with the keys of every object in another order."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {key: reordered(item, rng) for key, item in items}
    if isinstance(value, list):
        return [reordered(item, rng) for item in value]
    return value


@PROPERTY
@given(st.dictionaries(st.text(), JSON_VALUES, max_size=6), st.randoms(use_true_random=False))
def test_json_equivalent_bodies_have_the_same_fingerprint(body, rng):
    shuffled = reordered(body, rng)
    spaced = json.loads(json.dumps(shuffled, indent=2))
    assert fingerprint(shuffled) == fingerprint(body) == fingerprint(spaced)


@PROPERTY
@given(st.dictionaries(st.text(), JSON_SCALARS, min_size=1, max_size=6), st.data())
def test_a_changed_value_changes_the_fingerprint(body, data):
    key = data.draw(st.sampled_from(sorted(body)))
    changed = {**body, key: [body[key]]}
    assert fingerprint(changed) != fingerprint(body)
