"""With DEBUG off the admin is styled: gunicorn serves `collectstatic`'s files through whitenoise.

A production-like web process: DJANGO_DEBUG=false, real secrets, static files
gathered by `collectstatic` into a temporary STATIC_ROOT, and TLS ended by a
proxy in front of the app that says so in X-Forwarded-Proto. Plain HTTP is
redirected to https, except the probes a load balancer calls. Debian's
Chromium (or CHROMIUM_PATH) then opens the admin login page through that
"proxy" and must find every stylesheet served and applied. It leaves a
screenshot in var/screenshots/admin-login-production.png.
"""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet
from playwright.sync_api import Page, Response, expect

from tests.integration.conftest import ROOT, _database_url
from tests.integration.test_metrics import Gunicorn
from tests.integration.test_review_queue_browser import chromium_page

pytestmark = pytest.mark.integration

SCREENSHOT = ROOT / "var" / "screenshots" / "admin-login-production.png"
BEHIND_TLS_PROXY = {"X-Forwarded-Proto": "https"}
# What the admin's stylesheets change: the page's font and the header bar's colour.
STYLE_PROBE = """() => ({
    bodyFont: getComputedStyle(document.body).fontFamily,
    headerBackground: getComputedStyle(document.querySelector("#header")).backgroundColor,
})"""


def production_env(*, static_root: Path, metrics_dir: Path, database_url: str) -> dict[str, str]:
    """The environment of a production web process: real secrets, no .env."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("DJANGO_")}
    env.update(
        DJANGO_ENV_FILE="",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=database_url,
        # Required with DEBUG off; showing the login page counts nothing in it.
        REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        BLIND_INDEX_KEY=secrets.token_urlsafe(32),
        DJANGO_STATIC_ROOT=str(static_root),
        DJANGO_SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO",
        TRUSTED_PROXY_HOPS="1",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    return env


@pytest.fixture(scope="module")
def static_root(tmp_path_factory) -> Path:
    """`manage.py collectstatic` with production settings, as a deployment runs it (no database needed)."""
    root = tmp_path_factory.mktemp("static")
    env = production_env(static_root=root, metrics_dir=root.parent / "metrics", database_url="sqlite:///:memory:")
    collected = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert collected.returncode == 0, collected.stderr
    assert (root / "staticfiles.json").is_file()
    return root


@pytest.fixture
def production_web(transactional_db, static_root, tmp_path):
    """gunicorn (the Procfile's web process) with production settings on a free loopback port."""
    env = production_env(static_root=static_root, metrics_dir=tmp_path / "metrics", database_url=_database_url())
    web = Gunicorn(env, tmp_path / "gunicorn.log")
    yield web
    web.stop()


@pytest.fixture
def browser_page(monkeypatch) -> Page:
    with chromium_page(monkeypatch, width=1280, height=800) as page:
        page.context.set_extra_http_headers(BEHIND_TLS_PROXY)
        yield page


def test_plain_http_is_redirected_to_https_except_the_probes(production_web):
    for probe in ("/healthz", "/readyz"):
        response = requests.get(f"{production_web.url}{probe}", allow_redirects=False, timeout=30)
        assert response.status_code in (200, 503), probe  # answered, whatever the dependencies say

    login = requests.get(f"{production_web.url}/admin/login/", allow_redirects=False, timeout=30)
    assert login.status_code == 301
    assert login.headers["Location"].startswith("https://127.0.0.1:")


def test_the_admin_login_page_is_styled_with_debug_off(production_web, browser_page: Page):
    page = browser_page
    static_responses: list[Response] = []
    page.on("response", lambda response: static_responses.append(response) if "/static/" in response.url else None)

    page.goto(f"{production_web.url}/admin/login/")
    expect(page.get_by_label("Username")).to_be_visible()
    page.wait_for_load_state("load")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOT, full_page=True)
    print(f"admin login screenshot: {SCREENSHOT}")

    # Every static file the page asked for was served: by whitenoise, under its content-hashed name.
    stylesheets = page.eval_on_selector_all('link[rel="stylesheet"]', "links => links.map(link => link.href)")
    assert any(re.search(r"/static/admin/css/base\.[0-9a-f]{12}\.css$", href) for href in stylesheets), stylesheets
    assert static_responses and {response.status for response in static_responses} == {200}
    css = requests.get(stylesheets[0], headers=BEHIND_TLS_PROXY, timeout=30)
    assert css.status_code == 200
    assert css.headers["Content-Type"].startswith("text/css")
    assert "immutable" in css.headers["Cache-Control"]  # hashed names can be cached for ever

    # And applied: the same page without its stylesheets looks different.
    styled = page.evaluate(STYLE_PROBE)
    page.evaluate("document.querySelectorAll('link[rel=stylesheet]').forEach(link => link.remove())")
    unstyled = page.evaluate(STYLE_PROBE)
    assert styled["bodyFont"] != unstyled["bodyFont"]
    assert styled["headerBackground"] != unstyled["headerBackground"]
