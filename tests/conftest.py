"""Fixtures shared by every test: users and API clients; a parallel run's resources per worker process."""

import itertools
import os

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.cache import cache
from rest_framework.test import APIClient

from tests.factories import api_token
from tests.parallel import worker_environment

_usernames = itertools.count(1)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_setupnodes(config, specs) -> None:
    """Under pytest-xdist, before its worker processes start: each its own ports, Redis database and directories."""
    for number, spec in enumerate(specs, start=1):
        spec.env.update(worker_environment(number, os.environ))


@pytest.fixture(autouse=True)
def empty_cache():
    """Rate-limit counters and lockouts live in the cache (shared Redis in CI): start each test clean."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    """Hashing passwords properly is slow by design; tests create many users."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def make_user(db):
    """Create a user: make_user(username=..., password=..., **fields)."""

    def make(username: str | None = None, password: str = "correct-horse-battery", **fields):
        username = username or f"user{next(_usernames)}"
        return get_user_model().objects.create_user(username=username, password=password, **fields)

    return make


@pytest.fixture
def user(make_user):
    return make_user(first_name="Alice", last_name="Sender")


@pytest.fixture
def outbox(db, settings) -> list:
    """Emails sent during the test, through Django's in-memory backend."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    mail.outbox = []
    return mail.outbox


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def auth_client(user) -> APIClient:
    """An API client authenticated as `user` with a token."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


@pytest.fixture(scope="module")
def chain():
    """A local Ethereum chain behind a real JSON-RPC server (it takes seconds to start: one per module)."""
    from tests.eth_chain import LocalChain  # py-evm loads slowly: only the modules that use it pay

    local = LocalChain()
    yield local
    local.stop()


@pytest.fixture(scope="module")
def tokens(chain):
    """The ERC-20 token of each currency, deployed on that chain."""
    return chain.deploy_currency_tokens()
