"""API tokens: hashed at rest, expiring, revocable one by one or all at once, never shown in the admin."""

import hashlib
import subprocess
import sys
from datetime import datetime, timedelta
from html.parser import HTMLParser
from importlib import import_module
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken
from tests.factories import api_token

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "/api/v1/auth/token/"
LOGOUT = "/api/v1/auth/logout/"
LOGOUT_ALL = "/api/v1/auth/logout-all/"
GIFTS = "/api/v1/gifts/"
PASSWORD = "correct-horse-battery"  # make_user's default
TOKENS_ADMIN = "/admin/accounts/apitoken/"


def log_in(username: str) -> dict:
    response = APIClient().post(TOKEN, {"username": username, "password": PASSWORD}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def client_with(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def works(token: str) -> bool:
    """Whether the API takes `token`: 200 on the gift list, or the contract's 401."""
    response = client_with(token).get(GIFTS)
    if response.status_code == 401:
        assert response.json()["code"] == "not_authenticated"
        return False
    assert response.status_code == 200, response.content
    return True


def ttl() -> timedelta:
    return timedelta(seconds=django_settings.API_TOKEN_TTL)


# --- Logging in ----------------------------------------------------------------------------------


def test_logging_in_answers_a_token_and_when_it_expires(make_user):
    make_user(username="bob")
    before = timezone.now()

    body = log_in("bob")

    after = timezone.now()
    assert set(body) == {"token", "expires_at"}
    expires_at = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert before + ttl() <= expires_at <= after + ttl()
    assert works(body["token"])


def test_tokens_last_ten_hours_unless_configured():
    assert django_settings.API_TOKEN_TTL == 36000
    assert django_settings.REST_KNOX["TOKEN_TTL"] == timedelta(hours=10)
    assert django_settings.REST_KNOX["AUTO_REFRESH"] is False


@pytest.mark.parametrize("variable", ["API_TOKEN_TTL", "API_TOKEN_LIMIT_PER_USER"])
def test_the_settings_refuse_a_token_setting_that_is_not_positive(variable):
    result = subprocess.run(
        [sys.executable, "-c", "import django; from django.conf import settings; settings.INSTALLED_APPS"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_DEBUG": "true",
            variable: "0",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {variable} must be a positive" in result.stderr


def test_an_expired_token_is_refused_and_forgotten(user):
    token = api_token(user)
    assert works(token)
    ApiToken.objects.filter(user=user).update(expiry=timezone.now() - timedelta(seconds=1))

    assert not works(token)
    assert not ApiToken.objects.filter(user=user).exists()


def test_a_login_beyond_the_limit_revokes_the_oldest_tokens_and_drops_expired_ones(settings, make_user):
    settings.REST_KNOX = {**settings.REST_KNOX, "TOKEN_LIMIT_PER_USER": 2}
    bob = make_user(username="bob")
    oldest, older, expired = api_token(bob), api_token(bob), api_token(bob)
    now = timezone.now()
    for token, minutes in [(oldest, 3), (older, 2), (expired, 1)]:
        ApiToken.objects.filter(token_key=token[:15]).update(created=now - timedelta(minutes=minutes))
    ApiToken.objects.filter(token_key=expired[:15]).update(expiry=now - timedelta(seconds=1))

    newest = log_in("bob")["token"]

    assert ApiToken.objects.filter(user=bob).count() == 2
    assert [works(token) for token in (oldest, older, newest)] == [False, True, True]


@pytest.mark.parametrize(
    "header", ["Token \xe9t\xe9", "Token \xff\xfe", "Token ", "Token a b", "Token not-a-real-token"]
)
def test_a_malformed_or_unknown_token_is_a_401_not_a_500(db, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get(GIFTS)
    assert (response.status_code, response.json()["code"]) == (401, "not_authenticated")


# --- Logging out ---------------------------------------------------------------------------------


def test_logout_revokes_only_the_token_used(user):
    used, other = api_token(user), api_token(user)

    response = client_with(used).post(LOGOUT)

    assert response.status_code == 204
    assert not works(used)
    assert works(other)


def test_logout_all_revokes_every_token_of_the_user_and_nobody_elses(user, make_user):
    used, other = api_token(user), api_token(user)
    someone_elses = api_token(make_user())

    response = client_with(used).post(LOGOUT_ALL)

    assert response.status_code == 204
    assert (works(used), works(other), works(someone_elses)) == (False, False, True)


@pytest.mark.parametrize("path", [LOGOUT, LOGOUT_ALL])
def test_logging_out_needs_a_valid_token(db, path):
    assert APIClient().post(path).json() == {
        "code": "not_authenticated",
        "detail": "Authentication credentials were not provided.",
    }
    response = client_with("0" * 64).post(path)
    assert (response.status_code, response.json()["code"]) == (401, "not_authenticated")


# --- At rest -------------------------------------------------------------------------------------


def every_value_in_the_database() -> list[str]:
    """Every value of every row of every table, as text (raw SQL: what a database dump holds)."""
    quote = connection.ops.quote_name
    values = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {quote(table)}")
            values.extend(str(value) for row in cursor.fetchall() for value in row)
    return values


def test_the_database_holds_no_token_only_its_digest(make_user):
    make_user(username="bob")
    token = log_in("bob")["token"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM knox_authtoken")
        [row] = cursor.fetchall()

    assert not [value for value in row if token in str(value)]
    assert hashlib.sha512(token.encode()).hexdigest() in row
    assert not [value for value in every_value_in_the_database() if token in value]


# --- The admin -----------------------------------------------------------------------------------


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def visible_text(response) -> str:
    """What a page shows (its text nodes, not its links and form values)."""
    parser = _Text()
    parser.feed(response.content.decode())
    return " ".join(parser.parts)


@pytest.fixture
def superuser_client(client, make_user):
    client.force_login(make_user(username="root", is_staff=True, is_superuser=True))
    return client


def test_the_admin_lists_and_shows_tokens_without_the_token_or_its_digest(superuser_client, make_user):
    make_user(username="bob")
    token = log_in("bob")["token"]
    digest = ApiToken.objects.get().digest

    listing = superuser_client.get(TOKENS_ADMIN)
    page = superuser_client.get(reverse("admin:accounts_apitoken_change", args=[digest]))

    for response in (listing, page):
        assert response.status_code == 200
        assert token not in response.content.decode()
        assert token[:15] in visible_text(response)  # the prefix tells tokens apart
        assert "bob" in visible_text(response)
        assert digest not in visible_text(response)
    assert superuser_client.get(f"{TOKENS_ADMIN}add/").status_code == 403  # knox's add page shows the new token


def test_knox_and_drf_token_admins_are_gone(superuser_client):
    assert superuser_client.get("/admin/knox/authtoken/").status_code == 404
    assert superuser_client.get("/admin/authtoken/tokenproxy/").status_code == 404


def test_staff_revoke_selected_tokens(superuser_client, make_user):
    bob, carol = make_user(username="bob"), make_user(username="carol")
    revoked, kept = api_token(bob), api_token(carol)
    digest = ApiToken.objects.get(user=bob).digest

    response = superuser_client.post(
        TOKENS_ADMIN, {"action": "revoke_selected", "_selected_action": [digest]}, follow=True
    )

    assert "Revoked 1 token(s)" in visible_text(response)
    assert (works(revoked), works(kept)) == (False, True)
    [entry] = LogEntry.objects.all()
    assert entry.is_deletion() and digest not in entry.object_repr


# --- The schema ----------------------------------------------------------------------------------


def test_the_token_endpoints_are_documented(api_client, db):
    schema = api_client.get("/api/schema/?format=json").json()
    token = schema["paths"][TOKEN]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    output = schema["components"]["schemas"][token["$ref"].rsplit("/", 1)[-1]]
    assert set(output["required"]) == {"token", "expires_at"}
    assert output["properties"]["expires_at"]["format"] == "date-time"
    for path in (LOGOUT, LOGOUT_ALL):
        operation = schema["paths"][path]["post"]
        assert set(operation["responses"]) == {"204", "401"}
        assert "requestBody" not in operation
        assert operation["security"] == [{"knoxApiToken": []}]
    scheme = schema["components"]["securitySchemes"]["knoxApiToken"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "Authorization")


# --- DRF's plaintext tokens, carried over ------------------------------------------------------

LEGACY_KEY = "0123456789abcdef0123456789abcdef01234567"  # DRF's keys: 40 hex characters
DRF_MIGRATIONS = ["0001_initial", "0002_auto_20160226_1747", "0003_tokenproxy", "0004_alter_tokenproxy_options"]


def migrate(app: str, name: str) -> None:
    MigrationExecutor(connection).migrate([(app, name)])


def create_drf_token_table() -> None:
    """authtoken_token made by DRF's own migrations, recorded as applied: the database of a deployment before this one.

    Applied one by one, as the executor would: DRF's authtoken is no longer an
    installed app, and installing it in a test (override_settings) would reload
    the admin with DRF's token models already imported as abstract.
    """
    state = MigrationExecutor(connection).loader.project_state()
    for name in DRF_MIGRATIONS:
        migration = import_module(f"rest_framework.authtoken.migrations.{name}").Migration(name, "authtoken")
        with connection.schema_editor() as editor:
            state = migration.apply(state, editor)
        MigrationRecorder(connection).record_applied("authtoken", name)


@pytest.mark.django_db(transaction=True)
def test_legacy_plaintext_tokens_become_hashed_and_expiring_and_their_table_is_dropped(make_user):
    alice = make_user(username="alice")
    migrate("accounts", "0001_initial")
    create_drf_token_table()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO authtoken_token (key, user_id, created) VALUES (%s, %s, %s)",
            [LEGACY_KEY, alice.pk, timezone.now()],
        )
    before = timezone.now()

    migrate("accounts", "0002_hash_legacy_tokens")

    after = timezone.now()
    assert "authtoken_token" not in connection.introspection.table_names()
    assert not [app for app, _ in MigrationRecorder(connection).applied_migrations() if app == "authtoken"]
    assert not [value for value in every_value_in_the_database() if LEGACY_KEY in value]
    token = ApiToken.objects.get()
    assert (token.user, token.token_key) == (alice, LEGACY_KEY[:15])
    assert token.digest == hashlib.sha512(LEGACY_KEY.encode()).hexdigest()
    assert before + ttl() <= token.expiry <= after + ttl()
    assert works(LEGACY_KEY)  # clients keep their key until it expires


@pytest.mark.django_db(transaction=True)
def test_the_migration_has_nothing_to_do_without_drf_tokens(user):
    token = api_token(user)
    migrate("accounts", "0001_initial")

    migrate("accounts", "0002_hash_legacy_tokens")

    assert works(token)
    assert ApiToken.objects.count() == 1
