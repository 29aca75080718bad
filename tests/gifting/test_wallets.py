"""Wallet recipients: address validation, the API, and the HTTP wallet provider against a real local server.

The provider stub credits on a local chain (eth-tester) that the code under test
reads over real JSON-RPC: a credit is delivered only once the chain shows it.
"""

import logging
import socket
import time
from decimal import Decimal

import pytest

from gifting import chain as chain_module
from gifting.channels import deliver_voucher
from gifting.errors import PermanentDeliveryError, TransientDeliveryError
from gifting.models import Gift, GiftEvent, GiftStatus, WalletCredit
from gifting.services import delivery
from gifting.wallets import (
    NOT_CONFIGURED,
    TRANSACTION_REUSED,
    UNVERIFIED,
    HttpWalletProvider,
    _claim_transaction,
    normalize_wallet,
)
from tests.eth_chain import token_contracts
from tests.factories import gift_row
from tests.wallet_provider import CHECKSUMMED, DIGITS_ONLY_CHECKSUMMED, SECRET, WalletProviderStub, hmac_hex
from vouchers.services import voucher_issue_for_gift


@pytest.fixture
def chain_settings(settings, chain, tokens):
    """The settings point at the local chain's node and tokens; one confirmation is enough."""
    settings.ETH_RPC_URL = chain.rpc_url
    settings.ETH_RPC_TIMEOUT = 5
    settings.ETH_MIN_CONFIRMATIONS = 1
    settings.WALLET_TOKEN_CONTRACTS = token_contracts(tokens)


@pytest.fixture
def wallet_server(settings, chain_settings, chain, tokens):
    """A running provider stub, crediting on the local chain, that the settings point at."""
    stub = WalletProviderStub(chain=chain, tokens=tokens)
    settings.WALLET_PROVIDER_URL = stub.url
    settings.WALLET_PROVIDER_SECRET = SECRET
    settings.WALLET_PROVIDER_TIMEOUT = 5
    yield stub
    stub.stop()


@pytest.fixture
def gift(user):
    return gift_row(user, recipient_email="", recipient_wallet=CHECKSUMMED, amount=Decimal("25"))


@pytest.fixture
def voucher(gift):
    return voucher_issue_for_gift(gift=gift)


# --- normalize_wallet ------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        (CHECKSUMMED, CHECKSUMMED),
        (CHECKSUMMED.lower(), CHECKSUMMED),
        ("0x" + CHECKSUMMED[2:].upper(), CHECKSUMMED),
        (DIGITS_ONLY_CHECKSUMMED, DIGITS_ONLY_CHECKSUMMED),
        ("0x" + "1" * 40, "0x" + "1" * 40),  # no letters, nothing to check
    ],
    ids=["checksummed", "lower-case", "upper-case", "checksummed-2", "digits-only"],
)
def test_normalize_wallet_returns_the_checksummed_form(raw, normalised):
    assert normalize_wallet(raw) == normalised


def test_normalize_wallet_refuses_a_mixed_case_address_with_a_wrong_checksum():
    typo = CHECKSUMMED[:-1] + CHECKSUMMED[-1].upper()  # …BeAed → …BeAeD
    with pytest.raises(ValueError, match="checksum"):
        normalize_wallet(typo)


@pytest.mark.parametrize(
    "raw",
    [
        CHECKSUMMED[:-1],  # 39 digits
        CHECKSUMMED + "0",  # 41 digits
        CHECKSUMMED[2:],  # no 0x
        "0X" + CHECKSUMMED[2:],
        "0x" + "g" * 40,  # not hex
        " " + CHECKSUMMED,
        "",
    ],
    ids=["too-short", "too-long", "missing-0x", "upper-0X", "non-hex", "leading-space", "empty"],
)
def test_normalize_wallet_refuses_what_is_not_0x_and_40_hex_digits(raw):
    with pytest.raises(ValueError, match="0x followed by 40 hexadecimal digits"):
        normalize_wallet(raw)


# --- API -------------------------------------------------------------------------


def post_wallet_gift(client, wallet: str):
    body = {"recipient_wallet": wallet, "amount": "25.00", "currency": "EUR"}
    return client.post("/api/v1/gifts/", body, format="json", HTTP_IDEMPOTENCY_KEY="wallet-key-1")


def test_api_accepts_a_lower_case_wallet_and_stores_it_checksummed(auth_client):
    response = post_wallet_gift(auth_client, CHECKSUMMED.lower())

    assert response.status_code == 202, response.content
    assert response.json()["recipient"] == "0x5a…eAed"
    assert Gift.objects.get().recipient_wallet == CHECKSUMMED


@pytest.mark.parametrize(
    ("wallet", "message"),
    [
        (CHECKSUMMED[:-1] + "D", "checksum"),
        (CHECKSUMMED[2:], "0x followed by 40 hexadecimal digits"),
        ("0x1234", "0x followed by 40 hexadecimal digits"),
    ],
    ids=["bad-checksum", "missing-0x", "too-short"],
)
def test_api_refuses_a_bad_wallet_as_a_field_error_and_stores_nothing(auth_client, wallet, message):
    response = post_wallet_gift(auth_client, wallet)

    assert response.status_code == 400
    [error] = response.json()["recipient_wallet"]
    assert message in error
    assert set(response.json()) == {"recipient_wallet"}
    assert Gift.objects.count() == 0


# --- HttpWalletProvider against a real HTTP server -------------------------------


@pytest.mark.parametrize("status", [200, 201])
def test_a_signed_confirmation_credits_the_wallet(wallet_server, gift, voucher, status):
    wallet_server.status = status

    assert deliver_voucher(gift=gift, voucher=voucher) == "wallet"

    [request] = wallet_server.requests
    assert request.signed
    assert request.headers["X-Signature"] != hmac_hex(request.body)  # the timestamp is signed too
    assert request.headers["Idempotency-Key"] == str(gift.id)
    assert request.headers["Content-Type"] == "application/json"
    assert abs(int(request.headers["X-Timestamp"]) - time.time()) < 60
    assert request.json() == {
        "gift_id": str(gift.id),
        "voucher_code": voucher.code,
        "amount": "25.00",
        "currency": "EUR",
        "wallet": CHECKSUMMED,
    }


@pytest.mark.parametrize("status", [500, 503, 429, 408])
def test_server_errors_and_throttling_are_transient(wallet_server, gift, voucher, status):
    wallet_server.status = status
    with pytest.raises(TransientDeliveryError) as raised:
        deliver_voucher(gift=gift, voucher=voucher)
    assert raised.value.reason == "The wallet provider is temporarily unavailable."


@pytest.mark.parametrize("status", [400, 404, 422])
def test_client_errors_are_permanent(wallet_server, gift, voucher, status):
    wallet_server.status = status
    with pytest.raises(PermanentDeliveryError) as raised:
        deliver_voucher(gift=gift, voucher=voucher)
    assert raised.value.reason == "The wallet provider refused the credit."


def test_a_request_signed_with_another_secret_is_refused_by_the_provider(wallet_server, settings, gift, voucher):
    settings.WALLET_PROVIDER_SECRET = "not-the-secret"
    with pytest.raises(PermanentDeliveryError):
        deliver_voucher(gift=gift, voucher=voucher)
    assert [request.signed for request in wallet_server.requests] == [False]


def test_a_redirect_is_not_followed(wallet_server, gift, voucher):
    wallet_server.status = 307
    wallet_server.headers = {"Location": wallet_server.url}
    with pytest.raises(PermanentDeliveryError):
        deliver_voucher(gift=gift, voucher=voucher)
    assert len(wallet_server.requests) == 1


@pytest.mark.parametrize(
    ("signature", "answer", "status"),
    [
        ("missing", None, 200),
        ("wrong", None, 200),
        ("non-ascii", None, 200),
        ("valid", {"gift_id": "00000000-0000-4000-8000-000000000000", "status": "credited"}, 200),
        ("valid", {"status": "credited"}, 200),
        ("valid", {"gift_id": "<this gift>", "status": "pending"}, 200),
        ("valid", ["credited"], 200),
        ("valid", None, 202),
    ],
    ids=[
        "unsigned",
        "badly-signed",
        "garbage-signature",
        "another-gift",
        "no-gift-id",
        "not-credited",
        "not-an-object",
        "202",
    ],
)
def test_an_unverifiable_confirmation_is_not_a_delivery(wallet_server, gift, voucher, signature, answer, status):
    wallet_server.signature, wallet_server.status = signature, status
    if isinstance(answer, dict) and answer.get("gift_id") == "<this gift>":
        answer["gift_id"] = str(gift.id)
    wallet_server.answer = answer

    with pytest.raises(TransientDeliveryError) as raised:
        deliver_voucher(gift=gift, voucher=voucher)
    assert raised.value.reason == UNVERIFIED


def test_a_timeout_is_transient(wallet_server, settings, gift, voucher):
    settings.WALLET_PROVIDER_TIMEOUT = 0.2
    wallet_server.delay = 10  # the server is slow on purpose: that is what this test is about

    with pytest.raises(TransientDeliveryError) as raised:
        deliver_voucher(gift=gift, voucher=voucher)
    assert raised.value.reason == "The wallet provider could not be reached."
    assert isinstance(raised.value.__cause__, TimeoutError)


def test_a_refused_connection_is_transient(settings, chain_settings, gift, voucher):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as reserved:
        reserved.bind(("127.0.0.1", 0))  # bound, never listening
        settings.WALLET_PROVIDER_URL = f"http://127.0.0.1:{reserved.getsockname()[1]}/v1/credits"
        settings.WALLET_PROVIDER_SECRET = SECRET
        with pytest.raises(TransientDeliveryError) as raised:
            deliver_voucher(gift=gift, voucher=voucher)
    assert raised.value.reason == "The wallet provider could not be reached."


@pytest.mark.parametrize(
    ("url", "secret"), [("", SECRET), ("http://127.0.0.1:1/v1/credits", "")], ids=["no-url", "no-secret"]
)
def test_wallet_delivery_without_a_configured_provider_is_permanent(settings, gift, voucher, url, secret):
    settings.WALLET_PROVIDER_URL, settings.WALLET_PROVIDER_SECRET = url, secret
    with pytest.raises(PermanentDeliveryError) as raised:
        deliver_voucher(gift=gift, voucher=voucher)
    assert raised.value.reason == "Wallet delivery is not configured."


def test_wallet_delivery_without_a_node_to_verify_with_is_permanent_and_nothing_is_credited(
    wallet_server, settings, gift, voucher
):
    settings.ETH_RPC_URL = ""
    with pytest.raises(PermanentDeliveryError) as raised:
        deliver_voucher(gift=gift, voucher=voucher)
    assert raised.value.reason == NOT_CONFIGURED
    assert wallet_server.requests == []


@pytest.mark.parametrize(
    ("currency", "amount", "decimals"),
    [("CHF", "25", None), ("GBP", "25.50", 0)],
    ids=["no-token-for-the-currency", "amount-finer-than-the-token"],
)
def test_a_credit_the_chain_cannot_carry_is_permanent_and_never_asked_for(
    wallet_server, settings, tokens, user, currency, amount, decimals
):
    if decimals is not None:
        settings.WALLET_TOKEN_CONTRACTS = {**settings.WALLET_TOKEN_CONTRACTS, currency: f"{tokens[currency].address}:0"}
    gift = gift_row(user, recipient_email="", recipient_wallet=CHECKSUMMED, amount=Decimal(amount), currency=currency)
    with pytest.raises(PermanentDeliveryError) as raised:
        deliver_voucher(gift=gift, voucher=voucher_issue_for_gift(gift=gift))
    assert raised.value.reason == NOT_CONFIGURED
    assert wallet_server.requests == []


def test_an_invalid_stored_wallet_is_permanent_and_nothing_is_sent(wallet_server, gift, voucher):
    gift.recipient_wallet = CHECKSUMMED[:-1] + "D"
    with pytest.raises(PermanentDeliveryError):
        deliver_voucher(gift=gift, voucher=voucher)
    assert wallet_server.requests == []


def test_the_provider_only_speaks_http():
    with pytest.raises(ValueError, match="http"):
        HttpWalletProvider(url="file:///etc/passwd", secret=SECRET, timeout=1)


def test_reasons_and_logs_leak_neither_wallet_nor_voucher_code_nor_answer(wallet_server, gift, voucher, caplog):
    wallet_server.status = 400
    wallet_server.answer = {"error": "wallet frozen by compliance"}
    caplog.set_level(logging.DEBUG, logger="gifting")

    with pytest.raises(PermanentDeliveryError) as raised:
        deliver_voucher(gift=gift, voucher=voucher)

    for text in (raised.value.reason, caplog.text):
        assert CHECKSUMMED not in text and CHECKSUMMED.lower() not in text
        assert voucher.code not in text
        assert "compliance" not in text
    assert "0x5a…eAed" in caplog.text


# --- gift_deliver, end to end ----------------------------------------------------


def test_gift_deliver_credits_a_wallet_gift_exactly_once(wallet_server, gift):
    assert delivery.gift_deliver(gift_id=gift.id) is True

    gift.refresh_from_db()
    assert (gift.status, gift.attempts, gift.last_error) == (GiftStatus.DELIVERED, 1, "")
    delivered = GiftEvent.objects.get(gift=gift, type="delivered")
    assert delivered.details == {"channel": "wallet"}
    [request] = wallet_server.requests
    assert request.json()["voucher_code"] == gift.voucher.code

    assert delivery.gift_deliver(gift_id=gift.id) is False
    assert len(wallet_server.requests) == 1


def test_gift_deliver_leaves_a_gift_queued_on_an_unsigned_confirmation(wallet_server, gift):
    wallet_server.signature = "missing"

    with pytest.raises(TransientDeliveryError):
        delivery.gift_deliver(gift_id=gift.id)

    gift.refresh_from_db()
    assert (gift.status, gift.last_error, gift.delivered_at) == (GiftStatus.QUEUED, UNVERIFIED, None)


# --- The credit, verified on the chain over JSON-RPC ---------------------------------


def test_a_credit_is_delivered_once_its_transfer_is_on_the_chain(wallet_server, chain, tokens, gift, voucher):
    before = chain.balance(tokens["EUR"], CHECKSUMMED)

    assert deliver_voucher(gift=gift, voucher=voucher) == "wallet"

    [tx_hash] = wallet_server.sent
    assert wallet_server.credits == {str(gift.id): tx_hash}
    assert chain.balance(tokens["EUR"], CHECKSUMMED) - before == 25 * 10**18  # EUR's token has 18 decimals


@pytest.mark.parametrize("mode", ["wrong_recipient", "wrong_amount", "failed", "wrong_contract"])
def test_a_transfer_the_chain_contradicts_is_permanent(wallet_server, gift, voucher, mode):
    wallet_server.transfer = mode

    with pytest.raises(PermanentDeliveryError) as raised:
        deliver_voucher(gift=gift, voucher=voucher)

    assert raised.value.reason == chain_module.MISMATCH
    assert len(wallet_server.sent) == 1  # a transaction was sent and found: it is not the credit


def test_a_confirmation_without_a_transaction_is_permanent(wallet_server, gift, voucher):
    wallet_server.transfer = "no_tx_hash"
    with pytest.raises(PermanentDeliveryError) as raised:
        deliver_voucher(gift=gift, voucher=voucher)
    assert raised.value.reason == chain_module.NO_TRANSACTION


@pytest.mark.parametrize("tx_hash", ["0x1234", 42, ["0x" + "ab" * 32], "0x" + "g" * 64])
def test_a_confirmation_naming_no_valid_transaction_hash_is_permanent(wallet_server, gift, voucher, tx_hash):
    wallet_server.answer = {"gift_id": str(gift.id), "status": "credited", "tx_hash": tx_hash}
    with pytest.raises(PermanentDeliveryError) as raised:
        deliver_voucher(gift=gift, voucher=voucher)
    assert raised.value.reason == chain_module.NO_TRANSACTION


def test_a_transaction_the_chain_does_not_know_yet_is_transient(wallet_server, gift, voucher):
    wallet_server.answer = {"gift_id": str(gift.id), "status": "credited", "tx_hash": "0x" + "ab" * 32}
    with pytest.raises(TransientDeliveryError) as raised:
        deliver_voucher(gift=gift, voucher=voucher)
    assert raised.value.reason == chain_module.NOT_MINED


def test_too_few_confirmations_are_transient_and_a_retry_checks_the_same_transaction(
    wallet_server, settings, chain, gift, voucher
):
    settings.ETH_MIN_CONFIRMATIONS = 3
    with pytest.raises(TransientDeliveryError) as raised:
        deliver_voucher(gift=gift, voucher=voucher)
    assert raised.value.reason == chain_module.UNCONFIRMED

    chain.mine(1)  # two confirmations of three
    with pytest.raises(TransientDeliveryError):
        deliver_voucher(gift=gift, voucher=voucher)
    chain.mine(1)
    assert deliver_voucher(gift=gift, voucher=voucher) == "wallet"

    # Three requests under one idempotency key, one transfer on the chain.
    assert [request.headers["Idempotency-Key"] for request in wallet_server.requests] == [str(gift.id)] * 3
    assert len(wallet_server.sent) == 1


def test_an_unreachable_node_is_transient_and_the_credit_goes_through_once_it_is_back(
    wallet_server, chain, gift, voucher
):
    chain.stop()
    try:
        with pytest.raises(TransientDeliveryError) as raised:
            deliver_voucher(gift=gift, voucher=voucher)
    finally:
        chain.start()
    assert raised.value.reason == chain_module.UNREACHABLE

    assert deliver_voucher(gift=gift, voucher=voucher) == "wallet"
    assert len(wallet_server.sent) == 1


def test_a_node_that_does_not_answer_in_time_is_transient(wallet_server, settings, gift, voucher):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel accepts the connection; nobody ever answers
        settings.ETH_RPC_URL = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        settings.ETH_RPC_TIMEOUT = 0.2
        with pytest.raises(TransientDeliveryError) as raised:
            deliver_voucher(gift=gift, voucher=voucher)
    assert raised.value.reason == chain_module.UNREACHABLE


def test_a_mismatch_is_logged_masked_and_its_reason_is_coarse(wallet_server, gift, voucher, caplog):
    wallet_server.transfer = "wrong_amount"
    caplog.set_level(logging.DEBUG, logger="gifting")

    with pytest.raises(PermanentDeliveryError) as raised:
        deliver_voucher(gift=gift, voucher=voucher)

    [tx_hash] = wallet_server.sent
    assert "check=wrong_amount" in caplog.text
    assert "0x5a…eAed" in caplog.text and str(25 * 10**18 - 1) in caplog.text
    for text in (raised.value.reason, caplog.text):
        assert CHECKSUMMED not in text and CHECKSUMMED.lower() not in text
        assert tx_hash not in text and tx_hash[2:] not in text
        assert voucher.code not in text


def test_gift_deliver_leaves_a_mismatched_gift_queued_with_a_coarse_error(wallet_server, gift):
    wallet_server.transfer = "wrong_recipient"

    with pytest.raises(PermanentDeliveryError):
        delivery.gift_deliver(gift_id=gift.id)

    gift.refresh_from_db()
    assert (gift.status, gift.last_error, gift.delivered_at) == (GiftStatus.QUEUED, chain_module.MISMATCH, None)


def test_one_transaction_credits_one_gift_ever(db, django_user_model):
    """A provider naming one transfer for two gifts (same wallet, same amount) gets the second refused."""
    sender = django_user_model.objects.create_user(username="claims")
    first, second = (gift_row(sender, recipient_email="", recipient_wallet=CHECKSUMMED) for _ in range(2))
    tx_hash = "0x" + "ab" * 32

    _claim_transaction(gift=first, tx_hash=tx_hash)
    _claim_transaction(gift=first, tx_hash=tx_hash.upper().replace("0X", "0x"))  # its own retry carries on
    with pytest.raises(PermanentDeliveryError, match=TRANSACTION_REUSED):
        _claim_transaction(gift=second, tx_hash=tx_hash)
    assert WalletCredit.objects.get().gift_id == first.id
