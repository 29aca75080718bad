"""The benchmarks' floor endpoint exists under config/settings_bench.py only, never in production's URLs."""

import importlib

import pytest
from django.db import connection
from django.urls import NoReverseMatch, Resolver404, resolve, reverse

FLOOR = "/bench/floor/"
BODY = {"recipient_email": "floor@example.com", "amount": "10.00", "currency": "EUR"}


@pytest.mark.django_db
def test_the_floor_is_not_found_with_the_normal_settings(auth_client):
    assert auth_client.post(FLOOR, BODY, format="json").status_code == 404
    with pytest.raises(Resolver404):
        resolve(FLOOR, urlconf="config.urls")
    with pytest.raises(NoReverseMatch):
        reverse("bench-floor", urlconf="config.urls")


def test_the_bench_settings_open_the_limits_and_route_to_the_floor():
    bench = importlib.import_module("config.settings_bench")
    assert bench.ROOT_URLCONF == "config.urls_bench"
    assert bench.LOGGING["root"]["level"] == "WARNING"
    assert bench.RATELIMIT_GIFT_USER == "1000000/m"
    assert bench.FRAUD_DAILY_COUNT == 1_000_000
    assert resolve(FLOOR, urlconf="config.urls_bench").url_name == "bench-floor"


@pytest.fixture
def floor_table(db):
    from config.urls_bench import FLOOR_TABLE_DDL

    with connection.cursor() as cursor:
        cursor.execute(FLOOR_TABLE_DDL)
    return "bench_floor"


def floor_rows() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM bench_floor")
        return cursor.fetchone()[0]


def test_the_floor_authenticates_validates_and_inserts_one_row(settings, floor_table, api_client, auth_client):
    settings.ROOT_URLCONF = "config.urls_bench"

    assert api_client.post(FLOOR, BODY, format="json").status_code == 401
    invalid = auth_client.post(FLOOR, {**BODY, "currency": "XXX"}, format="json")
    assert invalid.status_code == 400
    assert "currency" in invalid.json()
    assert floor_rows() == 0

    assert auth_client.post(FLOOR, BODY, format="json").status_code == 202
    assert floor_rows() == 1


def test_the_floor_with_round_trips_makes_that_many_more_statements(settings, floor_table, auth_client):
    from django.test.utils import CaptureQueriesContext

    settings.ROOT_URLCONF = "config.urls_bench"
    auth_client.post(FLOOR, BODY, format="json")  # warm-up: the token's first use

    with CaptureQueriesContext(connection) as plain:
        assert auth_client.post(FLOOR, BODY, format="json").status_code == 202
    with CaptureQueriesContext(connection) as with_round_trips:
        assert auth_client.post(f"{FLOOR}?round_trips=20", BODY, format="json").status_code == 202

    selects = [query for query in with_round_trips.captured_queries if query["sql"] == "SELECT 1"]
    assert len(selects) == 20
    assert len(with_round_trips.captured_queries) - len(plain.captured_queries) == 20
    assert floor_rows() == 3
