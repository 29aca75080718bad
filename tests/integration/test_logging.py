"""Monitoring logs: JSON lines with the [METRICS], [MONITOR] and [ALERT] records as searchable fields."""

import json
import logging

import pytest

from core.logging import JsonFormatter
from core.sqs import GIFT_DLQ, sqs_name
from gifting.models import GiftStatus
from gifting.monitoring import queues_monitor
from gifting.publishing import publish_delivery
from tests.integration.test_delivery import post_gift, wait_for_status
from tests.waiting import wait_until
from vouchers.models import Voucher

pytestmark = pytest.mark.integration


def json_records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_a_worker_logs_json_with_one_metrics_record_per_delivery_and_no_personal_data(
    sqs, smtp_sink, start_worker, client
):
    worker = start_worker(LOG_FORMAT="json")
    gift = post_gift(client, recipient_email="dana.private@example.org", message="A secret birthday note")
    wait_for_status(gift, GiftStatus.DELIVERED)

    def metrics_record() -> dict | None:
        records = json_records(worker.log())
        ours = [r for r in records if r.get("marker") == "METRICS" and r.get("gift_id") == str(gift.id)]
        return next((r for r in ours if r["outcome"] == "sent"), None)

    record = wait_until(metrics_record, timeout=30, message="no [METRICS] record for the delivery")
    assert record["attempt"] == gift.attempts  # SQLite may have refused a first attempt ("database is locked")
    assert record["receive_count"] == 1
    assert record["duration_seconds"] >= 0 and record["message_age_seconds"] >= 0
    assert record["task_id"] and record["request_id"] not in ("", "-")
    log = worker.log()
    assert all(line.startswith("{") for line in log.splitlines() if " ready." in line or "[METRICS]" in line)
    code = Voucher.objects.get(gift=gift).code
    for secret in ("dana.private@example.org", "A secret birthday note", code, code.replace("-", "")):
        assert secret not in log


def test_the_monitor_logs_each_queue_and_alerts_on_dead_letters(sqs, transactional_db, caplog):
    publish_delivery("1b4e28ba-2fa1-11d2-883f-0016d3cca427", queue=GIFT_DLQ)
    caplog.set_level(logging.INFO, logger="gifting.monitoring")

    alerts = queues_monitor()

    records = [json.loads(JsonFormatter().format(record)) for record in caplog.records]
    monitor = {r["queue"]: r for r in records if r.get("marker") == "MONITOR"}
    assert set(monitor) == {sqs_name(q) for q in ("gift-delivery", "gift-delivery-dlq", "gift-maintenance")}
    assert monitor[sqs_name(GIFT_DLQ)]["visible"] == 1
    assert all(r["dlq_visible"] == 1 for r in monitor.values())
    assert [r["alert"] for r in records if r.get("marker") == "ALERT"] == ["dlq_not_empty"]
    assert [alert.name for alert in alerts] == ["dlq_not_empty"]


def test_the_monitor_alerts_when_sqs_is_unreachable(transactional_db, settings, caplog):
    settings.SQS_ENDPOINT_URL = "http://127.0.0.1:9"
    caplog.set_level(logging.INFO, logger="gifting.monitoring")

    assert [alert.name for alert in queues_monitor()] == ["sqs_unreachable"]
    assert any(getattr(r, "marker", None) == "ALERT" for r in caplog.records)
