"""Quotas hold under concurrency: parallel requests from one sender serialise on its user row."""

import threading
import uuid

import pytest
from django.db import connection
from rest_framework.test import APIClient

from gifting.models import Gift
from tests.factories import api_token

PARALLEL_REQUESTS = 20
DAILY_COUNT = 5

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row locks need PostgreSQL; SQLite serialises whole transactions"
)


def test_parallel_requests_never_exceed_the_daily_quota(transactional_db, settings, make_user):
    settings.FRAUD_DAILY_COUNT = DAILY_COUNT
    sender = make_user()
    token = api_token(sender)
    start = threading.Barrier(PARALLEL_REQUESTS)
    responses = []

    def post_gift() -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        body = {"recipient_email": "bob@example.com", "amount": "10.00", "currency": "EUR"}
        start.wait(timeout=30)
        try:
            response = client.post("/api/v1/gifts/", body, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))
            responses.append((response.status_code, response.json().get("code")))
        finally:
            connection.close()

    threads = [threading.Thread(target=post_gift) for _ in range(PARALLEL_REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(responses) == sorted(
        [(202, None)] * DAILY_COUNT + [(422, "daily_quota")] * (PARALLEL_REQUESTS - DAILY_COUNT)
    )
    assert Gift.objects.filter(sender=sender).count() == DAILY_COUNT
