"""Fuzzing the API against its own OpenAPI schema (schemathesis), in-process: no server, no ports.

Every operation in GET /api/schema/ gets generated requests, valid and invalid, and
every answer must be no 5xx and exactly what the schema documents: a listed status
code, its content type, a body matching its schema and its headers. The stateful
test chains operations along the links schemathesis finds (a created gift's id into
GET /api/v1/gifts/{gift_id}/).

FUZZ_EXAMPLES sets the examples per operation: small in `make test`, 500 in `make fuzz`.
"""

import os
import uuid
from decimal import Decimal
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application
from gifting.idempotency import validate_key
from tests.factories import api_token

# Hypothesis keeps caches in ./.hypothesis unless told otherwise; keep them under var/ with the other local state.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(Path(__file__).resolve().parents[1] / "var" / "hypothesis"))
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
# Werkzeug's test client sends no client address; every real server (and Django's test client) does.
TRANSPORT = {"environ_base": {"REMOTE_ADDR": "127.0.0.1"}}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
HYPOTHESIS_SETTINGS = hypothesis.settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,  # no example database kept; a failure prints its own reproduction
    # Requests are slow next to in-memory data, the token fixture is per test (not per example), and
    # schemathesis filters generated headers and bodies by design.
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)


@pytest.fixture
def keep_db_connection():
    """The WSGI app closes the database connection after each request, which would lose the test's transaction.

    Django's own test client steps around this the same way.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def relaxed_limits(settings):
    """Limits fuzzing never reaches, so that answers are about the input, not 429s and quota 422s."""
    settings.RATELIMIT_GIFT_USER = settings.RATELIMIT_GIFT_IP = settings.RATELIMIT_TOKEN_IP = "1000000/m"
    settings.FRAUD_MIN_AMOUNT = Decimal("0.01")
    settings.FRAUD_MAX_AMOUNT = Decimal("10000000000")
    settings.FRAUD_DAILY_COUNT = settings.FRAUD_WEEKLY_COUNT = 1_000_000
    settings.FRAUD_DAILY_VALUE = settings.FRAUD_WEEKLY_VALUE = Decimal("1e15")


@pytest.fixture
def token(make_user, relaxed_limits, keep_db_connection) -> str:
    return api_token(make_user())


def prepare(case: schemathesis.Case, token: str) -> None:
    """Sign the request in; give a valid Idempotency-Key a fresh value so examples do not replay each other.

    An invalid or missing key is kept as generated: its 400 is part of what is tested.
    """
    case.headers = {**(case.headers or {}), "Authorization": f"Token {token}"}
    if case.operation.method.upper() == "POST" and case.operation.path == "/api/v1/gifts/":
        try:
            validate_key(case.headers.get("Idempotency-Key"))
        except ValueError:
            return
        case.headers["Idempotency-Key"] = str(uuid.uuid4())


@schema.parametrize()
@HYPOTHESIS_SETTINGS
def test_every_operation_answers_as_documented(case, token):
    prepare(case, token)
    case.call_and_validate(checks=CHECKS, **TRANSPORT)


def test_chained_operations_answer_as_documented(token):
    class Workflow(schema.as_state_machine()):
        """Each scenario starts from the same data, so that hypothesis can replay (and shrink) a failing one."""

        def setup(self) -> None:
            self.savepoint = transaction.savepoint()

        def teardown(self) -> None:
            transaction.savepoint_rollback(self.savepoint)
            cache.clear()

        def before_call(self, case: schemathesis.Case) -> None:
            prepare(case, token)

        def get_call_kwargs(self, case: schemathesis.Case) -> dict:
            return TRANSPORT

        def validate_response(self, response, case, additional_checks=None, **kwargs) -> None:
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

    Workflow.run(settings=hypothesis.settings(HYPOTHESIS_SETTINGS, stateful_step_count=4))
