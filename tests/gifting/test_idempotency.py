"""Idempotency-Key semantics: validation, fingerprints, claims, replays and conflicts."""

import itertools
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from core.errors import ApplicationError, ErrorCode
from core.exception_handler import HTTP_STATUS
from gifting import idempotency
from gifting.models import Gift, IdempotencyKey
from gifting.services import delivery, intake
from tests.factories import api_token

GIFTS = "/api/v1/gifts/"
BODY = {"recipient_email": "recipient@example.com", "amount": "25.00", "currency": "EUR", "message": "Hi"}


def post_gift(client, body=BODY, key="key-1"):
    return client.post(GIFTS, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def age(record_filter, by):
    IdempotencyKey.objects.filter(**record_filter).update(created_at=timezone.now() - by)


@pytest.mark.parametrize("key", ["k", "k" * 255, " !~", "0b1f5c2e-6c4d-4a8e-9d1e-3f2a1b0c9d8e"])
def test_validate_key_accepts_1_to_255_printable_ascii_characters(key):
    assert idempotency.validate_key(key) == key


@pytest.mark.parametrize("key", [None, "", "k" * 256, "tab\t", "nul\x00", "del\x7f", "newline\n", "clé", "日本"])
def test_validate_key_refuses_anything_else(key):
    with pytest.raises(ValueError):
        idempotency.validate_key(key)


def test_fingerprint_ignores_key_order_at_every_level():
    reordered = dict(reversed(list(BODY.items())))
    assert list(reordered) != list(BODY)
    assert idempotency.fingerprint(reordered) == idempotency.fingerprint(BODY)
    nested, reordered_nested = {"a": {"y": 1, "x": [1, 2]}}, {"a": {"x": [1, 2], "y": 1}}
    assert idempotency.fingerprint(nested) == idempotency.fingerprint(reordered_nested)


@pytest.mark.parametrize("other", [{**BODY, "amount": "25.01"}, {**BODY, "amount": 25}, {**BODY, "extra": None}])
def test_fingerprint_differs_for_different_bodies(other):
    digest = idempotency.fingerprint(BODY)
    assert len(digest) == 64
    assert idempotency.fingerprint(other) != digest


@pytest.fixture
def operation():
    """An operation that counts its runs; `operation.fail = True` makes it raise."""

    class Operation:
        def __init__(self):
            self.runs, self.fail = itertools.count(1), False

        def __call__(self):
            run = next(self.runs)
            if self.fail:
                raise RuntimeError("operation crashed")
            return 201, {"run": run}, None

    return Operation()


def run(user, operation, key="key-1", body=BODY):
    return idempotency.run_idempotently(user=user, key=key, body=body, operation=operation)


def test_run_idempotently_runs_once_and_then_replays(user, operation):
    first = run(user, operation)
    again = run(user, operation, body=dict(reversed(list(BODY.items()))))

    assert (first.status, first.body, first.replayed) == (201, {"run": 1}, False)
    assert (again.status, again.body, again.replayed) == (201, {"run": 1}, True)
    record = IdempotencyKey.objects.get()
    assert (record.response_status, record.response_body, record.in_flight) == (201, {"run": 1}, False)


def test_run_idempotently_refuses_a_reused_key(user, operation):
    run(user, operation)
    with pytest.raises(ApplicationError) as raised:
        run(user, operation, body={**BODY, "amount": "30.00"})
    assert raised.value.code == ErrorCode.IDEMPOTENCY_KEY_REUSED
    assert HTTP_STATUS[raised.value.code] == 422


def test_a_failed_operation_releases_the_claim(user, operation):
    operation.fail = True
    with pytest.raises(RuntimeError):
        run(user, operation)
    assert not IdempotencyKey.objects.exists()

    operation.fail = False
    assert run(user, operation) == idempotency.IdempotentResponse(status=201, body={"run": 2}, replayed=False)


def test_a_failed_operation_leaves_no_gift_behind(user):
    def create_then_crash():
        intake.gift_create(sender=user, recipient_email="r@example.com", amount="1.00", currency="EUR")
        raise RuntimeError("crashed after creating")

    with pytest.raises(RuntimeError):
        run(user, create_then_crash)
    assert not Gift.objects.exists()
    assert not IdempotencyKey.objects.exists()


def test_purge_forgets_only_expired_keys(user, operation):
    run(user, operation, key="old")
    run(user, operation, key="new")
    age({"key": "old"}, timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL + 1))

    assert idempotency.idempotency_keys_purge_expired() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]


def test_a_repeated_request_replays_the_first_response(auth_client):
    first = post_gift(auth_client)
    again = post_gift(auth_client, body=dict(reversed(list(BODY.items()))))

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert not first.has_header("Idempotent-Replayed")
    assert Gift.objects.count() == 1
    record = IdempotencyKey.objects.get()
    assert str(record.gift_id) == first.json()["id"]


def test_a_replay_returns_the_stored_response_even_after_the_gift_changed(auth_client):
    first = post_gift(auth_client)
    delivery.gift_fail(gift_id=first.json()["id"], reason="No.", cause="test")

    again = post_gift(auth_client)
    assert again.json() == first.json()
    assert again.json()["status"] == "queued"


def test_the_same_key_with_a_different_body_is_422(auth_client):
    post_gift(auth_client)
    response = post_gift(auth_client, body={**BODY, "amount": "99.00"})
    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    assert isinstance(response.json()["detail"], str)
    assert Gift.objects.count() == 1


def test_the_same_key_while_the_first_request_is_in_flight_is_409(auth_client, user):
    IdempotencyKey.objects.create(user=user, key="key-1", request_fingerprint=idempotency.fingerprint(BODY))

    response = post_gift(auth_client)

    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_key_in_use"
    assert isinstance(response.json()["detail"], str)
    assert not Gift.objects.exists()


def test_an_abandoned_claim_can_be_claimed_again(auth_client, user):
    IdempotencyKey.objects.create(user=user, key="key-1", request_fingerprint=idempotency.fingerprint(BODY))
    age({"key": "key-1"}, idempotency.ABANDONED_AFTER + timedelta(seconds=1))

    response = post_gift(auth_client)

    assert response.status_code == 202
    assert not response.has_header("Idempotent-Replayed")
    assert IdempotencyKey.objects.get().response_status == 202
    assert Gift.objects.count() == 1


def test_a_claim_younger_than_the_abandon_limit_is_still_in_flight(auth_client, user):
    IdempotencyKey.objects.create(user=user, key="key-1", request_fingerprint=idempotency.fingerprint(BODY))
    age({"key": "key-1"}, idempotency.ABANDONED_AFTER - timedelta(seconds=5))
    assert post_gift(auth_client).status_code == 409


def test_keys_are_scoped_to_the_user(auth_client, make_user):
    other_client = APIClient()
    other_client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(make_user())}")

    mine, theirs = post_gift(auth_client), post_gift(other_client)

    assert mine.status_code == theirs.status_code == 202
    assert not theirs.has_header("Idempotent-Replayed")
    assert mine.json()["id"] != theirs.json()["id"]
    assert Gift.objects.count() == IdempotencyKey.objects.count() == 2


def test_an_expired_key_creates_a_new_gift(auth_client):
    first = post_gift(auth_client)
    age({"key": "key-1"}, timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL + 1))

    again = post_gift(auth_client)

    assert again.status_code == 202
    assert not again.has_header("Idempotent-Replayed")
    assert again.json()["id"] != first.json()["id"]
    assert Gift.objects.count() == 2
    assert str(IdempotencyKey.objects.get().gift_id) == again.json()["id"]


def test_a_rejected_request_does_not_use_up_the_key(auth_client):
    assert post_gift(auth_client, body={**BODY, "amount": "-1"}).status_code == 400
    assert post_gift(auth_client).status_code == 202


def test_the_longest_key_is_accepted_and_replayed(auth_client):
    key = "k" * idempotency.MAX_KEY_LENGTH
    first = post_gift(auth_client, key=key)
    assert first.status_code == 202
    assert post_gift(auth_client, key=key).json() == first.json()
