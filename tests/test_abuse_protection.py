"""Rate limits, django-axes lockouts, and the gift line of the access log."""

import logging
import time
import uuid
from types import SimpleNamespace
from unittest.mock import ANY

import django_ratelimit.core
import pytest
from axes.models import AccessAttempt
from django.urls import reverse
from rest_framework.test import APIClient

from gifting.models import Gift
from tests.factories import api_token

GIFTS = "/api/v1/gifts/"
TOKEN = "/api/v1/auth/token/"
ADMIN_LOGIN = "/admin/login/"
PASSWORD = "correct-horse-battery"  # make_user's default
GIFT = {"recipient_email": "recipient@example.com", "amount": "25.00", "currency": "EUR"}


@pytest.fixture(autouse=True)
def clock(monkeypatch) -> SimpleNamespace:
    """django-ratelimit's clock, stopped so that no window ends mid-test; move it with `clock.now += seconds`."""
    frozen = SimpleNamespace(now=float(int(time.time())))
    monkeypatch.setattr(django_ratelimit.core, "time", SimpleNamespace(time=lambda: frozen.now))
    return frozen


@pytest.fixture
def generous_limits(settings):
    """Limits nobody reaches; a test then tightens the one it is about."""
    settings.RATELIMIT_GIFT_USER = settings.RATELIMIT_GIFT_IP = settings.RATELIMIT_TOKEN_IP = "100/m"


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


def post_gift(client: APIClient, body: dict | None = None, key: str | None = None, **extra):
    return client.post(GIFTS, body or GIFT, format="json", HTTP_IDEMPOTENCY_KEY=key or str(uuid.uuid4()), **extra)


def post_token(client: APIClient, username: str, password: str = PASSWORD, **extra):
    return client.post(TOKEN, {"username": username, "password": password}, format="json", **extra)


def assert_rate_limited(response) -> int:
    """The contract's 429; returns Retry-After in seconds."""
    assert response.status_code == 429
    assert response.json() == {"code": "rate_limited", "detail": ANY}
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= 60
    return retry_after


# --- Rate limits: gift creation -------------------------------------------------


def test_a_broken_shared_cache_refuses_with_503_not_500(settings, user):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }

    response = post_gift(client_for(user))

    assert response.status_code == 503
    assert response.json() == {"code": "service_unavailable", "detail": ANY}
    assert response["Retry-After"] == "5"
    assert not Gift.objects.exists()


def test_gift_create_is_limited_per_user(settings, generous_limits, make_user):
    settings.RATELIMIT_GIFT_USER = "2/m"
    alice, bob = client_for(make_user()), client_for(make_user())

    assert [post_gift(alice).status_code for _ in range(2)] == [202, 202]
    assert_rate_limited(post_gift(alice))
    assert post_gift(bob).status_code == 202  # same address, own limit


def test_the_user_limit_follows_the_user_across_addresses(settings, generous_limits, make_user):
    settings.RATELIMIT_GIFT_USER = "2/m"
    alice = client_for(make_user())

    assert post_gift(alice, REMOTE_ADDR="192.0.2.1").status_code == 202
    assert post_gift(alice, REMOTE_ADDR="192.0.2.2").status_code == 202
    assert_rate_limited(post_gift(alice, REMOTE_ADDR="192.0.2.3"))


def test_gift_create_is_limited_per_address(settings, generous_limits, make_user):
    settings.RATELIMIT_GIFT_IP = "2/m"
    alice, bob = client_for(make_user()), client_for(make_user())

    assert post_gift(alice, REMOTE_ADDR="192.0.2.1").status_code == 202
    assert post_gift(bob, REMOTE_ADDR="192.0.2.1").status_code == 202
    assert_rate_limited(post_gift(bob, REMOTE_ADDR="192.0.2.1"))
    assert post_gift(bob, REMOTE_ADDR="192.0.2.2").status_code == 202


def test_a_request_refused_by_the_user_limit_does_not_use_up_the_address(settings, generous_limits, make_user):
    settings.RATELIMIT_GIFT_USER = "1/m"
    settings.RATELIMIT_GIFT_IP = "2/m"
    alice, bob = client_for(make_user()), client_for(make_user())

    assert post_gift(alice).status_code == 202
    assert_rate_limited(post_gift(alice))
    assert_rate_limited(post_gift(alice))
    assert post_gift(bob).status_code == 202


def test_invalid_requests_and_replays_count_too(settings, generous_limits, user):
    settings.RATELIMIT_GIFT_USER = "3/m"
    client = client_for(user)

    assert post_gift(client, {"amount": "nope"}).status_code == 400
    assert post_gift(client, key="same").status_code == 202
    assert post_gift(client, key="same")["Idempotent-Replayed"] == "true"
    assert_rate_limited(post_gift(client, key="same"))


def test_retry_after_is_when_the_window_resets(settings, generous_limits, user, clock):
    settings.RATELIMIT_GIFT_USER = "1/m"
    client = client_for(user)
    assert post_gift(client).status_code == 202
    retry_after = assert_rate_limited(post_gift(client))

    clock.now += retry_after - 1
    assert assert_rate_limited(post_gift(client)) == 1
    clock.now += 1
    assert post_gift(client).status_code == 202


def test_a_limited_request_stores_nothing(settings, generous_limits, user, clock):
    settings.RATELIMIT_GIFT_USER = "1/m"
    client = client_for(user)
    post_gift(client)

    assert_rate_limited(post_gift(client, key="limited"))
    assert Gift.objects.filter(sender=user).count() == 1
    clock.now += 60
    assert post_gift(client, key="limited").status_code == 202  # the key was not taken


# --- Rate limits: tokens and client addresses ------------------------------------


def test_token_is_limited_per_address(settings, generous_limits, make_user, api_client):
    settings.RATELIMIT_TOKEN_IP = "2/m"
    make_user(username="bob")

    assert post_token(api_client, "bob").status_code == 200
    assert post_token(api_client, "nobody").status_code == 400
    assert_rate_limited(post_token(api_client, "bob"))
    assert post_token(api_client, "bob", REMOTE_ADDR="192.0.2.9").status_code == 200


def test_without_trusted_proxies_x_forwarded_for_is_ignored(settings, generous_limits, make_user, api_client):
    settings.TRUSTED_PROXY_HOPS = 0
    settings.RATELIMIT_TOKEN_IP = "2/m"
    make_user(username="bob")

    for spoofed in ["198.51.100.1", "198.51.100.2"]:
        assert post_token(api_client, "bob", HTTP_X_FORWARDED_FOR=spoofed).status_code == 200
    assert_rate_limited(post_token(api_client, "bob", HTTP_X_FORWARDED_FOR="198.51.100.3"))


def test_behind_one_proxy_the_last_forwarded_address_is_the_client(settings, generous_limits, make_user, api_client):
    settings.TRUSTED_PROXY_HOPS = 1
    settings.RATELIMIT_TOKEN_IP = "2/m"
    make_user(username="bob")
    proxy = {"REMOTE_ADDR": "10.0.0.1"}

    # Whatever the client puts in front of the proxy's entry changes nothing.
    for spoofed in ["198.51.100.1", "198.51.100.2"]:
        response = post_token(api_client, "bob", HTTP_X_FORWARDED_FOR=f"{spoofed}, 203.0.113.7", **proxy)
        assert response.status_code == 200
    assert_rate_limited(post_token(api_client, "bob", HTTP_X_FORWARDED_FOR="198.51.100.3, 203.0.113.7", **proxy))
    # Another client behind the same proxy has its own limit.
    assert post_token(api_client, "bob", HTTP_X_FORWARDED_FOR="203.0.113.8", **proxy).status_code == 200


# --- django-axes: the token endpoint -------------------------------------------------


def test_token_endpoint_locks_out_after_repeated_failures(settings, generous_limits, make_user, api_client):
    settings.AXES_FAILURE_LIMIT = 3
    make_user(username="bob")

    for _ in range(2):
        response = post_token(api_client, "bob", "wrong-password")
        assert response.status_code == 400
        assert response.json() == {"non_field_errors": [ANY]}
    locked = post_token(api_client, "bob", "wrong-password")  # the failure that reaches the limit

    assert locked.status_code == 429
    assert locked.json() == {"code": "locked_out", "detail": ANY}
    assert int(locked["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()
    assert post_token(api_client, "bob").status_code == 429  # even the right password, while locked out
    attempt = AccessAttempt.objects.get(username="bob")
    assert (attempt.ip_address, attempt.path_info) == ("127.0.0.1", TOKEN)
    assert attempt.failures_since_start >= 3


def test_a_lockout_is_for_the_username_from_that_address(settings, generous_limits, make_user, api_client):
    settings.AXES_FAILURE_LIMIT = 2
    make_user(username="bob")
    for _ in range(2):
        post_token(api_client, "bob", "wrong-password")

    assert post_token(api_client, "bob").status_code == 429
    assert post_token(api_client, "bob", REMOTE_ADDR="192.0.2.9").status_code == 200


def test_a_token_resets_the_failure_count(settings, generous_limits, make_user, api_client):
    settings.AXES_FAILURE_LIMIT = 3
    make_user(username="bob")
    for _ in range(2):
        post_token(api_client, "bob", "wrong-password")

    assert post_token(api_client, "bob").status_code == 200
    assert [post_token(api_client, "bob", "wrong-password").status_code for _ in range(2)] == [400, 400]


# --- django-axes: the admin ------------------------------------------------------------


def test_admin_login_locks_out_after_repeated_failures(settings, make_user, client):
    settings.AXES_FAILURE_LIMIT = 3
    make_user(username="admin", is_staff=True, is_superuser=True)

    statuses = [client.post(ADMIN_LOGIN, {"username": "admin", "password": "wrong"}).status_code for _ in range(3)]

    assert statuses == [200, 200, 429]
    assert client.post(ADMIN_LOGIN, {"username": "admin", "password": PASSWORD}).status_code == 429
    assert AccessAttempt.objects.get(username="admin").path_info == ADMIN_LOGIN


def test_access_attempts_are_listed_in_the_admin(generous_limits, make_user, api_client, client):
    post_token(api_client, "mallory", "guess")
    admin = make_user(is_staff=True, is_superuser=True)
    client.force_login(admin, backend="django.contrib.auth.backends.ModelBackend")

    response = client.get(reverse("admin:axes_accessattempt_changelist"))

    assert response.status_code == 200
    assert b"mallory" in response.content


# --- The access log's gift line ------------------------------------------------------


def access_lines(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "gift_a_voucher.access"]


def test_gift_create_logs_a_masked_recipient_and_the_decision(generous_limits, user, caplog):
    caplog.set_level(logging.INFO)
    client = client_for(user)

    response = post_gift(client, HTTP_X_REQUEST_ID="req-gift-1")

    [line] = access_lines(caplog)
    message = line.getMessage()
    assert f"user={user.pk} " in message
    assert f"gift={response.json()['id']} recipient=r***@example.com decision=queued replayed=false" in message
    assert "latency_ms=" in message
    assert line.request_id == "req-gift-1"
    assert "recipient@example.com" not in caplog.text


def test_a_replay_is_logged_as_one(generous_limits, user, caplog):
    caplog.set_level(logging.INFO)
    client = client_for(user)
    post_gift(client, key="k")
    caplog.clear()

    post_gift(client, key="k")

    [line] = access_lines(caplog)
    assert "decision=queued replayed=true" in line.getMessage()


def test_a_wallet_gift_logs_only_the_masked_wallet(generous_limits, user, caplog):
    wallet = "0x" + "ab" * 20
    caplog.set_level(logging.INFO)

    response = post_gift(client_for(user), {"recipient_wallet": wallet, "amount": "5.00", "currency": "USD"})

    assert response.status_code == 202
    assert f"recipient={response.json()['recipient']} " in access_lines(caplog)[0].getMessage()
    assert wallet.lower() not in caplog.text.lower()


def test_a_request_without_a_peer_address_is_limited_not_a_500(settings, generous_limits, make_user, api_client):
    """Behind a unix socket REMOTE_ADDR is empty; the limits still count, under one placeholder address."""
    make_user(username="carol", password="right-password-123")
    answers = {
        api_client.post(
            "/api/v1/auth/token/",
            {"username": "carol", "password": "right-password-123"},
            format="json",
            REMOTE_ADDR="",
        ).status_code
        for _ in range(3)
    }
    assert answers == {200}
