"""What the risk policy needs to know about the past, and which windows of it.

fraud reads no gifts itself: the app that owns them answers these questions
through its own selectors, for the windows fraud names here, and hands the
answers over as a SenderHistory.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings

# The sender's own normal: their average over this period before the last hour.
BASELINE_PERIOD = timedelta(days=30)
# The anomaly score's picture of the sender (fraud.anomaly): their gifts over this period before the
# last hour, newest first, at most RECENT_GIFTS_CAP of them, so the accept path reads a bounded number of rows.
RECENT_PERIOD = timedelta(days=90)
RECENT_GIFTS_CAP = 200


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
    recent_since: datetime

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
        recent_since=baseline_until - RECENT_PERIOD,
    )


@dataclass(frozen=True)
class RecentGifts:
    """The sender's recent live gifts (RECENT_PERIOD before the last hour, newest RECENT_GIFTS_CAP): their pattern.

    Hours are UTC hours of day: the pattern is compared with itself, so the zone does not matter.
    """

    amounts: tuple[Decimal, ...] = ()
    hours: tuple[int, ...] = ()
    distinct_recipients: int = 0
    sent_to_recipient: bool = False  # whether one of them went to this gift's (canonical) recipient

    @property
    def count(self) -> int:
        return len(self.amounts)


@dataclass(frozen=True)
class SenderHistory:
    """The sender's live gifts in each window (this gift not included), and the recipient's other senders."""

    account_age: timedelta
    last_hour: Totals
    last_day: Totals
    last_week: Totals
    baseline: Totals
    recipient_other_senders: int  # distinct senders other than this one, within the fan-in window
    recent: RecentGifts = field(default_factory=RecentGifts)
