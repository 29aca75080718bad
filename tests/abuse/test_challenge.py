"""The proof-of-work challenge on the token endpoint and the admin login, solved with the altcha library."""

import json
import re
from datetime import timedelta

import altcha
import pytest
from django.contrib.auth import SESSION_KEY
from django.utils import timezone
from rest_framework.test import APIClient

from abuse.challenge import hmac_key
from audit.models import AuditEntry
from tests.abuse.helpers import ADMIN_LOGIN, PASSWORD, assert_challenge_required, post_token, solve

IP = "203.0.113.10"
OTHER_IP = "198.51.100.20"


@pytest.fixture(autouse=True)
def challenge_settings(settings):
    settings.CHALLENGE_MAX_NUMBER = 2000  # quick to solve in a test
    settings.CHALLENGE_AFTER_FAILURES = 2
    settings.RATELIMIT_TOKEN_IP = settings.RATELIMIT_ADMIN_LOGIN_IP = "1000/m"


@pytest.fixture
def bob(make_user):
    return make_user(username="bob")


@pytest.fixture
def required(bob, api_client) -> dict:
    """Two failed logins from IP: the next token request is answered with a challenge, returned."""
    for _ in range(2):
        assert post_token(api_client, "bob", "wrong-password", ip=IP).status_code == 400
    return assert_challenge_required(post_token(api_client, "bob", ip=IP))


def test_no_challenge_before_failures(api_client, bob):
    assert post_token(api_client, "bob", "wrong-password", ip=IP).status_code == 400
    assert post_token(api_client, "bob", ip=IP).status_code == 200


def test_after_failures_the_token_endpoint_asks_for_a_challenge(api_client, required):
    assert required["algorithm"] == "SHA-256"
    assert required["maxnumber"] == 2000
    assert "expires=" in required["salt"]
    # Only from that address.
    assert post_token(api_client, "bob", ip=OTHER_IP).status_code == 200


def test_a_solved_challenge_lets_the_login_through(api_client, required):
    response = post_token(api_client, "bob", ip=IP, solution=solve(required))
    assert response.status_code == 200
    assert "token" in response.json()


def test_a_solved_challenge_with_wrong_credentials_is_still_a_wrong_login(api_client, required):
    assert post_token(api_client, "bob", "wrong-password", ip=IP, solution=solve(required)).status_code == 400


def test_a_wrong_solution_is_refused_with_a_fresh_challenge(api_client, required):
    right = altcha.solve_challenge_v1(required["challenge"], required["salt"], "SHA-256", 2000).number
    response = post_token(api_client, "bob", ip=IP, solution=solve(required, number=right + 1))
    fresh = assert_challenge_required(response)
    assert "wrong" in response.json()["detail"]
    assert fresh["challenge"] != required["challenge"]


def test_a_replayed_solution_is_refused(api_client, required):
    solution = solve(required)
    assert post_token(api_client, "bob", ip=IP, solution=solution).status_code == 200
    response = post_token(api_client, "bob", ip=IP, solution=solution)
    assert_challenge_required(response)
    assert "already used" in response.json()["detail"]


def test_an_expired_challenge_is_refused(api_client, required):
    # Made and signed as the server makes them, but its expiry has passed.
    expired = altcha.create_challenge_v1(
        algorithm="SHA-256", max_number=2000, hmac_key=hmac_key(), expires=timezone.now() - timedelta(seconds=1)
    )
    challenge = {**expired.to_dict(), "maxnumber": expired.max_number}
    response = post_token(api_client, "bob", ip=IP, solution=solve(challenge))
    assert_challenge_required(response)
    assert "expired" in response.json()["detail"]


def test_a_challenge_signed_with_another_key_is_refused(api_client, required):
    forged = altcha.create_challenge_v1(
        algorithm="SHA-256", max_number=2000, hmac_key=b"not-our-key", expires=timezone.now() + timedelta(minutes=5)
    )
    challenge = {**forged.to_dict(), "maxnumber": forged.max_number}
    assert_challenge_required(post_token(api_client, "bob", ip=IP, solution=solve(challenge)))


@pytest.mark.parametrize("garbage", ["not base64!", "bm90IGpzb24=", "W10=", "e30=", "x" * 5000])
def test_a_malformed_solution_is_a_precise_428_not_a_500(api_client, required, garbage):
    response = post_token(api_client, "bob", ip=IP, solution=garbage)
    assert_challenge_required(response)
    assert "not a valid payload" in response.json()["detail"]


# --- The admin login ---------------------------------------------------------------------------------


def admin_login(client, username: str, password: str = PASSWORD, *, solution: str | None = None):
    data = {"username": username, "password": password, "next": "/admin/"}
    if solution is not None:
        data["altcha"] = solution
    return client.post(ADMIN_LOGIN, data, REMOTE_ADDR=IP)


def widget_challenge(response) -> dict | None:
    """The challenge the login page embeds for abuse/challenge.js, or None when it shows no widget."""
    found = re.search(rb'<script id="abuse-challenge-data" type="application/json">(.*?)</script>', response.content)
    return json.loads(found.group(1)) if found else None


@pytest.fixture
def staff(make_user):
    return make_user(username="operator", is_staff=True)


def test_the_admin_login_shows_no_widget_until_needed(client, staff):
    response = client.get(ADMIN_LOGIN, REMOTE_ADDR=IP)
    assert response.status_code == 200
    assert widget_challenge(response) is None
    assert b"abuse/challenge.js" not in response.content


def test_after_failures_the_admin_login_shows_the_widget_and_refuses_a_post_without_solution(client, staff):
    for _ in range(2):
        assert admin_login(client, "operator", "wrong-password").status_code == 200
    page = client.get(ADMIN_LOGIN, REMOTE_ADDR=IP)
    assert widget_challenge(page) is not None
    assert b"abuse/challenge.js" in page.content
    failures_before = AuditEntry.objects.filter(kind="admin_login_failed").count()

    refused = admin_login(client, "operator")  # the right password, but no solution
    assert refused.status_code == 428
    assert b"needs a solved challenge" in refused.content
    assert b'id="login-form"' in refused.content
    assert widget_challenge(refused) is not None
    assert SESSION_KEY not in client.session
    # Not passed to authentication: no failed login recorded.
    assert AuditEntry.objects.filter(kind="admin_login_failed").count() == failures_before


def test_the_admin_login_with_a_solved_challenge_logs_in(client, staff):
    for _ in range(2):
        admin_login(client, "operator", "wrong-password")
    challenge = widget_challenge(client.get(ADMIN_LOGIN, REMOTE_ADDR=IP))
    response = admin_login(client, "operator", solution=solve(challenge))
    assert response.status_code == 302
    assert client.session[SESSION_KEY] == str(staff.pk)


def test_the_admin_login_refuses_a_wrong_solution(client, staff):
    for _ in range(2):
        admin_login(client, "operator", "wrong-password")
    challenge = widget_challenge(client.get(ADMIN_LOGIN, REMOTE_ADDR=IP))
    right = altcha.solve_challenge_v1(challenge["challenge"], challenge["salt"], "SHA-256", 2000).number
    response = admin_login(client, "operator", solution=solve(challenge, number=right + 1))
    assert response.status_code == 428
    assert b"wrong" in response.content
    assert SESSION_KEY not in client.session


def test_failed_logins_through_either_door_count_together(client, bob):
    admin_login(client, "bob", "wrong-password")
    api = APIClient()
    assert post_token(api, "bob", "wrong-password", ip=IP).status_code == 400
    assert_challenge_required(post_token(api, "bob", ip=IP))


def test_the_failed_login_that_reaches_the_threshold_already_shows_the_widget(client, staff):
    assert widget_challenge(admin_login(client, "operator", "wrong-password")) is None
    assert widget_challenge(admin_login(client, "operator", "wrong-password")) is not None


def test_with_admin_otp_the_otp_login_page_shows_the_widget_too(client, staff, settings):
    settings.ADMIN_REQUIRE_OTP = True
    for _ in range(2):
        admin_login(client, "operator", "wrong-password")
    page = client.get(ADMIN_LOGIN, REMOTE_ADDR=IP)
    assert b'name="otp_token"' in page.content  # django-otp's form
    assert widget_challenge(page) is not None
    refused = admin_login(client, "operator")
    assert refused.status_code == 428
    assert b'name="otp_token"' in refused.content
    assert widget_challenge(refused) is not None
