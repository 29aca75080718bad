"""The one settings module: every value comes from the environment (12-factor).

Defaults are for a developer's machine; production sets the environment and
must at least set DJANGO_DEBUG=false and a real DJANGO_SECRET_KEY.
"""

import ipaddress
import os
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from core import sqs as sqs_facts

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

DEV_SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"  # noqa: S105 - refused when DEBUG is off

env = environ.Env()


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
DEBUG = env.bool("DJANGO_DEBUG", default=True)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])

if not DEBUG and SECRET_KEY == DEV_SECRET_KEY:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off.")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "axes",
    "gifting",
    "vouchers",
    "fraud",
]

MIDDLEWARE = [
    "core.request_id.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.access_log.AccessLogMiddleware",
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
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so the Celery worker started by the tests sees the same data;
    # one per test run, so two runs in one checkout do not share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
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
STATIC_ROOT = VAR_DIR / "static"

# --- Email ---------------------------------------------------------------------
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="gifts@localhost")
# Bounded so a stuck SMTP server can never hold a gift past the SQS visibility timeout.
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)

# --- REST API ----------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"],
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
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
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
GIFT_SWEEP_INTERVAL = env.int("GIFT_SWEEP_INTERVAL", default=30)
GIFT_REPUBLISH_AFTER = env.int("GIFT_REPUBLISH_AFTER", default=120)
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
RATELIMIT_IP_META_KEY = "core.client_ip.client_ip"
RATELIMIT_USE_CACHE = "default"

AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_MINUTES = env.int("AXES_COOLOFF_MINUTES", default=15)
AXES_COOLOFF_TIME = timedelta(minutes=AXES_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "core.client_ip.client_ip"
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429

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
# Risk scores add up: at REVIEW a gift waits for approval, at REJECT it is refused.
FRAUD_REVIEW_SCORE = env.int("FRAUD_REVIEW_SCORE", default=50)
FRAUD_REJECT_SCORE = env.int("FRAUD_REJECT_SCORE", default=100)

# --- Data protection ------------------------------------------------------------
# Fernet keys, comma-separated, newest first (core/crypto.py), and the key of the
# keyed hashes (blind indexes) that stand in for encrypted values in lookups.
DEV_FIELD_ENCRYPTION_KEY = "ZGV2LW9ubHktZmllbGQta2V5LW5vdC1mb3ItcHJvZCE="  # noqa: S105 - refused when DEBUG is off
DEV_BLIND_INDEX_KEY = "dev-only-blind-index-key-not-for-production"  # noqa: S105 - refused when DEBUG is off
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[DEV_FIELD_ENCRYPTION_KEY])
BLIND_INDEX_KEY = env.str("BLIND_INDEX_KEY", default=DEV_BLIND_INDEX_KEY)

# Where people reach this site: the base of links in emails (recipient verification).
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000")

# --- Wallet delivery -----------------------------------------------------------
WALLET_PROVIDER_URL = env.str("WALLET_PROVIDER_URL", default="")
WALLET_PROVIDER_SECRET = env.str("WALLET_PROVIDER_SECRET", default="")
WALLET_PROVIDER_TIMEOUT = env.int("WALLET_PROVIDER_TIMEOUT", default=10)
if WALLET_PROVIDER_URL and not WALLET_PROVIDER_URL.startswith(("https://", "http://")):
    raise ImproperlyConfigured("WALLET_PROVIDER_URL must be an http(s) URL.")

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
    "filters": {"request_id": {"()": "core.request_id.RequestIdLogFilter"}},
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "core.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "botocore": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        "werkzeug": {"level": "WARNING"},
    },
}

try:  # var/ holds everything written at run time (SQLite, beat schedule); it is git-ignored.
    VAR_DIR.mkdir(exist_ok=True)
except OSError:
    pass
