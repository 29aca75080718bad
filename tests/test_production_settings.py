"""Production settings fail closed.

Each test loads config/settings.py in a fresh process with a production
environment (nothing inherited from this test run, no .env), as a deployment
would: DEBUG is off unless turned on, development secrets are refused,
`check --deploy` has nothing to say with the six documented variables, every
security setting can be changed from the environment, and no connection to
another host may travel in clear.
"""

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from config import transport_security

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "hunter2-do-not-echo"

# The contract (DESIGN.md, Data protection): these six and DJANGO_DEBUG=false are all production must set.
PRODUCTION = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_ALLOWED_HOSTS": "gifts.example.com",
    "DATABASE_URL": "postgres://gifts@127.0.0.1:5432/gifts",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    "BLIND_INDEX_KEY": secrets.token_urlsafe(32),
}

SECURITY_SETTINGS = [
    "DEBUG",
    "SECURE_SSL_REDIRECT",
    "SECURE_REDIRECT_EXEMPT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_CONTENT_TYPE_NOSNIFF",
    "SECURE_REFERRER_POLICY",
    "SECURE_CROSS_ORIGIN_OPENER_POLICY",
    "SECURE_PROXY_SSL_HEADER",
    "X_FRAME_OPTIONS",
    "SESSION_COOKIE_SECURE",
    "SESSION_COOKIE_HTTPONLY",
    "SESSION_COOKIE_SAMESITE",
    "CSRF_COOKIE_SECURE",
    "CSRF_COOKIE_SAMESITE",
    "CSRF_TRUSTED_ORIGINS",
    "STORAGES",
]
PRINT_SETTINGS = (
    f"import json, config.settings as s; print(json.dumps({{n: getattr(s, n) for n in {SECURITY_SETTINGS!r}}}))"
)


def run(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    """Python in a fresh process with exactly this environment (plus no .env and a metrics directory)."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={"DJANGO_ENV_FILE": "", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"), **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def load_settings(tmp_path: Path, **env: str) -> dict:
    result = run(["-c", PRINT_SETTINGS], env, tmp_path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def refusal(tmp_path: Path, **env: str) -> str:
    """The error of settings that refuse to load."""
    result = run(["-c", "import config.settings"], env, tmp_path)
    assert result.returncode != 0, "the settings loaded"
    assert "ImproperlyConfigured" in result.stderr
    return result.stderr.strip().splitlines()[-1]


def production(**changes: str | None) -> dict[str, str]:
    env = {**PRODUCTION, **changes}
    return {name: value for name, value in env.items() if value is not None}


# --- DEBUG and the secret key ---------------------------------------------------------------------


def test_debug_is_off_unless_the_environment_turns_it_on(tmp_path):
    assert load_settings(tmp_path, **production(DJANGO_DEBUG=None))["DEBUG"] is False
    assert load_settings(tmp_path, DJANGO_DEBUG="true")["DEBUG"] is True


def test_refuses_the_development_secret_key_when_debug_is_not_turned_on(tmp_path):
    assert "DJANGO_SECRET_KEY must be set" in refusal(tmp_path, **production(DJANGO_DEBUG=None, DJANGO_SECRET_KEY=None))


def test_refuses_to_start_without_a_shared_cache(tmp_path):
    assert "REDIS_URL must be set" in refusal(tmp_path, **production(REDIS_URL=None))


def test_a_dotenv_file_is_read_and_the_environment_wins_over_it(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("DJANGO_DEBUG=true\n")

    assert load_settings(tmp_path, DJANGO_ENV_FILE=str(dotenv))["DEBUG"] is True
    assert load_settings(tmp_path, **production(), DJANGO_ENV_FILE=str(dotenv))["DEBUG"] is False


# --- check --deploy and the security settings ------------------------------------------------------


def test_check_deploy_passes_with_only_the_six_production_variables(tmp_path):
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], PRODUCTION, tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_fails_when_a_secure_default_is_turned_off(tmp_path):
    env = production(DJANGO_SECURE_HSTS_SECONDS="0")
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env, tmp_path)

    assert result.returncode != 0
    assert "security.W004" in result.stderr


def test_secure_defaults_with_debug_off(tmp_path):
    values = load_settings(tmp_path, **PRODUCTION)

    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SECURE_HSTS_SECONDS"] == 31536000
    assert values["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert values["SECURE_HSTS_PRELOAD"] is True
    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["CSRF_COOKIE_SECURE"] is True
    assert values["SESSION_COOKIE_HTTPONLY"] is True
    assert values["SECURE_CONTENT_TYPE_NOSNIFF"] is True
    assert values["X_FRAME_OPTIONS"] == "DENY"
    assert values["SECURE_REFERRER_POLICY"] == "same-origin"
    assert values["SECURE_PROXY_SSL_HEADER"] is None  # opt-in: only behind a proxy that sets it
    assert values["STORAGES"]["staticfiles"]["BACKEND"] == "whitenoise.storage.CompressedManifestStaticFilesStorage"


def test_development_defaults_with_debug_on(tmp_path):
    values = load_settings(tmp_path, DJANGO_DEBUG="true")

    assert values["SECURE_SSL_REDIRECT"] is False
    assert values["SECURE_HSTS_SECONDS"] == 0
    assert values["SESSION_COOKIE_SECURE"] is False
    assert values["STORAGES"]["staticfiles"]["BACKEND"] == "django.contrib.staticfiles.storage.StaticFilesStorage"


@pytest.mark.parametrize(
    ("variable", "value", "setting", "expected"),
    [
        ("DJANGO_SECURE_SSL_REDIRECT", "false", "SECURE_SSL_REDIRECT", False),
        ("DJANGO_SECURE_REDIRECT_EXEMPT", r"^healthz$,^status/", "SECURE_REDIRECT_EXEMPT", ["^healthz$", "^status/"]),
        ("DJANGO_SECURE_HSTS_SECONDS", "3600", "SECURE_HSTS_SECONDS", 3600),
        ("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", "false", "SECURE_HSTS_INCLUDE_SUBDOMAINS", False),
        ("DJANGO_SECURE_HSTS_PRELOAD", "false", "SECURE_HSTS_PRELOAD", False),
        ("DJANGO_SECURE_CONTENT_TYPE_NOSNIFF", "false", "SECURE_CONTENT_TYPE_NOSNIFF", False),
        ("DJANGO_SECURE_REFERRER_POLICY", "no-referrer", "SECURE_REFERRER_POLICY", "no-referrer"),
        ("DJANGO_SECURE_CROSS_ORIGIN_OPENER_POLICY", "unsafe-none", "SECURE_CROSS_ORIGIN_OPENER_POLICY", "unsafe-none"),
        ("DJANGO_X_FRAME_OPTIONS", "SAMEORIGIN", "X_FRAME_OPTIONS", "SAMEORIGIN"),
        ("DJANGO_SESSION_COOKIE_SECURE", "false", "SESSION_COOKIE_SECURE", False),
        ("DJANGO_SESSION_COOKIE_HTTPONLY", "false", "SESSION_COOKIE_HTTPONLY", False),
        ("DJANGO_SESSION_COOKIE_SAMESITE", "Strict", "SESSION_COOKIE_SAMESITE", "Strict"),
        ("DJANGO_CSRF_COOKIE_SECURE", "false", "CSRF_COOKIE_SECURE", False),
        ("DJANGO_CSRF_COOKIE_SAMESITE", "Strict", "CSRF_COOKIE_SAMESITE", "Strict"),
        (
            "DJANGO_CSRF_TRUSTED_ORIGINS",
            "https://gifts.example.com,https://admin.example.com",
            "CSRF_TRUSTED_ORIGINS",
            ["https://gifts.example.com", "https://admin.example.com"],
        ),
    ],
)
def test_each_security_setting_comes_from_the_environment(tmp_path, variable, value, setting, expected):
    assert load_settings(tmp_path, **production(**{variable: value}))[setting] == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("HTTP_X_FORWARDED_PROTO", ["HTTP_X_FORWARDED_PROTO", "https"]),
        ("HTTP_X_FORWARDED_SSL=on", ["HTTP_X_FORWARDED_SSL", "on"]),
    ],
)
def test_the_proxy_ssl_header_is_opt_in_behind_trusted_proxies(tmp_path, value, expected):
    env = production(DJANGO_SECURE_PROXY_SSL_HEADER=value, TRUSTED_PROXY_HOPS="1")
    assert load_settings(tmp_path, **env)["SECURE_PROXY_SSL_HEADER"] == expected


def test_the_proxy_ssl_header_is_refused_without_a_trusted_proxy(tmp_path):
    error = refusal(tmp_path, **production(DJANGO_SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO"))
    assert "DJANGO_SECURE_PROXY_SSL_HEADER" in error and "TRUSTED_PROXY_HOPS" in error


def test_the_proxy_ssl_header_must_be_named_as_django_sees_it(tmp_path):
    error = refusal(tmp_path, **production(DJANGO_SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto", TRUSTED_PROXY_HOPS="1"))
    assert "DJANGO_SECURE_PROXY_SSL_HEADER must name a header" in error


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "redirected"),
    [("/healthz", False), ("/readyz", False), ("/metrics", False), ("/admin/login/", True), ("/api/v1/gifts/", True)],
)
def test_plain_http_is_redirected_except_for_probes_and_metrics(client, settings, path, redirected):
    settings.SECURE_SSL_REDIRECT = True  # as with DEBUG off; SECURE_REDIRECT_EXEMPT is the default

    response = client.get(path)

    assert (response.status_code == 301) is redirected
    if redirected:
        assert response["Location"] == f"https://testserver{path}"


# --- Encryption in transit -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EMAIL_URL", f"smtp://gifts:{PASSWORD}@mail.example.com:587"),
        ("DATABASE_URL", f"postgres://gifts:{PASSWORD}@db.example.com:5432/gifts"),
        ("DATABASE_URL", f"postgres://gifts:{PASSWORD}@db.example.com:5432/gifts?sslmode=prefer"),
        ("REDIS_URL", f"redis://:{PASSWORD}@cache.example.com:6379/0"),
        ("SQS_ENDPOINT_URL", "http://sqs.example.com:9324"),
        ("WALLET_PROVIDER_URL", "http://wallets.example.com/credit"),
        ("SITE_URL", "http://gifts.example.com"),
    ],
    ids=["smtp", "postgres", "postgres-prefer", "redis", "sqs", "wallet", "site"],
)
def test_plaintext_to_another_host_is_refused_naming_the_variable(tmp_path, variable, value):
    error = refusal(tmp_path, **production(**{variable: value}))

    assert f"{variable}: " in error
    assert "example.com must" in error
    assert PASSWORD not in error  # the URL is never echoed


def test_the_same_plaintext_urls_are_accepted_with_debug_on(tmp_path):
    env = {
        "DJANGO_DEBUG": "true",
        "EMAIL_URL": "smtp://mail.example.com:587",
        "DATABASE_URL": "postgres://gifts@db.example.com:5432/gifts",
        "REDIS_URL": "redis://cache.example.com:6379/0",
    }
    assert load_settings(tmp_path, **env)["DEBUG"] is True


def test_tls_to_other_hosts_is_accepted(tmp_path):
    env = production(
        EMAIL_URL=f"smtp+tls://gifts:{PASSWORD}@mail.example.com:587",
        DATABASE_URL="postgres://gifts@db.example.com:5432/gifts?sslmode=verify-full",
        REDIS_URL="rediss://cache.example.com:6380/0",
        SQS_ENDPOINT_URL="https://sqs.eu-west-1.amazonaws.com",
        WALLET_PROVIDER_URL="https://wallets.example.com/credit",
        SITE_URL="https://gifts.example.com",
    )
    assert load_settings(tmp_path, **env)["DEBUG"] is False


def test_plaintext_on_loopback_is_accepted(tmp_path):
    env = production(
        EMAIL_URL="smtp://localhost:25",  # a local relay
        DATABASE_URL="postgres://gifts@[::1]:5432/gifts",
        REDIS_URL="redis://127.0.0.2:6379/0",
        SQS_ENDPOINT_URL="http://127.0.0.1:9324",
        WALLET_PROVIDER_URL="http://localhost:8545/credit",  # a TLS-terminating sidecar
        SITE_URL="http://127.0.0.1:8000",
    )
    assert load_settings(tmp_path, **env)["DEBUG"] is False


# The rules themselves, case by case (config/transport_security.py).


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost.example.com", False),
        ("10.0.0.1", False),
        ("0.0.0.0", False),
        ("::", False),
        ("db.example.com", False),
        ("", False),
    ],
)
def test_what_counts_as_loopback(host, loopback):
    assert transport_security.is_loopback(host) is loopback


SMTP = "django.core.mail.backends.smtp.EmailBackend"


@pytest.mark.parametrize(
    ("config", "refused"),
    [
        ({"EMAIL_BACKEND": SMTP, "EMAIL_HOST": "mail.example.com"}, True),
        ({"EMAIL_BACKEND": SMTP, "EMAIL_HOST": "mail.example.com", "EMAIL_USE_TLS": True}, False),
        ({"EMAIL_BACKEND": SMTP, "EMAIL_HOST": "mail.example.com", "EMAIL_USE_SSL": True}, False),
        ({"EMAIL_BACKEND": SMTP, "EMAIL_HOST": "127.0.0.1"}, False),
        ({"EMAIL_BACKEND": SMTP, "EMAIL_HOST": None}, False),  # Django's default: localhost
        ({"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend", "EMAIL_HOST": None}, False),
    ],
)
def test_email_rule(config, refused):
    assert (transport_security.email_problem(config) is not None) is refused


POSTGRES = "django.db.backends.postgresql"


@pytest.mark.parametrize(
    ("config", "libpq_env", "refused"),
    [
        ({"ENGINE": POSTGRES, "HOST": "db.example.com"}, {}, True),
        ({"ENGINE": POSTGRES, "HOST": "db.example.com", "OPTIONS": {"sslmode": "allow"}}, {}, True),
        ({"ENGINE": POSTGRES, "HOST": "db.example.com", "OPTIONS": {"sslmode": "require"}}, {}, False),
        ({"ENGINE": POSTGRES, "HOST": "db.example.com", "OPTIONS": {"sslmode": "verify-ca"}}, {}, False),
        ({"ENGINE": POSTGRES, "HOST": "db.example.com"}, {"PGSSLMODE": "verify-full"}, False),
        ({"ENGINE": POSTGRES, "HOST": "127.0.0.1,db.example.com"}, {}, True),
        ({"ENGINE": POSTGRES, "HOST": "127.0.0.1"}, {}, False),
        ({"ENGINE": POSTGRES, "HOST": ""}, {}, False),  # libpq's Unix socket
        ({"ENGINE": POSTGRES, "HOST": "%2Fvar%2Frun%2Fpostgresql"}, {}, False),
        ({"ENGINE": POSTGRES, "HOST": ""}, {"PGHOST": "db.example.com"}, True),
        ({"ENGINE": "django.db.backends.mysql", "HOST": "db.example.com"}, {}, True),
        ({"ENGINE": "django.db.backends.sqlite3", "HOST": ""}, {}, False),
    ],
)
def test_database_rule(config, libpq_env, refused):
    assert (transport_security.database_problem(config, libpq_env=libpq_env) is not None) is refused


@pytest.mark.parametrize(
    ("location", "refused"),
    [
        ("redis://cache.example.com:6379/0", True),
        ("rediss://cache.example.com:6380/0", False),
        ("redis://127.0.0.1:6379/0", False),
        ("redis:///0", False),  # redis-py's default host: localhost
        ("unix:///run/redis.sock", False),
        ("rediss://primary.example.com,redis://replica.example.com", True),
        ("", False),  # no Redis (refused elsewhere with DEBUG off)
        ("redis://[::1", True),
    ],
)
def test_redis_rule(location, refused):
    assert (transport_security.redis_problem(location) is not None) is refused


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("https://sqs.eu-west-1.amazonaws.com", False),
        ("http://sqs.example.com", True),
        ("http://127.0.0.1:9324", False),
        ("http://[::1]:9324", False),
        ("ftp://127.0.0.1/credit", True),
        ("", False),  # unset: real AWS, or no wallet provider
    ],
)
def test_https_rule(url, refused):
    assert (transport_security.https_problem(url) is not None) is refused
