"""The on-chain check's pure parts: decoding transfers, judging a receipt, counting confirmations; its settings."""

from decimal import Decimal

import pytest

from gifting.chain import (
    NO_TRANSFER,
    TRANSACTION_FAILED,
    TRANSFER_TOPIC,
    WRONG_AMOUNT,
    WRONG_RECIPIENT,
    WRONG_TOKEN,
    TokenContract,
    Transfer,
    confirmations,
    parse_token_contracts,
    receipt_mismatch,
    transfers_in,
)
from tests.test_config import _import_settings
from tests.test_production_settings import load_settings, production, refusal

TOKEN = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
OTHER_TOKEN = "0x52908400098527886E0F7030069857D2E4169EE7"
RECIPIENT = "0x" + "12" * 20
SENDER = "0x" + "ab" * 20
ELSEWHERE = "0x" + "34" * 20
UNITS = 25 * 10**6


def topic(address: str) -> str:
    return "0x" + "00" * 12 + address[2:].lower()


def transfer_log(*, contract=TOKEN, sender=SENDER, to=RECIPIENT, value=UNITS, extra_topics=()) -> dict:
    """A log as JSON-RPC writes it: hex strings throughout."""
    return {
        "address": contract.lower(),
        "topics": ["0x" + TRANSFER_TOPIC.hex().removeprefix("0x"), topic(sender), topic(to), *extra_topics],
        "data": "0x" + value.to_bytes(32, "big").hex(),
    }


def receipt(*logs: dict, status: int = 1, block: int | None = 10) -> dict:
    return {"status": status, "blockNumber": block, "logs": list(logs)}


def mismatch(r: dict, *, units: int = UNITS) -> str | None:
    return receipt_mismatch(r, token=TOKEN, recipient=RECIPIENT, units=units)


# --- receipt_mismatch --------------------------------------------------------------------------------


def test_a_successful_transfer_of_the_amount_to_the_recipient_matches():
    assert mismatch(receipt(transfer_log())) is None


def test_addresses_match_in_any_letter_case():
    r = receipt(transfer_log(contract=TOKEN.upper().replace("0X", "0x")))
    assert (
        receipt_mismatch(r, token=TOKEN.lower(), recipient=RECIPIENT.upper().replace("0X", "0x"), units=UNITS) is None
    )


def test_one_matching_transfer_among_others_matches():
    r = receipt(transfer_log(to=ELSEWHERE, value=1), transfer_log(contract=OTHER_TOKEN), transfer_log())
    assert mismatch(r) is None


@pytest.mark.parametrize(
    ("r", "expected"),
    [
        (receipt(transfer_log(), status=0), TRANSACTION_FAILED),
        ({"blockNumber": 10, "logs": [transfer_log()]}, TRANSACTION_FAILED),  # no status: pre-Byzantium
        (receipt(), NO_TRANSFER),
        (receipt(transfer_log(contract=OTHER_TOKEN)), WRONG_TOKEN),
        (receipt(transfer_log(to=ELSEWHERE)), WRONG_RECIPIENT),
        (receipt(transfer_log(value=UNITS - 1)), WRONG_AMOUNT),
        (receipt(transfer_log(value=UNITS * 10)), WRONG_AMOUNT),
        (receipt(transfer_log(sender=RECIPIENT, to=SENDER)), WRONG_RECIPIENT),  # the other way round
        (receipt(transfer_log(extra_topics=[topic(RECIPIENT)])), NO_TRANSFER),  # ERC-721: a token id, no value
    ],
    ids=[
        "failed",
        "no-status",
        "no-transfer",
        "other-token",
        "other-recipient",
        "one-unit-short",
        "too-much",
        "reversed",
        "erc721",
    ],
)
def test_a_receipt_that_is_not_the_expected_transfer_says_why(r, expected):
    assert mismatch(r) == expected


def test_transfers_are_decoded_from_hex_strings_and_bytes_alike():
    as_hex = transfer_log()
    as_bytes = {**as_hex, "topics": [bytes.fromhex(t[2:]) for t in as_hex["topics"]], "data": bytes(32)}
    [first, second] = transfers_in(receipt(as_hex, as_bytes))
    assert first == Transfer(
        contract=TOKEN, sender="0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB", to=first.to, value=UNITS
    )
    assert first.to.lower() == RECIPIENT
    assert second.value == 0


def test_a_log_with_other_data_is_not_a_transfer():
    assert transfers_in(receipt({**transfer_log(), "data": "0x"})) == []
    assert (
        transfers_in(receipt({**transfer_log(), "topics": ["0x" + "00" * 32, topic(SENDER), topic(RECIPIENT)]})) == []
    )


# --- confirmations -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("block", "latest", "expected"),
    [(10, 10, 1), (10, 21, 12), (10, 9, 0), (None, 50, 0)],
    ids=["own-block", "twelve", "node-behind", "pending"],
)
def test_confirmations_count_the_receipts_own_block(block, latest, expected):
    assert confirmations(receipt(block=block), latest_block=latest) == expected


# --- token contracts ---------------------------------------------------------------------------------


def test_token_contracts_parse_address_and_decimals():
    tokens = parse_token_contracts({"eur": f"{TOKEN.lower()}:18", "USD": f" {OTHER_TOKEN}:6 "})
    assert tokens == {"EUR": TokenContract(TOKEN, 18), "USD": TokenContract(OTHER_TOKEN, 6)}


@pytest.mark.parametrize("value", [TOKEN, f"{TOKEN}:", f"{TOKEN}:x", f"{TOKEN[:-1]}:6", f"{TOKEN}:100", ":6"])
def test_a_bad_token_contract_is_refused_naming_the_currency(value):
    with pytest.raises(ValueError, match=r"^EUR: expected"):
        parse_token_contracts({"EUR": value})


@pytest.mark.parametrize(
    ("amount", "decimals", "units"),
    [("25.00", 6, 25_000_000), ("0.01", 2, 1), ("30", 18, 30 * 10**18), ("12.5", 1, 125)],
)
def test_an_amount_in_token_units_is_exact(amount, decimals, units):
    assert TokenContract(TOKEN, decimals).units(Decimal(amount)) == units


@pytest.mark.parametrize(("amount", "decimals"), [("25.50", 0), ("0.001", 2), ("0", 6)])
def test_an_amount_the_token_cannot_carry_exactly_is_refused(amount, decimals):
    with pytest.raises(ValueError):
        TokenContract(TOKEN, decimals).units(Decimal(amount))


# --- settings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ETH_RPC_URL", "ws://node.example.com", "ETH_RPC_URL must be an http(s) URL"),
        ("ETH_MIN_CONFIRMATIONS", "0", "ETH_MIN_CONFIRMATIONS must be at least 1"),
        ("WALLET_TOKEN_CONTRACTS", f"EUR={TOKEN}", "WALLET_TOKEN_CONTRACTS: EUR must be"),
        ("WALLET_TOKEN_CONTRACTS", f"EUR={TOKEN}:6,USD=0x1234:6", "WALLET_TOKEN_CONTRACTS: USD must be"),
    ],
    ids=["rpc-scheme", "confirmations", "no-decimals", "short-address"],
)
def test_bad_chain_settings_are_refused_naming_them(variable, value, message):
    result = _import_settings(**{variable: value})
    assert result.returncode != 0
    assert message in result.stderr


def test_a_plaintext_rpc_url_to_another_host_is_refused_in_production(tmp_path):
    error = refusal(tmp_path, **production(ETH_RPC_URL="http://apikey-do-not-echo@node.example.com:8545"))
    assert "ETH_RPC_URL: node.example.com must be reached over https://" in error
    assert "apikey-do-not-echo" not in error


def test_an_https_or_loopback_rpc_url_is_accepted_in_production(tmp_path):
    for url in ("https://node.example.com/v3/key", "http://127.0.0.1:8545"):
        assert load_settings(tmp_path, **production(ETH_RPC_URL=url))["DEBUG"] is False
