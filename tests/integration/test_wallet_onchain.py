"""On-chain verification with a real worker: API → SQS (moto) → celery worker → wallet provider stub, which
credits on a local chain (eth-tester), and the worker's check of that credit over JSON-RPC on loopback.

The chain lives in this process; the worker reaches it only through its JSON-RPC server, as a node.
"""

import uuid

import pytest

from gifting import chain as chain_module
from gifting.models import Gift, GiftEvent, GiftStatus
from gifting.tasks import FAILURE_REASONS
from tests.waiting import wait_until
from tests.wallet_provider import CHECKSUMMED

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("wallet_server")]

# Enough retries (GIFT_RETRY_BACKOFF_MAX is 1 s in tests) that a gift waiting for the test to mine
# blocks or restart the node cannot run out of them first.
PATIENT = {"GIFT_MAX_RETRIES": "1000"}


def send_wallet_gift(client, wallet: str = CHECKSUMMED, amount: str = "30.00") -> Gift:
    body = {"recipient_wallet": wallet, "amount": amount, "currency": "USD"}
    response = client.post("/api/v1/gifts/", body, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))
    assert response.status_code == 202, response.content
    return Gift.objects.get(id=response.json()["id"])


def status_of(gift: Gift) -> str:
    gift.refresh_from_db()
    return gift.status


def retried_because(gift: Gift, reason: str) -> bool:
    return GiftEvent.objects.filter(gift=gift, type="retry_scheduled", details__reason=reason).exists()


def dead_lettered(gift: Gift) -> bool:
    return GiftEvent.objects.filter(gift=gift, type="dead_lettered").exists()


def test_an_unconfirmed_credit_is_retried_then_delivered_once_blocks_are_mined(
    sqs, start_worker, client, wallet_server, chain
):
    gift = send_wallet_gift(client)
    start_worker(ETH_MIN_CONFIRMATIONS="3", **PATIENT)

    wait_until(
        lambda: retried_because(gift, chain_module.UNCONFIRMED), timeout=60, message="no retry while unconfirmed"
    )
    assert status_of(gift) == GiftStatus.QUEUED
    chain.mine(2)

    wait_until(lambda: status_of(gift) == GiftStatus.DELIVERED, timeout=60, message="not delivered after mining")
    assert len(wallet_server.sent) == 1  # every retry named the same transaction: one credit
    assert {request.headers["Idempotency-Key"] for request in wallet_server.requests} == {str(gift.id)}
    assert len(wallet_server.requests) >= 2
    assert GiftEvent.objects.filter(gift=gift, type="delivered").get().details == {"channel": "wallet"}


def test_credits_the_chain_contradicts_fail_at_once_and_are_dead_lettered(
    sqs, start_worker, client, wallet_server, chain
):
    modes = ["wrong_recipient", "wrong_amount", "failed", "wrong_contract"]
    wallets = chain.w3.eth.accounts[1 : 1 + len(modes)]
    wallet_server.transfers_by_wallet = dict(zip(wallets, modes, strict=True))
    gifts = [send_wallet_gift(client, wallet=wallet) for wallet in wallets]  # first: SQLite has one writer
    start_worker(**PATIENT)

    for gift in gifts:
        wait_until(lambda gift=gift: status_of(gift) == GiftStatus.FAILED, timeout=60, message="not failed")
        # The dead_lettered event follows the failure, once the DLQ has the message.
        wait_until(lambda gift=gift: dead_lettered(gift), timeout=60, message="not dead-lettered")
    for gift in gifts:
        assert (gift.attempts, gift.last_error) == (1, FAILURE_REASONS["permanent"])  # not retried; coarse
        types = list(GiftEvent.objects.filter(gift=gift).order_by("at", "id").values_list("type", flat=True))
        assert types[-2:] == ["failed", "dead_lettered"]
        assert types.count("delivery_attempted") == 1  # judged once: a contradiction is not retried
    assert len(wallet_server.sent) == len(modes)


def test_a_node_that_is_down_is_retried_and_the_gift_delivered_when_it_is_back(
    sqs, start_worker, client, wallet_server, chain
):
    chain.stop()
    gift = send_wallet_gift(client)
    start_worker(**PATIENT)

    wait_until(lambda: retried_because(gift, chain_module.UNREACHABLE), timeout=60, message="no retry while down")
    assert status_of(gift) == GiftStatus.QUEUED
    chain.start()

    wait_until(lambda: status_of(gift) == GiftStatus.DELIVERED, timeout=60, message="not delivered after restart")
    assert len(wallet_server.sent) == 1
