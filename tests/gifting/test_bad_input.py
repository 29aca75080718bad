"""Hostile or odd bodies get the contract's 4xx answers, never a 500; the schema says what the API answers."""

import pytest
from django.conf import settings as django_settings

from core.parsers import MAX_DEPTH
from gifting.models import Gift, IdempotencyKey

GIFTS = "/api/v1/gifts/"
TOKEN = "/api/v1/auth/token/"
SCHEMA = "/api/schema/?format=json"
VALID = {"recipient_email": "recipient@example.com", "amount": "25.00", "currency": "EUR"}
DEEP = {
    "arrays": "[" * 1000 + "]" * 1000,
    "objects": '{"a":' * 1000 + "1" + "}" * 1000,
    # Shallow enough for Python's parser, too deep for the API: refused all the same.
    "past-the-limit": '{"message": ' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}",
}
# Raw JSON text: the escape \ud800 is a lone surrogate, which no UTF-8 encoder can write back.
SURROGATES = {
    "in-an-unknown-field-name": r'{"recipient_email": "a@example.com", "amount": "5", "currency": "EUR", "x\ud800": 1}',
    "in-a-value": r'{"recipient_email": "a@example.com", "amount": "5", "currency": "EUR", "message": "hi \udfff"}',
    "as-a-pair-reversed": r'{"recipient_email": "a@example.com", "amount": "5", "currency": "EUR", "m\udc00\ud800": 1}',
}


@pytest.fixture
def post_raw(api_client, auth_client):
    """POST raw bytes to an endpoint: the token endpoint without a login, gifts signed in with a key."""

    def post(path: str, body: str | bytes, content_type: str = "application/json", **extra):
        if path == GIFTS:
            return auth_client.post(path, body, content_type=content_type, HTTP_IDEMPOTENCY_KEY="key-1", **extra)
        return api_client.post(path, body, content_type=content_type, **extra)

    return post


def assert_field_error_400(response) -> None:
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert list(body) == ["non_field_errors"]
    assert all(isinstance(message, str) for message in body["non_field_errors"])


def assert_nothing_stored() -> None:
    assert not Gift.objects.exists()
    assert not IdempotencyKey.objects.exists()


# --- Deeply nested JSON -------------------------------------------------------------------------


@pytest.mark.parametrize("path", [TOKEN, GIFTS])
@pytest.mark.parametrize("body", DEEP.values(), ids=DEEP.keys())
def test_deeply_nested_json_is_a_400(post_raw, path, body):
    assert_field_error_400(post_raw(path, body))
    assert_nothing_stored()


def test_json_within_the_depth_limit_is_parsed_and_validated(auth_client):
    response = auth_client.post(GIFTS, {**VALID, "message": [["nested"]]}, format="json", HTTP_IDEMPOTENCY_KEY="key-1")
    assert response.status_code == 400
    assert list(response.json()) == ["message"]


# --- Lone surrogates ----------------------------------------------------------------------------


@pytest.mark.parametrize("body", SURROGATES.values(), ids=SURROGATES.keys())
def test_a_lone_surrogate_is_a_400_that_renders(post_raw, body):
    assert_field_error_400(post_raw(GIFTS, body))
    assert_nothing_stored()


def test_a_lone_surrogate_in_credentials_is_a_400(post_raw):
    assert_field_error_400(post_raw(TOKEN, r'{"username": "bob\ud800", "password": "x"}'))


def test_a_proper_surrogate_pair_is_just_a_character(auth_client):
    body = r'{"recipient_email": "a@example.com", "amount": "5", "currency": "EUR", "message": "gift \ud83c\udf81"}'
    response = auth_client.post(GIFTS, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="key-1")
    assert response.status_code == 202
    assert response.json()["message"] == "gift \U0001f381"


# --- Oversized bodies and media types ---------------------------------------------------------------


def oversized_body() -> str:
    return '{"message": "' + "m" * django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE + '"}'


@pytest.mark.parametrize("path", [TOKEN, GIFTS])
def test_a_body_over_the_upload_limit_is_a_json_413(post_raw, path):
    response = post_raw(path, oversized_body())
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"code": "payload_too_large", "detail": response.json()["detail"]}
    assert isinstance(response.json()["detail"], str)
    assert_nothing_stored()


@pytest.mark.parametrize("path", [TOKEN, GIFTS])
def test_an_oversized_content_length_is_refused_before_the_body_is_read(post_raw, path):
    # The test client's payload refuses reads past what it holds: a 413 here means nothing was read.
    # (Django checks Content-Length against DATA_UPLOAD_MAX_MEMORY_SIZE before reading request.body.)
    response = post_raw(path, "{}", CONTENT_LENGTH=str(django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1))
    assert (response.status_code, response.json()["code"]) == (413, "payload_too_large")


MULTIPART = b'--b\r\nContent-Disposition: form-data; name="username"\r\n\r\nbob\r\n--b--\r\n'


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (MULTIPART, "multipart/form-data; boundary=b"),
        (b"username=bob&password=s3cret-enough-pass", "application/x-www-form-urlencoded"),
    ],
    ids=["multipart", "form"],
)
def test_the_token_endpoint_takes_json_only(api_client, make_user, body, content_type):
    make_user(username="bob", password="s3cret-enough-pass")
    response = api_client.post(TOKEN, body, content_type=content_type)
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


def test_a_large_upload_to_the_token_endpoint_is_refused_unread(api_client, db):
    # Declares 60 MB; the test client's payload refuses reads past the few bytes it holds.
    content_length = str(60 * 1024 * 1024)
    response = api_client.post(
        TOKEN, MULTIPART, content_type="multipart/form-data; boundary=b", CONTENT_LENGTH=content_length
    )
    assert (response.status_code, response.json()["code"]) == (415, "unsupported_media_type")


# --- Strings must be JSON strings ---------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"message": 0},
        {"message": 1.5},
        {"message": True},
        {"message": ["hi"]},
        {"currency": 978},
        {"recipient_email": 5},
        {"recipient_email": None, "recipient_wallet": 123},
        {"amount": "1e3"},
        {"amount": " 5"},
        {"amount": "1_000"},
        {"amount": "\u0665"},  # ARABIC-INDIC DIGIT FIVE: Python's Decimal reads it as 5
    ],
    ids=repr,
)
def test_a_value_of_the_wrong_json_type_is_a_field_error(auth_client, change):
    response = auth_client.post(GIFTS, {**VALID, **change}, format="json", HTTP_IDEMPOTENCY_KEY="key-1")
    assert response.status_code == 400
    assert set(response.json()) >= {name for name, value in change.items() if value is not None}
    assert_nothing_stored()


def test_a_string_message_that_looks_like_a_number_is_kept_as_text(auth_client):
    response = auth_client.post(GIFTS, {**VALID, "message": "0"}, format="json", HTTP_IDEMPOTENCY_KEY="key-1")
    assert (response.status_code, response.json()["message"]) == (202, "0")


def post_gift(auth_client, change: dict):
    return auth_client.post(GIFTS, {**VALID, **change}, format="json", HTTP_IDEMPOTENCY_KEY="key-1")


def assert_only_field_error(response, field: str, says: str) -> None:
    """A 400 naming just this field, whose message contains `says`; nothing stored."""
    assert response.status_code == 400, response.content
    body = response.json()
    assert list(body) == [field]
    assert any(says in message for message in body[field]), body
    assert_nothing_stored()


STRING_FIELDS = {
    "message": {"number": 0, "float": 1.5, "boolean": True, "array": ["hi"], "object": {"text": "hi"}},
    "currency": {"number": 978, "boolean": False, "array": ["EUR"], "object": {"code": "EUR"}},
    "recipient_email": {"number": 5, "boolean": True, "array": ["bob@example.com"], "object": {"to": "bob"}},
}
JSON_KINDS = {
    "number": "a number",
    "float": "a number",
    "boolean": "a boolean",
    "array": "an array",
    "object": "an object",
}


@pytest.mark.parametrize(
    ("field", "kind", "value"),
    [(field, kind, value) for field, values in STRING_FIELDS.items() for kind, value in values.items()],
)
def test_a_string_field_names_the_json_type_it_got(auth_client, field, kind, value):
    response = post_gift(auth_client, {field: value})
    assert_only_field_error(response, field, f"Expected a JSON string, not {JSON_KINDS[kind]}.")


@pytest.mark.parametrize("value", [123, True, ["0x" + "1" * 40], {"address": "0x" + "1" * 40}], ids=repr)
def test_a_wallet_must_be_a_json_string(auth_client, value):
    body = {"recipient_wallet": value, "amount": "5.00", "currency": "EUR"}
    response = auth_client.post(GIFTS, body, format="json", HTTP_IDEMPOTENCY_KEY="key-1")
    assert_only_field_error(response, "recipient_wallet", "Expected a JSON string")


# --- Amounts: a decimal string of ASCII digits --------------------------------------------------

NOT_PLAIN_DECIMALS = [
    "\uff15",  # FULLWIDTH DIGIT FIVE
    "\uff11\uff10.\uff10\uff10",
    "\u0665",  # ARABIC-INDIC DIGIT FIVE
    "\u0968",  # DEVANAGARI DIGIT TWO
    "1_000",
    "1,000",
    "1 000",
    " 5",
    "5 ",
    "5\n",
    "\t5",
    "+5",
    "1e3",
    "1E3",
    "5e-1",
    "NaN",
    "nan",
    "Infinity",
    "-Infinity",
    "sNaN",
    "0x10",
    "5.",
    ".5",
    "5..0",
    "",
    "five",
]


@pytest.mark.parametrize("amount", NOT_PLAIN_DECIMALS, ids=repr)
def test_an_amount_is_ascii_digits_only(auth_client, amount):
    assert_only_field_error(post_gift(auth_client, {"amount": amount}), "amount", "decimal string of ASCII digits")


@pytest.mark.parametrize(
    ("amount", "kind"),
    [(True, "a boolean"), (False, "a boolean"), ([25], "an array"), ({"value": "25"}, "an object")],
    ids=repr,
)
def test_an_amount_of_another_json_type_is_refused(auth_client, amount, kind):
    assert_only_field_error(post_gift(auth_client, {"amount": amount}), "amount", f"not {kind}.")


def test_a_null_amount_is_refused(auth_client):
    assert_only_field_error(post_gift(auth_client, {"amount": None}), "amount", "null")


@pytest.mark.parametrize(
    ("amount", "stored"), [("25", "25.00"), ("25.5", "25.50"), ("0025.00", "25.00"), (25, "25.00")]
)
def test_plain_decimal_strings_and_json_numbers_are_amounts(auth_client, amount, stored):
    response = post_gift(auth_client, {"amount": amount})
    assert (response.status_code, response.json()["amount"]) == (202, stored)


# --- Recipient addresses: no local or IP hosts, no look-alike domains ---------------------------

REFUSED_RECIPIENTS = {
    "localhost": ("bob@localhost", "full domain name with a dot"),
    "dotless": ("bob@intranet", "valid email address"),  # Django's EmailValidator allows localhost only
    "ip-literal": ("bob@[127.0.0.1]", "IP address"),
    "ipv6-literal": ("bob@[::1]", "IP address"),
    "bare-ip": ("bob@127.0.0.1", "valid email address"),  # and IP addresses in brackets only
    "homoglyph": ("bob@ex\u0430mple.com", "mixes letters of different scripts"),  # Cyrillic a (U+0430)
    "homoglyph-punycode": ("bob@xn--exmple-4nf.com", "mixes letters of different scripts"),
    "greek-homoglyph": ("bob@\u03bfpenai.com", "mixes letters of different scripts"),  # Greek omicron
    "local-part-only": ("bob", "valid email address"),
}


@pytest.mark.parametrize(("address", "says"), REFUSED_RECIPIENTS.values(), ids=REFUSED_RECIPIENTS.keys())
def test_local_ip_and_look_alike_recipients_are_field_errors(auth_client, address, says):
    assert_only_field_error(post_gift(auth_client, {"recipient_email": address}), "recipient_email", says)


@pytest.mark.parametrize("address", ["bob@localhost", "bob@[127.0.0.1]"])
def test_local_hosts_are_accepted_when_the_setting_allows_them(auth_client, settings, address):
    settings.EMAIL_ALLOW_LOCAL_HOSTS = True
    assert post_gift(auth_client, {"recipient_email": address}).status_code == 202


@pytest.mark.parametrize("address", ["Bob+Gifts@Example.com", "bob@b\u00fccher.example", "bob@xn--bcher-kva.example"])
def test_a_recipient_is_kept_as_typed(auth_client, address):
    assert post_gift(auth_client, {"recipient_email": address}).status_code == 202
    assert Gift.objects.get().recipient_email == address


# --- The schema agrees with the API -------------------------------------------------------------


@pytest.fixture
def schema(api_client, db) -> dict:
    response = api_client.get(SCHEMA)
    assert response.status_code == 200
    return response.json()


def operation(schema: dict, method: str, path: str) -> dict:
    return schema["paths"][path][method]


def resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def response_schema(schema: dict, op: dict, status: str) -> dict:
    return resolve(schema, op["responses"][status]["content"]["application/json"]["schema"])


@pytest.mark.parametrize(
    ("method", "path", "statuses"),
    [
        ("post", "/api/v1/auth/token/", {"200", "400", "413", "415", "428", "429", "503"}),
        ("post", "/api/v1/gifts/", {"202", "400", "401", "409", "413", "415", "422", "429", "503"}),
        ("get", "/api/v1/gifts/", {"200", "401", "404"}),
        ("get", "/api/v1/gifts/{gift_id}/", {"200", "401", "404"}),
    ],
)
def test_every_status_the_api_answers_is_documented(schema, method, path, statuses):
    op = operation(schema, method, path)
    assert set(op["responses"]) == statuses
    for status in statuses - {"200", "202", "400"}:
        error = response_schema(schema, op, status)
        assert error["required"] == ["code", "detail"]
        assert error["properties"]["code"]["enum"]
    for status in statuses & {"429", "503"}:
        assert "Retry-After" in op["responses"][status]["headers"]


def test_the_documented_error_codes(schema):
    token, create = operation(schema, "post", TOKEN), operation(schema, "post", GIFTS)
    codes = {
        (status, op_name): response_schema(schema, op, status)["properties"]["code"]["enum"]
        for op_name, op in {"token": token, "create": create}.items()
        for status in op["responses"]
        if status not in {"200", "202", "400"}
    }
    assert codes[("428", "token")] == ["challenge_required"]
    assert codes[("429", "token")] == ["rate_limited", "locked_out", "blocked"]
    assert codes[("429", "create")] == ["rate_limited", "blocked"]
    assert codes[("503", "create")] == ["service_unavailable"]
    assert codes[("413", "create")] == ["payload_too_large"]
    assert codes[("401", "create")] == ["not_authenticated"]
    assert set(codes[("422", "create")]) == {"idempotency_key_reused", "amount_limit", "daily_quota", "weekly_quota"}


def test_the_gift_list_is_documented_as_paginated(schema):
    op = operation(schema, "get", GIFTS)
    page = response_schema(schema, op, "200")
    assert set(page["properties"]) == {"count", "next", "previous", "results"}
    assert resolve(schema, page["properties"]["results"]["items"])["properties"]["id"]["format"] == "uuid"
    assert {parameter["name"] for parameter in op["parameters"]} == {"page", "page_size"}


def test_the_idempotency_key_header_is_documented(schema):
    [header] = [p for p in operation(schema, "post", GIFTS)["parameters"] if p["name"] == "Idempotency-Key"]
    assert header["in"] == "header"
    assert header["required"] is True
    assert header["schema"] == {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^[\x20-\x7E]+$"}


def test_the_gift_body_is_documented(schema, settings):
    body = resolve(schema, operation(schema, "post", GIFTS)["requestBody"]["content"]["application/json"]["schema"])
    assert resolve(schema, body["properties"]["currency"])["enum"] == list(settings.GIFT_CURRENCIES)
    assert body["properties"]["message"]["type"] == "string"
    assert body["properties"]["amount"]["type"] == "string"
    assert body["additionalProperties"] is False
    assert body["oneOf"] == [{"required": ["recipient_email"]}, {"required": ["recipient_wallet"]}]


def test_the_currency_enum_follows_the_setting(api_client, db, settings):
    settings.GIFT_CURRENCIES = ["CHF", "JPY"]
    schema = api_client.get(SCHEMA).json()
    body = resolve(schema, operation(schema, "post", GIFTS)["requestBody"]["content"]["application/json"]["schema"])
    assert resolve(schema, body["properties"]["currency"])["enum"] == ["CHF", "JPY"]


def test_the_token_endpoint_is_documented_as_json_only(schema):
    op = operation(schema, "post", TOKEN)
    assert set(op["requestBody"]["content"]) == {"application/json"}
    assert "token" in response_schema(schema, op, "200")["required"]


def test_a_database_gone_mid_request_is_a_503_to_retry_not_a_500(auth_client, monkeypatch):
    """Killed connections or a failover: nothing was committed, so the same request may be sent again."""
    from django.db import OperationalError

    from gifting import api

    def database_gone(**kwargs):
        raise OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr(api, "gift_create", database_gone)
    body = {"recipient_email": "bob@example.com", "amount": "25.00", "currency": "EUR"}

    response = auth_client.post("/api/v1/gifts/", body, format="json", HTTP_IDEMPOTENCY_KEY="db-gone-1")

    assert response.status_code == 503
    assert response.json()["code"] == "service_unavailable"
    assert response["Retry-After"] == "5"
    monkeypatch.undo()
    retried = auth_client.post("/api/v1/gifts/", body, format="json", HTTP_IDEMPOTENCY_KEY="db-gone-1")
    assert retried.status_code == 202
