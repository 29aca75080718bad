"""/api/docs/ is served entirely from this site: Swagger UI comes from our static files, not a public CDN."""

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
import requests


class _Assets(HTMLParser):
    """Every URL a page makes the browser load: script src, link href (stylesheet, icon), img src."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        self.urls += [value for name, value in attrs if name == wanted and value]


def assets_of(html: str) -> list[str]:
    parser = _Assets()
    parser.feed(html)
    return parser.urls


@pytest.fixture
def docs_page(live_server, transactional_db) -> requests.Response:
    """The page from a real HTTP server that serves static files through staticfiles, as runserver does."""
    response = requests.get(f"{live_server.url}/api/docs/", timeout=30)
    assert response.status_code == 200
    return response


def test_the_docs_page_loads_nothing_from_another_origin(docs_page):
    urls = assets_of(docs_page.text)

    assert any(url.endswith("swagger-ui-bundle.js") for url in urls), urls
    for url in urls:
        assert not urlsplit(url).scheme and not urlsplit(url).netloc, f"{url} is not on this site"
        assert url.startswith("/static/"), url
    assert not re.search(r"cdn|jsdelivr|unpkg|cdnjs", docs_page.text, re.IGNORECASE)
    assert not re.search(r"""["'(]\s*(https?:)?//""", docs_page.text), "an absolute URL in the page"


def test_every_file_the_docs_page_needs_is_served(live_server, docs_page):
    for url in assets_of(docs_page.text):
        assert url.startswith("/static/"), url  # never fetch from elsewhere
        response = requests.get(urljoin(live_server.url, url), timeout=30)
        assert response.status_code == 200, url
        assert response.content, url
        if url.endswith(".js"):
            assert "javascript" in response.headers["Content-Type"]
            assert b"SwaggerUI" in response.content
