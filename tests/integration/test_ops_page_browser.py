"""Staff open the Operations page in a real browser: Chromium (Debian's) → live server → SQS, the database, heartbeats.

A worker delivers gifts for real (one fails for good and is dead-lettered),
on top of a day of delivery history recorded at chosen times. The page must
show the chart, the DLQ count in red and the worker's fresh heartbeat. It
leaves a screenshot in var/screenshots/operations.png. Playwright drives
Debian's `chromium` (or CHROMIUM_PATH), never a browser from `playwright install`.
"""

import random
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from unittest.mock import patch

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from playwright.sync_api import Page, expect

from core import sqs as sqs_facts
from core.sqs import queue_depth, sqs_client
from gifting.models import Gift, GiftEvent, GiftEventType, GiftStatus, HoldReason
from gifting.services.intake import gift_create
from tests.factories import gift_row
from tests.integration.test_review_queue_browser import chromium_page
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "var" / "screenshots" / "operations.png"
STAFF_PASSWORD = "operator-secret-words"
RED = "rgb(186, 33, 33)"  # the admin's --error-fg


@pytest.fixture
def browser_page(monkeypatch):
    """A page in a fresh headless Chromium at 1440 by 900, closed after the test."""
    with chromium_page(monkeypatch, width=1440, height=900) as page:
        yield page


def record_history(sender, *, now: datetime) -> set[datetime]:
    """A day of `delivered` and `failed` events at chosen times; returns the 5-minute buckets they fall in."""
    delivered = gift_row(sender, status=GiftStatus.DELIVERED, delivered_at=now, recipient_email="old@example.com")
    failed = gift_row(sender, status=GiftStatus.FAILED, recipient_email="older@example.com")
    rng = random.Random(8)
    buckets = set()
    start = now - timedelta(hours=23, minutes=50)
    for minutes in range(0, 23 * 60 + 40, 5):
        moment = start + timedelta(minutes=minutes)
        busy = 2 + 2 * (moment.hour in range(8, 20))  # busier in the daytime
        counts = {
            GiftEventType.DELIVERED: rng.randint(0, busy) if rng.random() < 0.5 else 0,
            GiftEventType.FAILED: rng.randint(1, 2) if rng.random() < 0.06 else 0,
        }
        for type_, count in counts.items():
            for _ in range(count):
                with patch("django.utils.timezone.now", return_value=moment):
                    GiftEvent.objects.create(
                        gift=delivered if type_ == "delivered" else failed, type=type_, actor_label="worker"
                    )
                buckets.add(floor_to_bucket(moment))
    return buckets


def floor_to_bucket(moment: datetime) -> datetime:
    return datetime.fromtimestamp(int(moment.timestamp()) // 300 * 300, tz=UTC)


def test_staff_see_queues_workers_and_the_delivery_chart_in_the_browser(
    sqs, smtp_sink, start_worker, live_server, browser_page: Page, make_user, settings, tmp_path
):
    heartbeats = tmp_path / "heartbeats"
    settings.WORKER_HEARTBEAT_DIR = heartbeats  # the live server reads the worker's heartbeat here
    staff = make_user(username="otto", password=STAFF_PASSWORD, is_staff=True)  # an operator, not a superuser
    staff.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="gifting", codename__in=["view_gift", "view_giftreview"])
    )
    sender = make_user(username="alice", date_joined=timezone.now() - timedelta(days=90))
    history = record_history(sender, now=timezone.now())
    for hold in (HoldReason.APPROVAL, HoldReason.APPROVAL, HoldReason.RECIPIENT):
        gift_row(sender, status=GiftStatus.HELD, hold=hold)

    # Now, for real: three gifts through the worker; the first email is refused for good.
    # (Created before the worker starts: SQLite allows one writer at a time.)
    smtp_sink.replies.append("550 5.1.1 No such mailbox")
    gifts = [
        gift_create(sender=sender, amount=Decimal("15.00"), currency="EUR", recipient_email=f"{name}@example.com")
        for name in ("anna", "boris", "carla")
    ]
    start_worker(WORKER_HEARTBEAT_DIR=str(heartbeats))

    def outcomes() -> list[str]:
        return sorted(Gift.objects.filter(id__in=[g.id for g in gifts]).values_list("status", flat=True))

    wait_until(lambda: outcomes() == ["delivered", "delivered", "failed"], timeout=60, message="gifts not settled")
    client = sqs_client()
    wait_until(
        lambda: queue_depth(client, sqs_facts.GIFT_DLQ)["visible"] == 1, timeout=30, message="nothing dead-lettered"
    )
    history.add(floor_to_bucket(timezone.now()))
    page = browser_page

    # Log in and open the Operations page from the admin's index.
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.get_by_label("Username").fill(staff.username)
    page.get_by_label("Password").fill(STAFF_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Queues, held gifts, workers and deliveries").click()
    expect(page).to_have_url(re.compile(r"/admin/operations/$"))
    expect(page.get_by_role("heading", name="Operations", exact=True)).to_be_visible()

    chart = page.get_by_role("img", name="Deliveries and failures per 5 minutes, last 24 hours (UTC)")
    expect(chart).to_be_visible()
    expect(chart.locator("g.bar")).to_have_count(len(history))
    expect(chart.locator("g.bar rect.failed").first).to_be_visible()
    box = chart.bounding_box()
    assert box and box["width"] > 1000 and box["height"] > 200, box  # drawn wide, not squeezed

    dlq = page.locator("#ops-dlq-count")
    expect(dlq).to_have_text("1")
    expect(dlq).to_be_visible()
    expect(dlq).to_have_css("color", RED)
    expect(page.locator("#ops-queues")).to_contain_text(f"{settings.SQS_QUEUE_PREFIX}gift-delivery-dlq")
    held = page.locator("#ops-held")
    expect(held.get_by_role("row", name=re.compile("reviewer's approval"))).to_contain_text("2")
    expect(held.get_by_role("row", name=re.compile("recipient to confirm"))).to_contain_text("1")
    expect(page.locator("#ops-workers tbody tr")).to_have_count(1)
    expect(page.locator("#ops-workers tbody")).to_contain_text("fresh")
    content = page.content()
    for private in ("anna@example.com", "old@example.com", "a***@example.com", str(gifts[0].id)):
        assert private not in content

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOT, full_page=True)
    print(f"operations screenshot: {SCREENSHOT}")
