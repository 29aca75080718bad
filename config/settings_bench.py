"""Settings of the benchmarks (bench/): the one settings module, plus only what a benchmark needs.

Limits and quotas opened wide so that no benchmark request is refused, held or flagged for
review (a benchmark sends thousands of gifts from one sender in minutes, exactly what they stop);
every check still runs, it just never fires. Logging at WARNING, as under load in production.
And the floor endpoint's URLs (config/urls_bench.py), which production's config/urls.py never has.
"""

from decimal import Decimal

from config.settings import *  # noqa: F403 - this module is config.settings plus the lines below
from config.settings import LOGGING, STORAGES

ROOT_URLCONF = "config.urls_bench"

_WIDE_OPEN = 1_000_000  # a count nobody reaches in a benchmark
_WIDE_OPEN_RATE = f"{_WIDE_OPEN}/m"
_WIDE_OPEN_AMOUNT = Decimal(_WIDE_OPEN)

RATELIMIT_GIFT_USER = _WIDE_OPEN_RATE
RATELIMIT_GIFT_IP = _WIDE_OPEN_RATE
RATELIMIT_TOKEN_IP = _WIDE_OPEN_RATE

FRAUD_DAILY_COUNT = _WIDE_OPEN
FRAUD_DAILY_VALUE = _WIDE_OPEN_AMOUNT
FRAUD_WEEKLY_COUNT = _WIDE_OPEN
FRAUD_WEEKLY_VALUE = _WIDE_OPEN_AMOUNT
FRAUD_DELAY_THRESHOLD = _WIDE_OPEN_AMOUNT
FRAUD_APPROVAL_THRESHOLD = _WIDE_OPEN_AMOUNT
FRAUD_VERIFY_RECIPIENT_THRESHOLD = _WIDE_OPEN_AMOUNT
FRAUD_VELOCITY_MIN_COUNT = _WIDE_OPEN
FRAUD_FANIN_SENDERS = _WIDE_OPEN
FRAUD_ANOMALY_THRESHOLD = float(_WIDE_OPEN)
ABUSE_RECIPIENT_BURST = _WIDE_OPEN  # one bench sender gifts to thousands of distinct recipients

# The stack runs with DEBUG off, as production does (Django's debug cursor would record every query,
# which is not what production pays for), but without a collectstatic: the admin pages the growth
# benchmark loads name their static files by plain names.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}

LOG_LEVEL = "WARNING"
# A copy: config.settings' own LOGGING (the one a test process runs with) stays as it is.
LOGGING = {**LOGGING, "root": {**LOGGING["root"], "level": LOG_LEVEL}}
