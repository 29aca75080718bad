"""What the risk policy needs to know about the past, and which windows of it.

fraud reads no gifts itself: the app that owns them answers these questions
through its own selectors, for the windows fraud names here, and hands the
answers over as a SenderHistory.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings

# The sender's own normal: their average over this period before the last hour.
BASELINE_PERIOD = timedelta(days=30)


@dataclass(frozen=True)
class Totals:
    count: int
    value: Decimal


@dataclass(frozen=True)
class Windows:
    """The periods the policy looks at, all ending now (the baseline ends an hour ago)."""

    now: datetime
    last_hour_since: datetime
    last_day_since: datetime
    last_week_since: datetime
    baseline_since: datetime
    baseline_until: datetime
    fan_in_since: datetime

    @property
    def baseline_hours(self) -> int:
        return int((self.baseline_until - self.baseline_since).total_seconds() // 3600)


def windows_at(now: datetime) -> Windows:
    """The windows for a gift assessed at `now`."""
    baseline_until = now - timedelta(hours=1)
    return Windows(
        now=now,
        last_hour_since=now - timedelta(hours=1),
        last_day_since=now - timedelta(days=1),
        last_week_since=now - timedelta(days=7),
        baseline_since=baseline_until - BASELINE_PERIOD,
        baseline_until=baseline_until,
        fan_in_since=now - timedelta(seconds=settings.FRAUD_FANIN_WINDOW),
    )


@dataclass(frozen=True)
class SenderHistory:
    """The sender's live gifts in each window (this gift not included), and the recipient's other senders."""

    account_age: timedelta
    last_hour: Totals
    last_day: Totals
    last_week: Totals
    baseline: Totals
    recipient_other_senders: int  # distinct senders other than this one, within the fan-in window
