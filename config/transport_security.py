"""Encryption in transit: which connection settings production refuses.

With DJANGO_DEBUG off, config/settings.py refuses to load when a connection to
another host would travel in clear: SMTP without STARTTLS or implicit TLS,
PostgreSQL without `sslmode=require` or stronger, Redis without `rediss://`,
and SQS, the wallet provider or the links in emails without https. Loopback
is exempt (localhost, 127.0.0.0/8, ::1): a local mail relay, a TLS-terminating
sidecar or a database on the same host puts no byte on a network.

Each function takes a setting as django-environ parsed it and returns why it
is refused, or None. The settings name the variable; the reasons never repeat
a URL, which may hold a password.
"""

import ipaddress
from collections.abc import Mapping
from urllib.parse import SplitResult, unquote, urlsplit

LOOPBACK_NAMES = frozenset({"localhost", "localhost."})
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
# libpq's modes that never fall back to plaintext; "prefer" (its default) and "allow" do.
POSTGRES_TLS_MODES = frozenset({"require", "verify-ca", "verify-full"})


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (bracketed or not, or IPv4-mapped)."""
    name = host.strip().removeprefix("[").removesuffix("]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def email_problem(config: Mapping) -> str | None:
    """SMTP (env.email_url's config) must use STARTTLS or implicit TLS outside loopback."""
    if config.get("EMAIL_BACKEND") != SMTP_BACKEND:
        return None  # console, file, memory: no connection at all
    host = config.get("EMAIL_HOST") or "localhost"  # Django's default host
    if config.get("EMAIL_USE_TLS") or config.get("EMAIL_USE_SSL") or is_loopback(host):
        return None
    return f"SMTP to {host} must use TLS: smtp+tls:// (STARTTLS) or smtp+ssl:// (implicit TLS)"


def database_problem(config: Mapping, *, libpq_env: Mapping[str, str]) -> str | None:
    """PostgreSQL (env.db's config) must use sslmode=require or stronger outside loopback.

    libpq_env is the process environment: libpq takes PGHOST and PGSSLMODE from
    it when the URL names no host or no sslmode.
    """
    engine = config.get("ENGINE", "")
    if engine.endswith("sqlite3"):
        return None  # a file
    hosts = [host.strip() for host in (config.get("HOST") or libpq_env.get("PGHOST", "")).split(",")]
    if all(_is_local_socket(host) or is_loopback(host) for host in hosts):
        return None
    remote = ",".join(host for host in hosts if not (_is_local_socket(host) or is_loopback(host)))
    if "postgresql" not in engine and "postgis" not in engine:
        return f"only PostgreSQL's TLS settings are understood here, and {remote} is not on loopback"
    sslmode = (config.get("OPTIONS") or {}).get("sslmode") or libpq_env.get("PGSSLMODE", "")
    if sslmode in POSTGRES_TLS_MODES:
        return None
    return f"PostgreSQL at {remote} must use TLS: add ?sslmode=verify-full (or verify-ca, require)"


def _is_local_socket(host: str) -> bool:
    """libpq's default (no host), or a Unix-domain socket directory (possibly %-encoded in a URL)."""
    return host == "" or unquote(host).startswith(("/", "@"))


def redis_problem(location: str) -> str | None:
    """Every Redis URL (comma-separated, as Django's cache takes them) must be rediss:// outside loopback."""
    for url in filter(None, (part.strip() for part in location.split(","))):
        parts = _split(url)
        if parts is None:
            return "not a valid URL"
        if parts.scheme in ("rediss", "unix"):
            continue
        host = parts.hostname or "localhost"  # redis-py's default host
        if parts.scheme == "redis" and is_loopback(host):
            continue
        return f"Redis at {host} must use TLS: rediss://"
    return None


def _split(url: str) -> SplitResult | None:
    try:
        return urlsplit(url)
    except ValueError:  # e.g. an unclosed [IPv6 address
        return None


def https_problem(url: str) -> str | None:
    """An HTTP endpoint (SQS, the wallet provider, the site's own links) must be https outside loopback."""
    if not url:
        return None  # unset: real AWS (boto3 speaks https), no wallet provider
    parts = _split(url)
    if parts is None:
        return "not a valid URL"
    if parts.scheme == "https":
        return None
    host = parts.hostname or ""
    if parts.scheme == "http" and is_loopback(host):
        return None
    return f"{host or 'the endpoint'} must be reached over https://"
