"""A reviewer works the review queue in a real browser: Chromium (Debian's) → live server → SQS → worker → SMTP.

Playwright drives Debian's `chromium` package, never a browser fetched by
`playwright install`; `.ci/run` installs the package when it is missing.
CHROMIUM_PATH points elsewhere on other machines.

At a laptop's size, 1440 x 900 and 1366 x 768: the queue must fit without a
horizontal scroll. Screenshots go to var/screenshots/ for a look by eye.
"""

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from email.message import Message
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connections
from django.utils import timezone
from playwright.sync_api import Page, expect, sync_playwright
from rest_framework.test import APIClient

from gifting.demo import APPROVE_REASON, DEMO_GIFTS, DEMO_PASSWORD, NEW_SENDER, REJECT_REASON, REVIEWER, demo_run
from gifting.models import GiftEvent, GiftEventType, GiftState, GiftStatus
from gifting.services.intake import gift_create
from tests.factories import api_token
from tests.integration.test_delivery import DELIVERY_TIMEOUT, wait_for_status
from tests.waiting import wait_until
from vouchers.models import Voucher

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "var" / "screenshots"
LAPTOP = {"width": 1440, "height": 900}
SMALL_LAPTOP = {"width": 1366, "height": 768}
DEFAULT_CHROMIUM = "/usr/bin/chromium"
# The machine has no network: keep Chromium from reaching for it.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REVIEWER_PASSWORD = "reviewer-secret-words"
DEMO = {spec.title: spec for spec in DEMO_GIFTS}


def chromium_executable() -> str:
    """Debian's Chromium, or CHROMIUM_PATH; its absence fails the test rather than skipping it."""
    path = os.environ.get("CHROMIUM_PATH") or DEFAULT_CHROMIUM
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(
            f"No Chromium executable at {path}. Install Debian's package "
            "(`apt-get install --no-install-recommends chromium`; .ci/run does it) "
            "or set CHROMIUM_PATH to a Chromium binary. Do not use `playwright install`.",
            pytrace=False,
        )
    return path


@contextmanager
def chromium_page(monkeypatch, *, width: int, height: int) -> Iterator[Page]:
    """A page in a fresh headless Chromium with this viewport, closed afterwards."""
    executable = chromium_executable()
    # Playwright's sync API keeps an asyncio loop marked as running on this
    # thread, so Django refuses ORM calls from the test body. They are plain
    # blocking calls in one thread, nothing runs concurrently: safe to allow.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(15_000)
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()
            # With that loop "running", Django's (asgiref) connection storage is per
            # context, not per thread: the test body got connections of its own.
            # Close them, or they keep PostgreSQL's test database from being dropped.
            connections.close_all()


@pytest.fixture
def browser_page(monkeypatch):
    with chromium_page(monkeypatch, **LAPTOP) as page:
        yield page


@pytest.fixture
def reviewer(transactional_db, make_user):
    """Staff, not superuser: may see the queue and review, nothing else."""
    user = make_user(username="rita", password=REVIEWER_PASSWORD, first_name="Rita", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="gifting", codename__in=["view_giftreview", "review_gift"])
    )
    assert user.has_perm("gifting.view_giftreview") and user.has_perm("gifting.review_gift")
    assert not user.is_superuser
    return user


def overflow(page: Page) -> dict[str, int]:
    """Widths that matter for a horizontal scroll: the results table against its box, the page against the window."""
    return page.evaluate(
        """() => {
            const table = document.querySelector('#result_list');
            const box = table ? table.closest('.results') || table.parentElement : null;
            return {
                table: table ? table.scrollWidth : 0,
                box: box ? box.clientWidth : 0,
                page: document.documentElement.scrollWidth,
                window: document.documentElement.clientWidth,
            };
        }"""
    )


def assert_fits(page: Page) -> None:
    sizes = overflow(page)
    print(f"{page.viewport_size['width']} px, {urlsplit(page.url).query or 'queue'}: {sizes}")
    assert sizes["table"] <= sizes["box"], f"the results table scrolls sideways: {sizes}"
    assert sizes["page"] <= sizes["window"], f"the page scrolls sideways: {sizes}"


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / name, full_page=True)
    print(f"screenshot: {SCREENSHOTS / name}")


def log_in(page: Page, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/admin/login/?next=/admin/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def text_body(mail: Message) -> str:
    part = next(p for p in mail.walk() if p.get_content_type() == "text/plain")
    return part.get_payload(decode=True).decode()


def mail_to(smtp_sink, address: str, subject_contains: str) -> Message | None:
    return next(
        (m for m in smtp_sink.messages if m["To"] == address and subject_contains in m["Subject"]),
        None,
    )


def test_reviewer_approves_one_held_gift_and_rejects_another_in_the_browser(
    sqs, smtp_sink, start_worker, live_server, browser_page: Page, reviewer, make_user, settings
):
    # As by default: a gift that needs approval also needs its recipient to confirm their
    # address, so the approved gift goes out only after the recipient follows their link.
    # (Decided when the gift is created, in this process; the worker reads it from the gift.)
    settings.FRAUD_VERIFY_RECIPIENT_THRESHOLD = settings.FRAUD_APPROVAL_THRESHOLD
    sender = make_user(username="alice", first_name="Alice", last_name="Sender")
    cents = Decimal("0.01")
    amount_a = settings.FRAUD_APPROVAL_THRESHOLD.quantize(cents)  # held for approval: at the threshold
    amount_b = (settings.FRAUD_APPROVAL_THRESHOLD + 250).quantize(cents)
    gift_a = gift_create(sender=sender, amount=amount_a, currency="EUR", recipient_email="anna@example.com")
    gift_b = gift_create(sender=sender, amount=amount_b, currency="EUR", recipient_email="boris@example.com")
    assert gift_a.status == gift_b.status == GiftStatus.HELD
    start_worker()
    page = browser_page
    reason = "Card reported stolen after the gift was made."

    # Log in and open the review queue from the admin's index.
    log_in(page, live_server.url, reviewer.username, REVIEWER_PASSWORD)
    page.get_by_role("link", name="Review queue").click()
    expect(page).to_have_url(re.compile(r"/admin/gifting/giftreview/"))
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text=f"{amount_a} EUR")).to_have_count(1)
    expect(rows.filter(has_text=f"{amount_b} EUR")).to_have_count(1)
    assert_fits(page)

    # Approve gift A.
    page.locator(f'input.action-select[value="{gift_a.pk}"]').check()
    page.locator('select[name="action"]').select_option(label="Approve selected gifts")
    page.get_by_role("button", name="Go", exact=True).click()
    expect(page.locator("ul.messagelist")).to_contain_text("Approved 1 gift.")

    # Reject gift B, with a reason, on the intermediate page.
    page.locator(f'input.action-select[value="{gift_b.pk}"]').check()
    page.locator('select[name="action"]').select_option(label="Reject selected gifts…")
    page.get_by_role("button", name="Go", exact=True).click()
    expect(page.get_by_role("heading", name="Reject 1 gift")).to_be_visible()
    expect(page.locator("#content")).to_contain_text(str(gift_b.pk))
    page.get_by_label("Reason").fill(reason)
    page.get_by_role("button", name="Reject", exact=True).click()
    expect(page.locator("ul.messagelist")).to_contain_text("Rejected 1 gift.")

    # The recipient of the approved gift confirms their address, in a browser of their own.
    verification = wait_until(
        lambda: mail_to(smtp_sink, "anna@example.com", "confirm your email address"),
        timeout=DELIVERY_TIMEOUT,
        message="the approved gift's recipient got no confirmation email",
    )
    [link] = re.findall(r"https?://\S+/gifts/verify/\S+/", text_body(verification))
    recipient_context = page.context.browser.new_context()  # the recipient: no reviewer session
    recipient_page = recipient_context.new_page()
    recipient_page.goto(live_server.url + urlsplit(link).path)  # the link names SITE_URL, not the live server
    expect(recipient_page.get_by_role("heading", name="Confirm your address")).to_be_visible()
    recipient_page.get_by_role("button", name="Confirm my address").click()
    expect(recipient_page.get_by_role("heading", name="Thank you!")).to_be_visible()
    recipient_context.close()

    wait_for_status(gift_a, GiftStatus.DELIVERED)
    wait_for_status(gift_b, GiftStatus.REJECTED)

    voucher = Voucher.objects.get(gift=gift_a)
    [voucher_mail] = smtp_sink.messages_for(gift_a.id)
    assert voucher_mail["To"] == "anna@example.com" and voucher.code in text_body(voucher_mail)
    assert not Voucher.objects.filter(gift=gift_b).exists()
    assert [m["To"] for m in smtp_sink.messages] == ["anna@example.com", "anna@example.com"]

    approved = GiftEvent.objects.get(gift=gift_a, type=GiftEventType.APPROVED)
    assert approved.actor == reviewer
    rejected = GiftEvent.objects.get(gift=gift_b, type=GiftEventType.REJECTED)
    assert rejected.actor == reviewer
    assert rejected.details["review_reason"] == reason

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token(sender)}")
    response = api.get(f"/api/v1/gifts/{gift_b.id}/")
    assert response.status_code == 200
    assert response.json()["status"] == "rejected"
    assert reason not in response.content.decode()  # the reason is for the audit log, not the sender
    assert api.get(f"/api/v1/gifts/{gift_a.id}/").json()["status"] == "delivered"


def row(page: Page, gift):
    return page.locator("#result_list tbody tr").filter(has=page.locator(f'input.action-select[value="{gift.pk}"]'))


def cells(page: Page, gift) -> list[str]:
    return [" ".join(text.split()) for text in row(page, gift).locator("td, th").all_inner_texts()]


def test_the_demo_data_reads_at_laptop_sizes(sqs, smtp_sink, start_worker, live_server, browser_page: Page, settings):
    """`make demo`'s gifts, as its reviewer rita sees them: every view fits; recipients, decisions and scores read."""
    settings.DEBUG = True  # the demo refuses to run otherwise; Django runs tests with DEBUG off
    start_worker()
    demo = {row.spec.title: row.gift for row in demo_run(wait_seconds=90, say=lambda _: None).gifts}
    assert not [title for title, gift in demo.items() if gift.state != DEMO[title].expected]
    delayed, needs_approval = demo["held for a period"], demo["held for approval (a new account)"]
    approved, rejected = demo["approved, waiting for the recipient"], demo["rejected by a reviewer"]
    # A second gift to the held-for-a-period gift's recipient, spelt otherwise: one recipient, one pseudonym.
    nora = get_user_model().objects.get(username=NEW_SENDER)
    again = gift_create(sender=nora, amount=Decimal("250.00"), currency="EUR", recipient_email="Dave+gift@Example.com")
    assert again.state == GiftState.HELD_FOR_APPROVAL
    page = browser_page

    log_in(page, live_server.url, REVIEWER, DEMO_PASSWORD)
    page.get_by_role("link", name="Review queue").click()
    expect(page.get_by_role("heading", name="Waiting for review")).to_be_visible()
    expect(page.locator("#result_list tbody tr")).to_have_count(3)
    expect(page.locator(".paginator")).to_contain_text("3 gifts")
    assert_fits(page)
    screenshot(page, "review-queue-1440.png")

    # Pseudonyms: one for both gifts to dave, another for erin; never an address.
    pseudonym = {gift: row(page, gift).locator(".review-recipient").inner_text() for gift in (delayed, again)}
    pseudonym[needs_approval] = row(page, needs_approval).locator(".review-recipient").inner_text()
    assert re.fullmatch(r"d\*\*\*@example\.com · #[0-9a-f]{4}", " ".join(pseudonym[delayed].split()))
    assert pseudonym[delayed].split("#")[1] == pseudonym[again].split("#")[1]
    assert pseudonym[needs_approval].startswith("e***@example.com")
    assert pseudonym[needs_approval].split("#")[1] != pseudonym[delayed].split("#")[1]
    assert "dave@example.com" not in page.content().lower() and "erin@example.com" not in page.content()
    assert cells(page, needs_approval)[1:] == [
        "250.00 EUR from nora",
        pseudonym[needs_approval].replace("\n", " "),
        "approval",
        "50",
        "new_account, high_value",
        cells(page, needs_approval)[-1],  # its age
    ]
    assert "released in" in cells(page, delayed)[-1]

    page.set_viewport_size(SMALL_LAPTOP)
    assert_fits(page)
    screenshot(page, "review-queue-1366.png")
    page.set_viewport_size(LAPTOP)

    # The new account's gift: the score that sent it to a reviewer, against the thresholds.
    row(page, needs_approval).get_by_role("link", name=re.compile("250.00 EUR")).click()
    expect(page.get_by_role("heading", name="Gift of 250.00 EUR from nora")).to_be_visible()
    breakdown = page.locator("#score-breakdown")
    expect(breakdown).to_be_visible()
    expect(breakdown).to_have_text("new_account +30, high_value +20 = 50 ≥ review score 50 → needs approval")
    expect(page.locator(".field-recipient_display")).to_contain_text(pseudonym[needs_approval].replace("\n", " "))
    expect(page.locator(".field-recipient_history")).to_contain_text("1 gift from 1 sender")
    assert page.locator("#reveal-recipient").count() == 0  # rita may not see full addresses
    assert_fits(page)
    screenshot(page, "review-gift-1440.png")

    # Past decisions: the demo's approval and rejection, with reviewer, time and reason.
    page.goto(f"{live_server.url}/admin/gifting/giftreview/")
    page.get_by_role("link", name="Reviewed or released").click()
    expect(page.get_by_role("heading", name="Reviewed or released")).to_be_visible()
    expect(page.locator("#result_list thead")).to_contain_text("Decision")
    headers = [" ".join(t.split()).lower() for t in page.locator("#result_list thead th").all_inner_texts()]
    assert headers[1:] == ["gift", "recipient", "decision", "by", "when", "reason"]
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    today = timezone.localtime().strftime("%Y-%m-%d")
    for gift, decision, reason in [(approved, "Approved", APPROVE_REASON), (rejected, "Rejected", REJECT_REASON)]:
        gift_cells = cells(page, gift)
        assert gift_cells[3:5] == [decision, REVIEWER]
        assert gift_cells[5].startswith(today) and gift_cells[6] == reason
    assert_fits(page)
    screenshot(page, "reviewed-1440.png")
    page.set_viewport_size(SMALL_LAPTOP)
    assert_fits(page)
    page.get_by_role("link", name="All assessed gifts").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(len(DEMO_GIFTS) + 1)
    assert_fits(page)
