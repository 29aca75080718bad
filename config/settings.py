"""The one settings module: every value comes from the environment (12-factor).

Defaults fail closed: DEBUG is off unless DJANGO_DEBUG=true says otherwise
(`make run`, `make test` and .ci/run say so), and with DEBUG off the settings
refuse to load with development secrets or with a connection to another host
in clear. Development defaults exist for everything else.
"""

import ipaddress
import os
import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from config import transport_security
from core import sqs as sqs_facts

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

DEV_SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"  # noqa: S105 - refused when DEBUG is off

env = environ.Env()
# `make run` writes a git-ignored .env (DJANGO_DEBUG=true, nothing secret) so that a newcomer's
# manage.py commands run in development mode too. Variables set in the environment win over it;
# DJANGO_ENV_FILE names another file, or none when empty (the tests of production settings).
ENV_FILE = os.environ.get("DJANGO_ENV_FILE", str(BASE_DIR / ".env"))
if ENV_FILE and os.path.isfile(ENV_FILE):
    environ.Env.read_env(ENV_FILE)


def env_decimal(name: str, *, default: str) -> Decimal:
    """A positive decimal from the environment, or a clear error naming the variable."""
    raw = env.str(name, default=default)
    try:
        value = Decimal(raw)
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or value <= 0:
        raise ImproperlyConfigured(f"{name} must be a positive decimal number, not {raw!r}.")
    return value


SECRET_KEY = env.str("DJANGO_SECRET_KEY", default=DEV_SECRET_KEY)
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])

if not DEBUG and SECRET_KEY == DEV_SECRET_KEY:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off.")

# --- HTTPS, cookies and browser security headers ---------------------------------
# Each is DJANGO_<SETTING> in the environment. With DEBUG off the defaults are the secure ones, and
# `manage.py check --deploy` has nothing to say (tests/test_production_settings.py).
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
# Load balancers' health checks and Prometheus reach the probes and /metrics over plain HTTP from
# inside the network: answer them rather than redirect. Matched against the path without its "/".
SECURE_REDIRECT_EXEMPT = env.list("DJANGO_SECURE_REDIRECT_EXEMPT", default=[r"^healthz$", r"^readyz$", r"^metrics$"])
# One year, subdomains included, and the preload directive (which alone submits nothing to the
# browsers' preload list). Lower DJANGO_SECURE_HSTS_SECONDS while trying HTTPS out: browsers remember.
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = env.bool("DJANGO_SECURE_CONTENT_TYPE_NOSNIFF", default=True)
SECURE_REFERRER_POLICY = env.str("DJANGO_SECURE_REFERRER_POLICY", default="same-origin")
SECURE_CROSS_ORIGIN_OPENER_POLICY = env.str("DJANGO_SECURE_CROSS_ORIGIN_OPENER_POLICY", default="same-origin")
X_FRAME_OPTIONS = env.str("DJANGO_X_FRAME_OPTIONS", default="DENY")
SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=not DEBUG)
SESSION_COOKIE_HTTPONLY = env.bool("DJANGO_SESSION_COOKIE_HTTPONLY", default=True)
SESSION_COOKIE_SAMESITE = env.str("DJANGO_SESSION_COOKIE_SAMESITE", default="Lax")
CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SAMESITE = env.str("DJANGO_CSRF_COOKIE_SAMESITE", default="Lax")
# Origins (scheme://host[:port]) allowed to POST to the admin besides the site's own host.
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
# Behind a TLS-terminating proxy: the request header (as in request.META) that says the client
# spoke HTTPS, e.g. HTTP_X_FORWARDED_PROTO (value https), or NAME=VALUE for another value. Off by
# default: only a proxy that overwrites the header makes it trustworthy (TRUSTED_PROXY_HOPS >= 1).
SECURE_PROXY_SSL_HEADER = None
_proxy_ssl_header = env.str("DJANGO_SECURE_PROXY_SSL_HEADER", default="")
if _proxy_ssl_header:
    _header, _, _value = _proxy_ssl_header.partition("=")
    if not _header.startswith("HTTP_") or not _header.replace("_", "").isalnum():
        raise ImproperlyConfigured(
            "DJANGO_SECURE_PROXY_SSL_HEADER must name a header as Django sees it, e.g. HTTP_X_FORWARDED_PROTO."
        )
    SECURE_PROXY_SSL_HEADER = (_header, _value or "https")

INSTALLED_APPS = [
    "audit.admin_config.HardenedAdminConfig",  # django.contrib.admin, with audit.admin_site as admin.site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",  # before accounts, whose admin replaces knox's
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from our own static files: no CDN
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "accounts",
    "gifting",
    "vouchers",
    "fraud",
    "audit",
    "abuse",
]

MIDDLEWARE = [
    "core.request_id.RequestIdMiddleware",
    # Probes first: answered whatever Host a load balancer sends, never redirected or blocked.
    "core.health.ProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files with DEBUG off too; right after SecurityMiddleware, as whitenoise asks.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After authentication: tells the admin whether the user proved a TOTP code (ADMIN_REQUIRE_OTP).
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.access_log.AccessLogMiddleware",
    # Inside the access log (which so logs its 429s and 428s): blocks, challenges, request-pattern analysis.
    "abuse.middleware.AbuseMiddleware",
    # Last, as django-axes asks: it turns lockouts on the admin login into responses.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # First: refuses locked-out credentials before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
# Persistent connections: gunicorn keeps its connection from request to request, a worker from task to
# task (config/celery.py), the publisher thread from gift to gift, instead of a new PostgreSQL session
# each time; one that broke or outlived this is replaced at the next request, task or gift, and is
# checked before it is reused after a pause.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=300)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so the Celery worker started by the tests sees the same data;
    # one per test run, so two runs in one checkout do not share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    # BEGIN IMMEDIATE: a transaction takes the write lock first and waits (timeout) while another
    # process writes. A deferred one that has read cannot wait for it: SQLite fails it at once
    # ("database is locked"), which web, worker and beat writing together under `make run` hit.
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (rate limits, heartbeats) ------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
elif DEBUG:
    # Per process: rate limits are only approximate with several processes. Development only.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    raise ImproperlyConfigured("REDIS_URL must be set when DJANGO_DEBUG is off: rate limits need a shared cache.")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
# `manage.py collectstatic` gathers the static files here; whitenoise serves them (see MIDDLEWARE).
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", default=str(VAR_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # DEBUG off: collectstatic's compressed files under content-hashed names, which whitenoise lets
    # browsers cache for ever; a page naming a file collectstatic did not gather fails loudly.
    # DEBUG on (make run, tests): plain names served from the apps, no collectstatic needed.
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
if DEBUG:
    # whitenoise then serves from the apps (WHITENOISE_USE_FINDERS follows DEBUG), yet warns about a
    # missing STATIC_ROOT; an empty one keeps development quiet. With DEBUG off the warning matters.
    try:
        STATIC_ROOT.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass

# --- Email ---------------------------------------------------------------------
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="gifts@localhost")
# Bounded so a stuck SMTP server can never hold a gift past the SQS visibility timeout.
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)

# --- REST API ----------------------------------------------------------------
# API tokens (accounts/, django-rest-knox): the database keeps only a digest and a short lookup
# prefix. 10 hours by default: a working day's session, after which a stolen token is worthless;
# clients log in again rather than have a token refreshed by use (AUTO_REFRESH off), so a token
# in use is not a token forever. Each login first drops the user's oldest tokens beyond the limit.
API_TOKEN_TTL = env.int("API_TOKEN_TTL", default=36000)
API_TOKEN_LIMIT_PER_USER = env.int("API_TOKEN_LIMIT_PER_USER", default=10)
if API_TOKEN_TTL <= 0:
    raise ImproperlyConfigured("API_TOKEN_TTL must be a positive number of seconds.")
if API_TOKEN_LIMIT_PER_USER <= 0:
    raise ImproperlyConfigured("API_TOKEN_LIMIT_PER_USER must be a positive number of tokens.")
REST_KNOX = {
    "TOKEN_TTL": timedelta(seconds=API_TOKEN_TTL),
    "AUTH_HEADER_PREFIX": "Token",  # clients keep sending `Authorization: Token …`
    "AUTO_REFRESH": False,
    "TOKEN_LIMIT_PER_USER": API_TOKEN_LIMIT_PER_USER,
}
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.auth.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # DRF's JSONParser, answering too deep and invalid-Unicode JSON with a 400 rather than a 500.
    "DEFAULT_PARSER_CLASSES": ["core.parsers.SafeJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.exception_handler.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Gift a Voucher API",
    "DESCRIPTION": "Gift a voucher by email; issued and delivered asynchronously.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # /api/docs/ loads Swagger UI from this app's static files (drf-spectacular-sidecar), never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- SQS and Celery ----------------------------------------------------------
AWS_REGION = env.str("AWS_REGION", default="us-east-1")
AWS_ACCESS_KEY_ID = env.str("AWS_ACCESS_KEY_ID", default="dev-access-key")
AWS_SECRET_ACCESS_KEY = env.str("AWS_SECRET_ACCESS_KEY", default="dev-secret-key")
SQS_ENDPOINT_URL = env.str("SQS_ENDPOINT_URL", default="http://127.0.0.1:9324") or None
SQS_QUEUE_PREFIX = env.str("SQS_QUEUE_PREFIX", default="dev-")
SQS_VISIBILITY_TIMEOUT = env.int("SQS_VISIBILITY_TIMEOUT", default=60)
SQS_WAIT_TIME_SECONDS = env.int("SQS_WAIT_TIME_SECONDS", default=10)
SQS_MAX_RECEIVE_COUNT = env.int("SQS_MAX_RECEIVE_COUNT", default=5)

CELERY_BROKER_URL = "sqs://"
# Our transport resolves the predefined queues' URLs from SQS (see config/sqs_transport.py);
# queue names, the prefix rule and client timeouts come from core/sqs.py.
CELERY_BROKER_TRANSPORT = "config.sqs_transport:Transport"
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "region": AWS_REGION,
    "endpoint_url": SQS_ENDPOINT_URL,
    "access_key_id": AWS_ACCESS_KEY_ID,
    "secret_access_key": AWS_SECRET_ACCESS_KEY,
    "queue_name_prefix": SQS_QUEUE_PREFIX,
    "queue_names": list(sqs_facts.ALL_QUEUES),
    "visibility_timeout": SQS_VISIBILITY_TIMEOUT,
    "wait_time_seconds": SQS_WAIT_TIME_SECONDS,
    "polling_interval": 0,
    "fetch_message_attributes": ["ApproximateReceiveCount", "SentTimestamp"],
    "client-config": sqs_facts.client_config(wait_time_seconds=SQS_WAIT_TIME_SECONDS),
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A worker waits out an SQS outage however long it lasts (config/sqs_transport.py), never exits.
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_TASK_DEFAULT_QUEUE = sqs_facts.GIFT_QUEUE
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Messages each pool process may reserve. Acks are late, so reserved messages stay invisible on SQS:
# keep multiplier times concurrency deliveries well inside SQS_VISIBILITY_TIMEOUT.
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("WORKER_PREFETCH_MULTIPLIER", default=1)
# Celery's Django fixup closes the database connections before and after every task unless this is
# set; set, it closes them every 2N tasks, and CONN_MAX_AGE decides in between (config/celery.py).
CELERY_DB_REUSE_MAX = 1000
CELERY_WORKER_ENABLE_REMOTE_CONTROL = False  # no pidbox queues: SQS has no fanout for them
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_TASK_SEND_SENT_EVENT = False
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_ROUTES = {
    "gifting.sweep_*": {"queue": sqs_facts.MAINTENANCE_QUEUE},
    "gifting.monitor_*": {"queue": sqs_facts.MAINTENANCE_QUEUE},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- Gift delivery -----------------------------------------------------------
GIFT_MAX_RETRIES = env.int("GIFT_MAX_RETRIES", default=5)
GIFT_RETRY_BACKOFF_BASE = env.int("GIFT_RETRY_BACKOFF_BASE", default=2)
GIFT_RETRY_BACKOFF_MAX = env.int("GIFT_RETRY_BACKOFF_MAX", default=300)
if not 0 < GIFT_RETRY_BACKOFF_MAX <= sqs_facts.SQS_MAX_DELAY_SECONDS:
    raise ImproperlyConfigured(
        f"GIFT_RETRY_BACKOFF_MAX must be 1..{sqs_facts.SQS_MAX_DELAY_SECONDS} (the SQS DelaySeconds cap)."
    )
GIFT_CURRENCIES = env.list("GIFT_CURRENCIES", default=["EUR", "USD", "GBP"])
# Development only: accept recipients at dotless hosts (bob@localhost) and IP addresses
# (bob@[127.0.0.1]), which core/recipients.py refuses otherwise.
EMAIL_ALLOW_LOCAL_HOSTS = env.bool("EMAIL_ALLOW_LOCAL_HOSTS", default=False)
GIFT_SWEEP_INTERVAL = env.int("GIFT_SWEEP_INTERVAL", default=30)
GIFT_REPUBLISH_AFTER = env.int("GIFT_REPUBLISH_AFTER", default=120)
# Publish delivery messages from a thread of each process once the gift is committed, so a request
# never waits for SQS (gifting/services/publisher.py); false publishes inline, in the request.
GIFT_PUBLISH_IN_BACKGROUND = env.bool("GIFT_PUBLISH_IN_BACKGROUND", default=True)
IDEMPOTENCY_KEY_TTL = env.int("IDEMPOTENCY_KEY_TTL", default=86400)
VOUCHER_VALIDITY_DAYS = env.int("VOUCHER_VALIDITY_DAYS", default=365)

# Worker liveness (core/heartbeat.py, manage.py worker_health): written every INTERVAL
# seconds; older than STALE_AFTER means the worker is stuck or gone.
WORKER_HEARTBEAT_INTERVAL = env.int("WORKER_HEARTBEAT_INTERVAL", default=10)
WORKER_HEARTBEAT_STALE_AFTER = env.int("WORKER_HEARTBEAT_STALE_AFTER", default=60)
WORKER_HEARTBEAT_DIR = env.path("WORKER_HEARTBEAT_DIR", default=str(VAR_DIR / "heartbeats"))

# The periodic [MONITOR] records and their [ALERT] thresholds (gifting/monitoring.py).
MONITOR_INTERVAL = env.int("MONITOR_INTERVAL", default=60)
ALERT_QUEUE_DEPTH = env.int("ALERT_QUEUE_DEPTH", default=1000)
ALERT_OLDEST_QUEUED_SECONDS = env.int("ALERT_OLDEST_QUEUED_SECONDS", default=900)
ALERT_STALL_SECONDS = env.int("ALERT_STALL_SECONDS", default=900)
# Anomaly detection on the 5-minute series (gifting/anomaly/, docs/anomaly-detection.md): a bucket
# this many robust standard deviations off its hour's baseline is an `anomaly` ALERT, once the hour
# (weekdays and weekends apart) has MIN_HISTORY earlier buckets. 4.5 is the evaluation's calibration.
ANOMALY_DETECTION = env.bool("ANOMALY_DETECTION", default=True)
ANOMALY_THRESHOLD = env.float("ANOMALY_THRESHOLD", default=4.5)
ANOMALY_MIN_HISTORY = env.int("ANOMALY_MIN_HISTORY", default=24)

CELERY_BEAT_SCHEDULE = {
    "republish-stale-gifts": {
        "task": "gifting.sweep_stale_gifts",
        "schedule": GIFT_SWEEP_INTERVAL,
    },
    "release-ended-holds": {
        "task": "gifting.sweep_ended_holds",
        "schedule": GIFT_SWEEP_INTERVAL,
    },
    "monitor-queues": {
        "task": "gifting.monitor_queues",
        "schedule": MONITOR_INTERVAL,
    },
    "purge-expired-idempotency-keys": {
        "task": "gifting.sweep_idempotency_keys",
        "schedule": 3600,
    },
}

# --- Abuse protection -----------------------------------------------------------
# How many reverse proxies in front of the app append to X-Forwarded-For. 0 trusts
# no header and uses the socket's address; N takes the address the Nth proxy saw.
TRUSTED_PROXY_HOPS = env.int("TRUSTED_PROXY_HOPS", default=0)
RATELIMIT_GIFT_USER = env.str("RATELIMIT_GIFT_USER", default="30/m")
RATELIMIT_GIFT_IP = env.str("RATELIMIT_GIFT_IP", default="120/m")
RATELIMIT_TOKEN_IP = env.str("RATELIMIT_TOKEN_IP", default="20/m")
RATELIMIT_ADMIN_LOGIN_IP = env.str("RATELIMIT_ADMIN_LOGIN_IP", default="20/m")  # admin login POSTs per client IP
RATELIMIT_IP_META_KEY = "core.client_ip.client_ip"
RATELIMIT_USE_CACHE = "default"

AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_MINUTES = env.int("AXES_COOLOFF_MINUTES", default=15)
AXES_COOLOFF_TIME = timedelta(minutes=AXES_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "core.client_ip.client_ip"
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
# The admin's lockout page, 429 with Retry-After, audit-logged (the API answers its own JSON instead).
AXES_LOCKOUT_CALLABLE = "audit.admin_site.axes_lockout_response"

# Staff prove a TOTP code (django-otp) on top of their password to use the admin. Enrol devices
# in the admin (TOTP devices) first. Recommended in production.
ADMIN_REQUIRE_OTP = env.bool("ADMIN_REQUIRE_OTP", default=False)
OTP_TOTP_ISSUER = "Gift a Voucher"
# The admin's DLQ tools (the Gift admin's redrive action). Off where the process's IAM role may not
# read or delete dead letters: the public web service on AWS (ops/aws/gift-a-voucher.yaml, whose
# admin service has them on; core/aws_actions.py lists what each role may do).
ADMIN_DLQ_TOOLS = env.bool("ADMIN_DLQ_TOOLS", default=True)

# --- Abuse intelligence (abuse/) ---------------------------------------------------
# A proof-of-work challenge (ALTCHA) on the token endpoint and the admin login, required after
# CHALLENGE_AFTER_FAILURES failed logins from one IP within CHALLENGE_FAILURE_WINDOW seconds, or
# while the client is flagged. The HMAC key is derived from BLIND_INDEX_KEY (abuse/challenge.py)
# unless CHALLENGE_HMAC_KEY is set, so production needs no new secret.
CHALLENGE_HMAC_KEY = env.str("CHALLENGE_HMAC_KEY", default="")
CHALLENGE_MAX_NUMBER = env.int("CHALLENGE_MAX_NUMBER", default=50000)  # difficulty: hashes to try, at most
CHALLENGE_TTL = env.int("CHALLENGE_TTL", default=300)
CHALLENGE_AFTER_FAILURES = env.int("CHALLENGE_AFTER_FAILURES", default=3)
CHALLENGE_FAILURE_WINDOW = env.int("CHALLENGE_FAILURE_WINDOW", default=900)
# Request-pattern analysis over rolling windows (seconds) in the cache: first detection flags the
# client for ABUSE_FLAG_SECONDS (the challenge is required), a repeat while flagged blocks it for
# ABUSE_BLOCK_SECONDS (429 blocked). Off with ABUSE_ANALYSIS_ENABLED=false.
ABUSE_ANALYSIS_ENABLED = env.bool("ABUSE_ANALYSIS_ENABLED", default=True)
ABUSE_WINDOW_SECONDS = env.int("ABUSE_WINDOW_SECONDS", default=300)
ABUSE_ERROR_COUNT = env.int("ABUSE_ERROR_COUNT", default=50)  # 400/401/404 answers in the window …
ABUSE_ERROR_RATIO = env.float("ABUSE_ERROR_RATIO", default=0.5)  # … that are at least this share of all
ABUSE_ENUMERATION_IDS = env.int("ABUSE_ENUMERATION_IDS", default=20)  # distinct 404s on GET /api/v1/gifts/{id}/
ABUSE_SPRAY_USERNAMES = env.int("ABUSE_SPRAY_USERNAMES", default=10)  # distinct usernames failing from one IP
ABUSE_RECIPIENT_BURST = env.int("ABUSE_RECIPIENT_BURST", default=20)  # distinct recipients one user gifts to
ABUSE_FLAG_SECONDS = env.int("ABUSE_FLAG_SECONDS", default=3600)
ABUSE_BLOCK_SECONDS = env.int("ABUSE_BLOCK_SECONDS", default=3600)
for _name in (
    "CHALLENGE_MAX_NUMBER",
    "CHALLENGE_TTL",
    "CHALLENGE_AFTER_FAILURES",
    "CHALLENGE_FAILURE_WINDOW",
    "ABUSE_WINDOW_SECONDS",
    "ABUSE_ERROR_COUNT",
    "ABUSE_ENUMERATION_IDS",
    "ABUSE_SPRAY_USERNAMES",
    "ABUSE_RECIPIENT_BURST",
    "ABUSE_FLAG_SECONDS",
    "ABUSE_BLOCK_SECONDS",
):
    if vars()[_name] <= 0:
        raise ImproperlyConfigured(f"{_name} must be a positive whole number.")
if not 0 < ABUSE_ERROR_RATIO <= 1:
    raise ImproperlyConfigured("ABUSE_ERROR_RATIO must be a share of requests: more than 0, at most 1.")

# --- Fraud rules (amounts are in the gift's currency) -------------------------
FRAUD_MIN_AMOUNT = env_decimal("FRAUD_MIN_AMOUNT", default="1")
FRAUD_MAX_AMOUNT = env_decimal("FRAUD_MAX_AMOUNT", default="2000")
FRAUD_DAILY_COUNT = env.int("FRAUD_DAILY_COUNT", default=20)
FRAUD_DAILY_VALUE = env_decimal("FRAUD_DAILY_VALUE", default="2000")
FRAUD_WEEKLY_COUNT = env.int("FRAUD_WEEKLY_COUNT", default=50)
FRAUD_WEEKLY_VALUE = env_decimal("FRAUD_WEEKLY_VALUE", default="5000")
FRAUD_DELAY_THRESHOLD = env_decimal("FRAUD_DELAY_THRESHOLD", default="200")
FRAUD_HOLD_PERIOD = env.int("FRAUD_HOLD_PERIOD", default=3600)
FRAUD_APPROVAL_THRESHOLD = env_decimal("FRAUD_APPROVAL_THRESHOLD", default="500")
FRAUD_VERIFY_RECIPIENT_THRESHOLD = env_decimal("FRAUD_VERIFY_RECIPIENT_THRESHOLD", default="500")
FRAUD_VERIFICATION_TTL = env.int("FRAUD_VERIFICATION_TTL", default=172800)
FRAUD_NEW_ACCOUNT_DAYS = env.int("FRAUD_NEW_ACCOUNT_DAYS", default=7)
FRAUD_VELOCITY_FACTOR = env_decimal("FRAUD_VELOCITY_FACTOR", default="5")
FRAUD_VELOCITY_MIN_COUNT = env.int("FRAUD_VELOCITY_MIN_COUNT", default=10)
FRAUD_FANIN_SENDERS = env.int("FRAUD_FANIN_SENDERS", default=3)
FRAUD_FANIN_WINDOW = env.int("FRAUD_FANIN_WINDOW", default=86400)
# The per-sender anomaly score (fraud/anomaly.py): at THRESHOLD or above, for a sender with at least
# MIN_HISTORY recent gifts, the `anomaly` signal adds SCORE. Defaults chosen in docs/anomaly-detection.md.
FRAUD_ANOMALY_THRESHOLD = env.float("FRAUD_ANOMALY_THRESHOLD", default=5.0)
FRAUD_ANOMALY_SCORE = env.int("FRAUD_ANOMALY_SCORE", default=50)
FRAUD_ANOMALY_MIN_HISTORY = env.int("FRAUD_ANOMALY_MIN_HISTORY", default=5)
# Risk scores add up: at REVIEW a gift waits for approval, at REJECT it is refused.
FRAUD_REVIEW_SCORE = env.int("FRAUD_REVIEW_SCORE", default=50)
FRAUD_REJECT_SCORE = env.int("FRAUD_REJECT_SCORE", default=100)

# --- Data protection ------------------------------------------------------------
# Fernet keys, comma-separated, newest first (core/crypto.py), and the key of the
# keyed hashes (blind indexes) that stand in for encrypted values in lookups.
DEV_FIELD_ENCRYPTION_KEY = "ZGV2LW9ubHktZmllbGQta2V5LW5vdC1mb3ItcHJvZCE="  # refused when DEBUG is off
DEV_BLIND_INDEX_KEY = "dev-only-blind-index-key-not-for-production"  # refused when DEBUG is off
FIELD_ENCRYPTION_KEYS = [
    key.strip() for key in env.list("FIELD_ENCRYPTION_KEYS", default=[DEV_FIELD_ENCRYPTION_KEY]) if key.strip()
]
BLIND_INDEX_KEY = env.str("BLIND_INDEX_KEY", default=DEV_BLIND_INDEX_KEY)
BLIND_INDEX_KEY_MIN_LENGTH = 32


def _check_data_protection_keys() -> None:
    """Refuse keys that are malformed, too short, or (with DEBUG off) the development ones; never echo a key."""
    from cryptography.fernet import Fernet  # only this check needs it at settings time

    if not FIELD_ENCRYPTION_KEYS:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS must name at least one Fernet key (newest first).")
    for position, key in enumerate(FIELD_ENCRYPTION_KEYS, start=1):
        try:
            Fernet(key)
        except ValueError:
            raise ImproperlyConfigured(
                f"FIELD_ENCRYPTION_KEYS: key {position} is not a Fernet key (32 bytes, URL-safe base64); make one "
                "with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
            ) from None
    if len(BLIND_INDEX_KEY) < BLIND_INDEX_KEY_MIN_LENGTH:
        raise ImproperlyConfigured(
            f"BLIND_INDEX_KEY must be at least {BLIND_INDEX_KEY_MIN_LENGTH} characters; make one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    if BLIND_INDEX_KEY in FIELD_ENCRYPTION_KEYS:
        raise ImproperlyConfigured("BLIND_INDEX_KEY must differ from every FIELD_ENCRYPTION_KEYS key.")
    if not DEBUG and DEV_FIELD_ENCRYPTION_KEY in FIELD_ENCRYPTION_KEYS:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS must be set when DJANGO_DEBUG is off (not the dev key).")
    if not DEBUG and BLIND_INDEX_KEY == DEV_BLIND_INDEX_KEY:
        raise ImproperlyConfigured("BLIND_INDEX_KEY must be set when DJANGO_DEBUG is off (not the dev key).")


_check_data_protection_keys()

# Where people reach this site: the base of links in emails (recipient verification).
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000")

# --- Wallet delivery -----------------------------------------------------------
WALLET_PROVIDER_URL = env.str("WALLET_PROVIDER_URL", default="")
WALLET_PROVIDER_SECRET = env.str("WALLET_PROVIDER_SECRET", default="")
WALLET_PROVIDER_TIMEOUT = env.int("WALLET_PROVIDER_TIMEOUT", default=10)
if WALLET_PROVIDER_URL and not WALLET_PROVIDER_URL.startswith(("https://", "http://")):
    raise ImproperlyConfigured("WALLET_PROVIDER_URL must be an http(s) URL.")
# Every credit is verified on chain (gifting/chain.py) over JSON-RPC from our own or a trusted node;
# unset, wallet gifts fail as permanent. Tokens: one ERC-20 per currency, CUR=0x<address>:<decimals>.
ETH_RPC_URL = env.str("ETH_RPC_URL", default="")
ETH_RPC_TIMEOUT = env.float("ETH_RPC_TIMEOUT", default=10)
ETH_MIN_CONFIRMATIONS = env.int("ETH_MIN_CONFIRMATIONS", default=12)
WALLET_TOKEN_CONTRACTS = env.dict("WALLET_TOKEN_CONTRACTS", default={})
if ETH_RPC_URL and not ETH_RPC_URL.startswith(("https://", "http://")):
    raise ImproperlyConfigured("ETH_RPC_URL must be an http(s) URL.")
if ETH_MIN_CONFIRMATIONS < 1:
    raise ImproperlyConfigured("ETH_MIN_CONFIRMATIONS must be at least 1.")
for _currency, _token in WALLET_TOKEN_CONTRACTS.items():
    if not re.fullmatch(r"0x[0-9a-fA-F]{40}:[0-9]{1,2}", _token.strip()):
        raise ImproperlyConfigured(f"WALLET_TOKEN_CONTRACTS: {_currency} must be 0x<40 hex digits>:<decimals>.")

# --- Encryption in transit --------------------------------------------------------
# With DEBUG off nothing leaves this host in clear: every connection to another host uses TLS
# (config/transport_security.py; loopback is exempt). The error names each variable, never its URL.
if not DEBUG:
    _plaintext = {
        "EMAIL_URL": transport_security.email_problem(EMAIL_CONFIG),
        "DATABASE_URL": transport_security.database_problem(DATABASES["default"], libpq_env=os.environ),
        "REDIS_URL": transport_security.redis_problem(REDIS_URL),
        "SQS_ENDPOINT_URL": transport_security.https_problem(SQS_ENDPOINT_URL or ""),
        "WALLET_PROVIDER_URL": transport_security.https_problem(WALLET_PROVIDER_URL),
        "ETH_RPC_URL": transport_security.https_problem(ETH_RPC_URL),
        "SITE_URL": transport_security.https_problem(SITE_URL),  # links in emails carry tokens
    }
    _refused = [f"{variable}: {problem}" for variable, problem in _plaintext.items() if problem]
    if _refused:
        raise ImproperlyConfigured(f"Refused with DJANGO_DEBUG off: {'; '.join(_refused)}.")
    if SECURE_PROXY_SSL_HEADER and TRUSTED_PROXY_HOPS < 1:
        raise ImproperlyConfigured(
            "DJANGO_SECURE_PROXY_SSL_HEADER trusts a header only a proxy can vouch for: "
            "set TRUSTED_PROXY_HOPS to the number of proxies in front of the app."
        )

# --- Metrics -------------------------------------------------------------------
# /metrics answers loopback and these networks (CIDRs) freely, anyone else with the bearer token.
METRICS_ALLOWED_NETS = env.list("METRICS_ALLOWED_NETS", default=[])
for _net in METRICS_ALLOWED_NETS:
    try:
        ipaddress.ip_network(_net, strict=False)
    except ValueError as exc:
        raise ImproperlyConfigured(f"METRICS_ALLOWED_NETS: {_net!r} is not a network (e.g. 10.0.0.0/8).") from exc
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

# --- Logging -------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# json: one object per line (production's default), with marker, request id, gift id and the
# other context as fields; text: for people (make run, tests). See core/logging.py.
LOG_FORMAT = env.str("LOG_FORMAT", default="text" if DEBUG else "json")
if LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or text, not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "core.request_id.RequestIdLogFilter"},
        # On every handler: confirmation-link tokens and API tokens never reach a log line (core/logging.py).
        "redact_secrets": {"()": "core.logging.RedactSecretsFilter"},
    },
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "core.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id", "redact_secrets"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Without their own handlers (Django's defaults would print "Not Found: <path>" unredacted, and
        # mail it with the request): they propagate to the console handler, redacted, in LOG_FORMAT.
        "django": {"handlers": [], "propagate": True},
        "django.server": {"handlers": [], "propagate": True},
        "botocore": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        "werkzeug": {"level": "WARNING"},
    },
}

try:  # var/ holds everything written at run time (SQLite, beat schedule); it is git-ignored.
    VAR_DIR.mkdir(exist_ok=True)
except OSError:
    pass
