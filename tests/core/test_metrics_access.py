"""Who may read /metrics: loopback and the allowed networks freely, anyone else with the bearer token."""

import pytest
from django.test import Client


def scrape(remote_addr: str, **headers: str):
    return Client(REMOTE_ADDR=remote_addr).get("/metrics", **headers)


@pytest.fixture(autouse=True)
def no_sqs(settings):
    settings.SQS_ENDPOINT_URL = "http://127.0.0.1:9"  # nothing listens: the scrape reports sqs_up 0


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_loopback_scrapes_without_credentials(db, address):
    response = scrape(address)
    assert response.status_code == 200
    assert b"sqs_up" in response.content


def test_elsewhere_a_scrape_needs_the_token(db, settings):
    settings.METRICS_TOKEN = "s3cret-scrape-token"
    refused = scrape("203.0.113.7")
    assert refused.status_code == 401
    assert refused["WWW-Authenticate"].startswith("Bearer")
    assert refused.json()["code"] == "not_authenticated"
    assert scrape("203.0.113.7", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert scrape("203.0.113.7", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token").status_code == 200


def test_without_a_configured_token_no_bearer_gets_in(db, settings):
    settings.METRICS_TOKEN = ""
    assert scrape("203.0.113.7", HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_an_allowed_network_scrapes_without_credentials(db, settings):
    settings.METRICS_ALLOWED_NETS = ["10.0.0.0/8"]
    assert scrape("10.1.2.3").status_code == 200
    assert scrape("11.1.2.3").status_code == 401


def test_api_latency_is_measured_by_route_method_and_status_never_by_path(db, auth_client):
    gift_id = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    auth_client.get(f"/api/v1/gifts/{gift_id}/")

    body = scrape("127.0.0.1").content.decode()

    assert 'api_request_duration_seconds_count{method="GET",route="api/v1/gifts/<str:gift_id>/",status="404"}' in body
    assert gift_id not in body
