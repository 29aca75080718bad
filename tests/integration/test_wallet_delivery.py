"""End to end for wallets: API → SQS (moto) → celery worker → a wallet provider on a real local HTTP server,
which credits on a local chain that the worker checks over JSON-RPC (tests/integration/test_wallet_onchain.py
has the failures)."""

import uuid

import pytest

from gifting.models import Gift, GiftEvent, GiftStatus
from tests.waiting import wait_until
from tests.wallet_provider import CHECKSUMMED
from vouchers.models import Voucher

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("wallet_server")]


def test_a_wallet_gift_is_credited_once_by_a_worker(sqs, start_worker, client, wallet_server, chain, tokens):
    start_worker()
    body = {"recipient_wallet": CHECKSUMMED.lower(), "amount": "30.00", "currency": "USD"}
    response = client.post("/api/v1/gifts/", body, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))
    assert response.status_code == 202, response.content
    gift = Gift.objects.get(id=response.json()["id"])

    def delivered() -> bool:
        gift.refresh_from_db()
        return gift.status == GiftStatus.DELIVERED

    wait_until(delivered, timeout=60, message="the wallet gift was not delivered")

    [request] = wallet_server.requests
    assert chain.balance(tokens["USD"], CHECKSUMMED) == 30 * 10**6  # USD's token has 6 decimals
    assert request.signed
    assert request.headers["Idempotency-Key"] == str(gift.id)
    assert request.json() == {
        "gift_id": str(gift.id),
        "voucher_code": Voucher.objects.get(gift=gift).code,
        "amount": "30.00",
        "currency": "USD",
        "wallet": CHECKSUMMED,
    }
    events = GiftEvent.objects.filter(gift=gift).order_by("at", "id")
    types = [event.type for event in events]
    # On SQLite a worker can meet a locked database once and retry before its attempt; the trail still
    # starts accepted and queued, and ends with the one attempt that credited the wallet.
    assert types[:2] == ["created", "queued"]
    assert types[-2:] == ["delivery_attempted", "delivered"]
    assert types.count("delivered") == 1
    assert events.last().details == {"channel": "wallet"}
