"""abuse/static/abuse/challenge.js solves the admin login's challenge in a real browser (Chromium, SubtleCrypto).

Integration: Debian's Chromium through Playwright against pytest-django's live server,
as tests/integration/test_review_queue_browser.py does. The live server runs in this
process, so it shares the development cache where the failed logins are counted.
"""

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect, sync_playwright

from audit.models import AuditEntry
from tests.integration.test_review_queue_browser import CHROMIUM_ARGS, chromium_executable

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
PASSWORD = "operator-secret-words"


def test_the_widget_solves_the_challenge_and_the_operator_logs_in(live_server, settings):
    settings.CHALLENGE_AFTER_FAILURES = 1
    settings.CHALLENGE_MAX_NUMBER = 20000
    get_user_model().objects.create_user("operator", password=PASSWORD, is_staff=True, is_superuser=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_executable(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{live_server.url}/admin/login/")
            expect(page.locator("#abuse-challenge")).to_have_count(0)  # no failure yet: no widget
            page.fill("#id_username", "operator")
            page.fill("#id_password", "wrong-password")
            page.click("input[type=submit]")

            # One failure: the page now carries the challenge, which the script solves before the form can go.
            expect(page.locator("#abuse-challenge-status")).to_have_text("Done: you can log in.", timeout=30_000)
            assert page.input_value("#abuse-challenge-solution")
            page.fill("#id_username", "operator")
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            expect(page.locator("#site-name")).to_be_visible()
            assert "/admin/login/" not in page.url
        finally:
            browser.close()
    assert AuditEntry.objects.filter(kind="admin_login", subject="operator").exists()
