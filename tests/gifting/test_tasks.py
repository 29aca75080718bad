"""The delivery task's contract with Celery, without a broker."""

import pytest
from celery import Task
from celery.exceptions import Retry
from django.conf import settings

from gifting import tasks
from gifting.errors import TransientDeliveryError


@pytest.fixture
def published_retries(monkeypatch):
    """Capture what the task asks Celery to publish for a retry, and what it records."""
    calls = {"retry": [], "recorded": []}

    def fake_celery_retry(self, **kwargs):
        calls["retry"].append(kwargs)
        raise Retry("retry published", kwargs.get("exc"))

    monkeypatch.setattr(Task, "retry", fake_celery_retry)
    monkeypatch.setattr(tasks.outbox, "gift_record_retry", lambda **kwargs: calls["recorded"].append(kwargs))
    return calls


def test_backoff_travels_as_sqs_delay_seconds_never_as_a_countdown(published_retries):
    gift_id = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    tasks.deliver_gift.push_request(args=[gift_id], retries=0)
    try:
        with pytest.raises(Retry):
            tasks.deliver_gift.retry(exc=TransientDeliveryError("Busy."), countdown=37.9)
    finally:
        tasks.deliver_gift.pop_request()

    [call] = published_retries["retry"]
    assert call["countdown"] == 0  # nothing held in the worker's memory
    assert call["delay_seconds"] == 37
    [recorded] = published_retries["recorded"]
    assert str(recorded["gift_id"]) == gift_id
    assert recorded == {
        "gift_id": recorded["gift_id"],
        "reason": "Busy.",
        "delay_seconds": 37,
        "error": "TransientDeliveryError",
    }


def test_delay_is_capped_at_the_sqs_maximum(published_retries):
    tasks.deliver_gift.push_request(args=["1b4e28ba-2fa1-11d2-883f-0016d3cca427"], retries=0)
    try:
        with pytest.raises(Retry):
            tasks.deliver_gift.retry(exc=TransientDeliveryError("Busy."), countdown=5000)
    finally:
        tasks.deliver_gift.pop_request()

    assert published_retries["retry"][0]["delay_seconds"] == 900


def test_only_transient_errors_are_retried():
    assert tasks.deliver_gift.autoretry_for == (TransientDeliveryError,)
    assert tasks.deliver_gift.max_retries == settings.GIFT_MAX_RETRIES


def test_a_database_error_while_recording_a_retry_still_retries(monkeypatch):
    """The retry message is on SQS: its bookkeeping failing must not fail (and dead-letter) the gift."""
    from django.db import OperationalError

    def fake_celery_retry(self, **kwargs):
        raise Retry("retry published", kwargs.get("exc"))

    def database_gone(**kwargs):
        raise OperationalError("the connection is closed")

    monkeypatch.setattr(Task, "retry", fake_celery_retry)
    monkeypatch.setattr(tasks.outbox, "gift_record_retry", database_gone)
    tasks.deliver_gift.push_request(args=["1b4e28ba-2fa1-11d2-883f-0016d3cca427"], retries=0)
    try:
        with pytest.raises(Retry):
            tasks.deliver_gift.retry(exc=TransientDeliveryError("Busy."), countdown=3)
    finally:
        tasks.deliver_gift.pop_request()
