"""The HTTP API v1 contract: auth, creating, listing and reading gifts, error shapes."""

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from gifting import events
from gifting.models import Gift, IdempotencyKey
from gifting.services import delivery, intake

GIFTS = "/api/v1/gifts/"
TOKEN = "/api/v1/auth/token/"
WALLET = "0x12" + "3" * 34 + "abcd"  # all lower case: accepted, stored EIP-55 checksummed
WALLET_CHECKSUMMED = "0x12" + "3" * 34 + "abCD"
VALID = {"recipient_email": "recipient@example.com", "amount": "25.00", "currency": "EUR", "message": "Enjoy!"}


def post_gift(client, body, key="key-1"):
    return client.post(GIFTS, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def assert_nothing_stored():
    assert Gift.objects.count() == 0
    assert IdempotencyKey.objects.count() == 0


def test_token_for_correct_credentials(api_client, make_user):
    make_user(username="bob", password="s3cret-enough-pass")
    response = api_client.post(TOKEN, {"username": "bob", "password": "s3cret-enough-pass"}, format="json")
    assert response.status_code == 200
    assert set(response.json()) == {"token", "expires_at"}
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    assert api_client.get(GIFTS).status_code == 200


@pytest.mark.parametrize(("username", "password"), [("bob", "wrong-password"), ("nobody", "s3cret-enough-pass")])
def test_no_token_for_wrong_credentials(api_client, make_user, username, password):
    make_user(username="bob", password="s3cret-enough-pass")
    response = api_client.post(TOKEN, {"username": username, "password": password}, format="json")
    assert response.status_code == 400
    assert "token" not in response.json()


def test_create_answers_202_with_the_masked_gift(auth_client, user):
    response = post_gift(auth_client, VALID)

    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"id", "status", "amount", "currency", "recipient", "message", "created_at"}
    assert body["status"] == "queued"
    assert (body["amount"], body["currency"], body["message"]) == ("25.00", "EUR", "Enjoy!")
    assert body["recipient"] == "r***@example.com"
    assert datetime.fromisoformat(body["created_at"].replace("Z", "+00:00"))
    gift = Gift.objects.get()
    assert (str(gift.id), gift.sender, gift.recipient_email) == (body["id"], user, "recipient@example.com")


def test_create_masks_a_wallet_recipient(auth_client):
    response = post_gift(auth_client, {"recipient_wallet": WALLET, "amount": "5", "currency": "USD"})
    assert response.status_code == 202
    assert response.json()["recipient"] == "0x12…abCD"
    assert response.json()["amount"] == "5.00"
    assert Gift.objects.get().recipient_wallet == WALLET_CHECKSUMMED


@pytest.mark.parametrize(
    ("change", "amount"),
    [
        ({"amount": 25}, "25.00"),
        ({"amount": "1"}, "1.00"),  # FRAUD_MIN_AMOUNT
        ({"amount": 7.5}, "7.50"),
        ({"message": "m" * 500}, "25.00"),
    ],
)
def test_create_accepts_boundary_values(auth_client, change, amount):
    response = post_gift(auth_client, {**VALID, **change})
    assert response.status_code == 202
    assert response.json()["amount"] == amount


@pytest.mark.parametrize(
    ("method", "path"), [("post", GIFTS), ("get", GIFTS), ("get", f"{GIFTS}00000000-0000-4000-8000-000000000000/")]
)
@pytest.mark.parametrize("authorization", [None, "Token not-a-real-token"])
def test_unauthenticated_requests_get_401(api_client, db, method, path, authorization):
    if authorization:
        api_client.credentials(HTTP_AUTHORIZATION=authorization)
    response = api_client.post(path, VALID, format="json") if method == "post" else api_client.get(path)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert isinstance(response.json()["detail"], str)
    assert_nothing_stored()


BAD_BODIES = {
    "amount-text": ({**VALID, "amount": "abc"}, "amount"),
    "amount-bool": ({**VALID, "amount": True}, "amount"),
    "amount-list": ({**VALID, "amount": ["25.00"]}, "amount"),
    "amount-negative": ({**VALID, "amount": "-5.00"}, "amount"),
    "amount-zero": ({**VALID, "amount": "0.00"}, "amount"),
    "amount-3-decimals": ({**VALID, "amount": "1.001"}, "amount"),
    "amount-nan": ({**VALID, "amount": "NaN"}, "amount"),
    "amount-infinity": ({**VALID, "amount": "Infinity"}, "amount"),
    "amount-too-large": ({**VALID, "amount": "10000000000.00"}, "amount"),
    "amount-missing": ({k: v for k, v in VALID.items() if k != "amount"}, "amount"),
    "currency-unknown": ({**VALID, "currency": "XYZ"}, "currency"),
    "currency-lowercase": ({**VALID, "currency": "eur"}, "currency"),
    "currency-missing": ({k: v for k, v in VALID.items() if k != "currency"}, "currency"),
    "both-recipients": ({**VALID, "recipient_wallet": WALLET}, "non_field_errors"),
    "no-recipient": ({k: v for k, v in VALID.items() if k != "recipient_email"}, "non_field_errors"),
    "invalid-email": ({**VALID, "recipient_email": "not-an-email"}, "recipient_email"),
    "invalid-wallet": ({"recipient_wallet": "0x1234", "amount": "1", "currency": "EUR"}, "recipient_wallet"),
    "message-501": ({**VALID, "message": "m" * 501}, "message"),
    "unknown-field": ({**VALID, "sender": 1}, "sender"),
    "not-an-object": ([VALID], "non_field_errors"),
}


@pytest.mark.parametrize(("body", "field"), BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_invalid_input_is_400_per_field_and_stores_nothing(auth_client, body, field):
    response = post_gift(auth_client, body)
    assert response.status_code == 400
    assert field in response.json()
    assert isinstance(response.json()[field], list)
    assert_nothing_stored()


@pytest.mark.parametrize("raw", [b'{"amount": "25.00",', b"not json", b"\xff\xfe"])
def test_malformed_json_is_400_not_500(auth_client, raw):
    response = auth_client.post(GIFTS, raw, content_type="application/json", HTTP_IDEMPOTENCY_KEY="key-1")
    assert response.status_code == 400
    assert "non_field_errors" in response.json()
    assert_nothing_stored()


@pytest.mark.parametrize("key", [None, "", "k" * 256, "key\x01", "key\ttab", "clé-1", "key\x7f"])
def test_a_missing_or_invalid_idempotency_key_is_400(auth_client, key):
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    response = auth_client.post(GIFTS, VALID, format="json", **headers)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()
    assert_nothing_stored()


def test_other_errors_have_a_code_and_a_detail(auth_client):
    form = "application/x-www-form-urlencoded"
    response = auth_client.post(GIFTS, "amount=1", content_type=form, HTTP_IDEMPOTENCY_KEY="key-1")
    assert (response.status_code, response.json()["code"]) == (415, "unsupported_media_type")
    response = auth_client.delete(GIFTS)
    assert (response.status_code, response.json()["code"]) == (405, "method_not_allowed")
    assert isinstance(response.json()["detail"], str)


@pytest.fixture
def make_gift(user):
    def make(sender=user, age_minutes=0, **fields):
        fields = {"recipient_email": "recipient@example.com", "amount": "10.00", "currency": "EUR", **fields}
        gift = intake.gift_create(sender=sender, **fields)
        Gift.objects.filter(id=gift.id).update(created_at=timezone.now() - timedelta(minutes=age_minutes))
        return gift

    return make


def test_list_shows_only_the_callers_gifts_newest_first(auth_client, make_gift, make_user):
    oldest, newest, middle = make_gift(age_minutes=30), make_gift(age_minutes=1), make_gift(age_minutes=10)
    make_gift(sender=make_user())

    response = auth_client.get(GIFTS)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 3
    assert [g["id"] for g in body["results"]] == [str(newest.id), str(middle.id), str(oldest.id)]
    assert body["results"][0]["recipient"] == "r***@example.com"


def test_list_is_paginated(auth_client, make_gift):
    gifts = [make_gift(age_minutes=minutes) for minutes in range(5)]

    first = auth_client.get(GIFTS, {"page_size": 2}).json()
    assert (first["count"], len(first["results"]), first["previous"]) == (5, 2, None)
    assert [g["id"] for g in first["results"]] == [str(gifts[0].id), str(gifts[1].id)]
    last = auth_client.get(GIFTS, {"page_size": 2, "page": 3}).json()
    assert [g["id"] for g in last["results"]] == [str(gifts[4].id)]
    assert last["next"] is None
    assert last["previous"] is not None


def test_detail_shows_attempts_last_error_and_the_timeline(auth_client, make_gift):
    gift = make_gift()

    response = auth_client.get(f"{GIFTS}{gift.id}/")

    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["status"], body["attempts"], body["last_error"]) == (str(gift.id), "queued", 0, None)
    [created] = body["events"]
    assert set(created) == {"type", "at"}
    assert created["type"] == "created"


@pytest.mark.parametrize("gift_id", ["someone-else", "not-a-uuid", "00000000-0000-4000-8000-000000000000"])
def test_detail_of_a_gift_that_is_not_yours_is_404(auth_client, make_gift, make_user, gift_id):
    if gift_id == "someone-else":
        gift_id = make_gift(sender=make_user()).id
    response = auth_client.get(f"{GIFTS}{gift_id}/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "not_found"
    assert isinstance(response.json()["detail"], str)


def test_the_timeline_does_not_leak_internal_details(auth_client, make_gift):
    gift = make_gift()
    events.gift_queued(gift, message_id="secret-message-id", actor_label="api", sent_at=timezone.now())
    events.gift_publish_failed(gift, error="EndpointConnectionError", actor_label="sweeper")
    events.gift_delivery_attempted(gift, attempt=1)
    events.gift_retry_scheduled(gift, reason="Busy.", retry_at="2030-01-01T00:00:00+00:00", delay_seconds=4)
    events.gift_duplicate_ignored(gift, status="queued")
    delivery.gift_fail(gift_id=gift.id, reason="Delivery kept failing.", cause="retries_exhausted")
    events.gift_dead_lettered(gift, message_id="secret-dlq-id", sent_at=timezone.now())

    response = auth_client.get(f"{GIFTS}{gift.id}/")

    body = response.json()
    assert body["last_error"] == "Delivery kept failing."
    timeline = body["events"]
    assert [e["type"] for e in timeline] == ["created", "queued", "delivery_attempted", "retry_scheduled", "failed"]
    for event in timeline:
        assert set(event) <= {"type", "at", "details"}
        assert set(event.get("details", {})) <= {"attempt", "reason", "retry_at"}
    assert timeline[2]["details"] == {"attempt": 1}
    assert timeline[4]["details"] == {"reason": "Delivery kept failing."}
    for secret in ["secret-message-id", "EndpointConnectionError", "retries_exhausted", "secret-dlq-id", "cause"]:
        assert secret not in response.content.decode()


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
def test_the_api_is_documented(api_client, db, path):
    assert api_client.get(path).status_code == 200


def test_healthz(api_client):
    response = api_client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "skipped", "cache": "skipped", "sqs": "skipped"},
    }


@pytest.mark.parametrize("probe", ["/healthz", "/readyz"])
def test_probes_answer_whatever_host_a_load_balancer_names(api_client, probe, settings):
    settings.ALLOWED_HOSTS = ["gifts.example.com"]
    # A load balancer's health check names the task's own IP: any other path is a 400 for that host.
    assert api_client.get("/api/v1/gifts/", HTTP_HOST="10.0.3.17:8000").status_code == 400
    response = api_client.get(probe, HTTP_HOST="10.0.3.17:8000")
    assert response.status_code in (200, 503)  # readiness may say unavailable: never a 400
    assert "checks" in response.json()
