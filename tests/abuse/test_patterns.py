"""Request-pattern analysis from outside: each pattern flags the client (challenge), a repeat blocks it (429)."""

import uuid

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from abuse.models import Block
from audit.models import AuditEntry
from tests.abuse.helpers import ADMIN_LOGIN, assert_challenge_required, post_token, solve
from tests.factories import api_token

ATTACKER = "203.0.113.66"
BYSTANDER = "198.51.100.7"
GIFTS = "/api/v1/gifts/"


@pytest.fixture(autouse=True)
def small_thresholds(settings):
    settings.ABUSE_ANALYSIS_ENABLED = True
    settings.ABUSE_ERROR_COUNT = 4
    settings.ABUSE_ERROR_RATIO = 0.5
    settings.ABUSE_ENUMERATION_IDS = 3
    settings.ABUSE_SPRAY_USERNAMES = 3
    settings.ABUSE_RECIPIENT_BURST = 3
    settings.ABUSE_BLOCK_SECONDS = 600
    settings.CHALLENGE_AFTER_FAILURES = 1000  # only a flag asks for the challenge here
    settings.CHALLENGE_MAX_NUMBER = 2000
    settings.RATELIMIT_TOKEN_IP = settings.RATELIMIT_ADMIN_LOGIN_IP = "1000/m"
    settings.RATELIMIT_GIFT_USER = settings.RATELIMIT_GIFT_IP = "1000/m"


@pytest.fixture
def bob(make_user):
    return make_user(username="bob")


def audit_kinds(subject: str) -> list[str]:
    return list(AuditEntry.objects.filter(subject=subject).order_by("id").values_list("kind", flat=True))


def assert_blocked(response) -> int:
    assert response.status_code == 429, response.content
    body = response.json()
    assert body["code"] == "blocked"
    assert body["detail"]
    retry_after = int(response["Retry-After"])
    assert 0 < retry_after <= 600
    return retry_after


def sweep(client, count: int, ip: str = ATTACKER) -> None:
    for _ in range(count):
        assert client.get(f"/wp-admin/{uuid.uuid4().hex}.php", REMOTE_ADDR=ip).status_code == 404


def lift_in_admin(make_user, block: Block) -> None:
    operator = make_user(username=f"operator-{uuid.uuid4().hex[:6]}", is_staff=True, is_superuser=True)
    admin = APIClient()
    admin.force_login(operator)
    listing = admin.get("/admin/abuse/block/?state=current", REMOTE_ADDR=BYSTANDER)
    assert listing.status_code == 200
    assert block.reason.encode() in listing.content
    response = admin.post(
        "/admin/abuse/block/",
        {"action": "lift_selected", "_selected_action": [block.pk]},
        REMOTE_ADDR=BYSTANDER,
    )
    assert response.status_code == 302
    block.refresh_from_db()
    assert block.lifted_by == operator and block.lifted_at is not None


def test_an_error_sweep_flags_then_blocks_the_ip_and_staff_can_lift_it(api_client, bob, make_user):
    sweep(api_client, 3)
    assert post_token(api_client, "bob", ip=ATTACKER).status_code == 200  # not yet: 3 errors of 4 requests

    sweep(api_client, 1)  # 4 errors of 5 requests: flagged
    assert audit_kinds(f"ip:{ATTACKER}") == ["client_flagged"]
    assert_challenge_required(post_token(api_client, "bob", ip=ATTACKER))
    assert post_token(api_client, "bob", ip=BYSTANDER).status_code == 200  # others are not affected

    sweep(api_client, 4)  # the pattern again while flagged: blocked
    assert audit_kinds(f"ip:{ATTACKER}") == ["client_flagged", "client_blocked"]
    assert_blocked(api_client.get(GIFTS, REMOTE_ADDR=ATTACKER))
    assert_blocked(post_token(api_client, "bob", ip=ATTACKER))
    assert api_client.get("/healthz", REMOTE_ADDR=ATTACKER).status_code == 200  # probes always answer
    assert post_token(api_client, "bob", ip=BYSTANDER).status_code == 200

    block = Block.objects.get()
    assert (block.subject_kind, block.subject, block.pattern) == ("ip", ATTACKER, "error_sweep")
    assert "4 of" in block.reason and "400/401/404" in block.reason
    lift_in_admin(make_user, block)
    assert audit_kinds(f"ip:{ATTACKER}")[-1] == "block_lifted"
    assert post_token(api_client, "bob", ip=ATTACKER).status_code == 200  # back in, and no longer flagged


def test_a_low_error_ratio_is_not_a_sweep(api_client, bob, settings):
    for _ in range(5):
        assert post_token(api_client, "bob", ip=ATTACKER).status_code == 200
    sweep(api_client, 4)  # 4 errors of 9 requests: under half
    assert audit_kinds(f"ip:{ATTACKER}") == []
    assert post_token(api_client, "bob", ip=ATTACKER).status_code == 200


def test_id_enumeration_flags_then_blocks_the_user_everywhere(bob, settings):
    settings.ABUSE_ERROR_COUNT = 1000  # this test is about the enumeration alone
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(bob)}")
    for _ in range(3):
        assert client.get(f"{GIFTS}{uuid.uuid4()}/", REMOTE_ADDR=ATTACKER).status_code == 404
    assert audit_kinds(f"user:{bob.pk}") == ["client_flagged"]
    assert audit_kinds(f"ip:{ATTACKER}") == ["client_flagged"]
    # The same id again and again is not enumeration.
    same = uuid.uuid4()
    for _ in range(3):
        assert client.get(f"{GIFTS}{same}/", REMOTE_ADDR=ATTACKER).status_code == 404
    assert audit_kinds(f"user:{bob.pk}") == ["client_flagged"]

    for _ in range(2):
        assert client.get(f"{GIFTS}{uuid.uuid4()}/", REMOTE_ADDR=ATTACKER).status_code == 404
    assert "client_blocked" in audit_kinds(f"user:{bob.pk}")
    # The user is blocked from any address, with any of their tokens.
    elsewhere = APIClient()
    elsewhere.credentials(HTTP_AUTHORIZATION=f"Token {api_token(bob)}")
    assert_blocked(elsewhere.get(GIFTS, REMOTE_ADDR=BYSTANDER))
    user_block = Block.objects.get(subject_kind="user")
    assert user_block.subject == str(bob.pk)
    assert "id_enumeration" in user_block.reason
    # Someone else, from another address, is not affected.
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Token {api_token(get_user_model().objects.create_user('carol'))}")
    assert other.get(GIFTS, REMOTE_ADDR=BYSTANDER).status_code == 200


def test_credential_spraying_through_both_logins_flags_then_blocks_the_ip(api_client, client, bob, settings):
    settings.ABUSE_ERROR_COUNT = 1000  # this test is about the usernames alone
    assert post_token(api_client, "alice", "guess", ip=ATTACKER).status_code == 400
    assert post_token(api_client, "bob", "guess", ip=ATTACKER).status_code == 400
    assert post_token(api_client, "bob", "guess", ip=ATTACKER).status_code == 400  # the same username again
    assert audit_kinds(f"ip:{ATTACKER}") == []
    login = {"username": "carol", "password": "guess", "next": "/admin/"}
    assert client.post(ADMIN_LOGIN, login, REMOTE_ADDR=ATTACKER).status_code == 200
    assert audit_kinds(f"ip:{ATTACKER}") == ["client_flagged"]

    # Flagged: each further try costs a solved challenge, and three more usernames block the address.
    for username in ("dave", "erin", "frank"):
        challenge = assert_challenge_required(post_token(api_client, username, "guess", ip=ATTACKER))
        response = post_token(api_client, username, "guess", ip=ATTACKER, solution=solve(challenge))
        assert response.status_code == 400
    assert audit_kinds(f"ip:{ATTACKER}") == ["client_flagged", "client_blocked"]
    assert_blocked(post_token(api_client, "bob", ip=ATTACKER))
    assert "credential_spraying" in Block.objects.get().reason
    assert post_token(api_client, "bob", ip=BYSTANDER).status_code == 200


def test_a_burst_of_recipients_flags_then_blocks_the_sender(bob, make_user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(bob)}")

    def gift(recipient: str):
        body = {"recipient_email": recipient, "amount": "5.00", "currency": "EUR"}
        return client.post(GIFTS, body, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()), REMOTE_ADDR=ATTACKER)

    for _ in range(3):
        assert gift("same@example.com").status_code == 202  # one recipient, however often
    # The canonical form counts: sub-addresses of one mailbox are one recipient.
    assert gift("same+x@example.com").status_code == 202
    assert audit_kinds(f"user:{bob.pk}") == []
    for name in ("r1", "r2"):
        assert gift(f"{name}@example.com").status_code == 202
    assert audit_kinds(f"user:{bob.pk}") == ["client_flagged"]
    assert_challenge_required(post_token(APIClient(), "bob", ip=ATTACKER))  # its address logs in with a challenge

    for name in ("r3", "r4", "r5"):
        assert gift(f"{name}@example.com").status_code == 202
    assert audit_kinds(f"user:{bob.pk}") == ["client_flagged", "client_blocked"]
    assert_blocked(gift("r6@example.com"))
    block = Block.objects.get(subject_kind="user")
    assert "recipient_burst" in block.reason
    # The analysis keeps blind indexes only: no address in the block, the audit log or the cache.
    assert "example.com" not in block.reason
    assert not any("example.com" in str(entry.details) for entry in AuditEntry.objects.all())

    lift_in_admin(make_user, block)
    assert client.get(GIFTS, REMOTE_ADDR=ATTACKER).status_code == 200


def test_staff_signed_in_to_the_admin_are_never_blocked_there(api_client, make_user):
    operator = make_user(username="operator", is_staff=True, is_superuser=True)
    admin = APIClient()
    admin.force_login(operator)
    sweep(api_client, 8)  # the operator's address sweeps (a shared NAT, a script gone wrong): blocked
    assert Block.objects.filter(subject=ATTACKER).exists()
    assert admin.get("/admin/abuse/block/", REMOTE_ADDR=ATTACKER).status_code == 200
    refused = api_client.get("/admin/", REMOTE_ADDR=ATTACKER)  # not signed in: the admin's refusal page
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert_blocked(admin.get(GIFTS, REMOTE_ADDR=ATTACKER))


def test_analysis_switched_off_counts_nothing(api_client, bob, settings):
    settings.ABUSE_ANALYSIS_ENABLED = False
    sweep(api_client, 10)
    assert audit_kinds(f"ip:{ATTACKER}") == []
    assert post_token(api_client, "bob", ip=ATTACKER).status_code == 200


def test_with_the_cache_down_the_analysis_fails_open_and_says_so(settings, user, caplog):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")

    with caplog.at_level("WARNING", logger="abuse.middleware"):
        response = client.get(f"{GIFTS}{uuid.uuid4()}/", REMOTE_ADDR=ATTACKER)

    assert response.status_code == 404  # answered: the analysis is an extra layer, not a gate
    messages = [record.getMessage() for record in caplog.records]
    assert any(message.startswith("block list unavailable") for message in messages)
    assert any(message.startswith("request-pattern analysis unavailable") for message in messages)
