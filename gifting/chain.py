"""On-chain verification of wallet credits: the provider's word is checked against the chain itself.

The token model: vouchers are currency amounts, so each currency is an ERC-20
stablecoin contract (WALLET_TOKEN_CONTRACTS, `EUR=0x…:6,USD=0x…:6`: address and
decimals). A credit counts only when the transaction the provider names has
succeeded, carries a `Transfer(from, to, value)` log from that currency's
contract with `to` the recipient's wallet and `value` exactly the amount x
10^decimals, and has ETH_MIN_CONFIRMATIONS blocks on top of it (its own
included). The receipt is read over Ethereum JSON-RPC (web3's HTTPProvider)
from ETH_RPC_URL: our own node or one we trust, never the provider's.

What cannot be verified yet is transient (not mined, too few confirmations,
the node unreachable or failing): the task retries, and the provider, asked
again under the same idempotency key, names the same transaction. What the
chain contradicts is permanent (a failed transaction, another recipient,
amount or token, no transaction at all). Only a confirmed receipt is judged:
a reorganisation can still change a young transaction's outcome.
"""

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import requests
from django.conf import settings
from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3 import HTTPProvider, Web3
from web3.exceptions import TransactionNotFound, Web3Exception

from core.masking import mask_wallet
from gifting.errors import PermanentDeliveryError, TransientDeliveryError

logger = logging.getLogger(__name__)

# keccak("Transfer(address,address,uint256)"): topic 0 of every ERC-20 (and ERC-721) transfer log.
TRANSFER_TOPIC = HexBytes("0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef")
TX_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
TOKEN_CONTRACT = re.compile(r"(0x[0-9a-fA-F]{40}):([0-9]{1,2})")  # address:decimals, as in the setting

NO_TRANSACTION = "The wallet provider's confirmation did not name a blockchain transaction."
MISMATCH = "The wallet credit did not match its blockchain transaction."
NOT_MINED = "The wallet credit's transaction is not on the blockchain yet."
UNCONFIRMED = "The wallet credit's transaction is waiting for more confirmations."
UNREACHABLE = "The blockchain node could not be reached."

# Mismatches, as receipt_mismatch names them (in logs, never to the sender).
TRANSACTION_FAILED = "transaction_failed"
NO_TRANSFER = "no_transfer"
WRONG_TOKEN = "wrong_token"  # noqa: S105 - a check name, not a secret
WRONG_RECIPIENT = "wrong_recipient"
WRONG_AMOUNT = "wrong_amount"


@dataclass(frozen=True)
class TokenContract:
    """The ERC-20 contract that carries one currency: its checksummed address and its decimals."""

    address: str
    decimals: int

    def units(self, amount: Decimal) -> int:
        """The amount in the token's smallest unit; ValueError if the token cannot represent it exactly."""
        units = amount.scaleb(self.decimals)
        if units != units.to_integral_value() or units <= 0:
            raise ValueError(f"{amount} is not a whole number of units of a token with {self.decimals} decimals")
        return int(units)


@dataclass(frozen=True)
class Transfer:
    """One ERC-20 `Transfer` log of a receipt."""

    contract: str
    sender: str
    to: str
    value: int


def parse_token_contracts(raw: Mapping[str, str]) -> dict[str, TokenContract]:
    """WALLET_TOKEN_CONTRACTS as env.dict parses it, `{"EUR": "0x…:6"}`; ValueError naming the bad entry."""
    tokens = {}
    for currency, value in raw.items():
        match = TOKEN_CONTRACT.fullmatch(value.strip())
        if not match:
            raise ValueError(f"{currency}: expected <0x + 40 hex digits>:<decimals>, e.g. {currency}=0x…:6")
        tokens[currency.strip().upper()] = TokenContract(to_checksum_address(match[1]), int(match[2]))
    return tokens


def transfers_in(receipt: Mapping[str, Any]) -> list[Transfer]:
    """The ERC-20 transfers logged in a receipt (ERC-721's, with a fourth topic, are not)."""
    transfers = []
    for log in receipt.get("logs") or []:
        topics = [HexBytes(topic) for topic in log.get("topics") or []]
        data = HexBytes(log.get("data") or b"")
        if len(topics) != 3 or topics[0] != TRANSFER_TOPIC or len(data) != 32:
            continue
        transfers.append(
            Transfer(
                contract=to_checksum_address(log["address"]),
                sender=to_checksum_address(topics[1][-20:]),
                to=to_checksum_address(topics[2][-20:]),
                value=int.from_bytes(data, "big"),
            )
        )
    return transfers


def receipt_mismatch(receipt: Mapping[str, Any], *, token: str, recipient: str, units: int) -> str | None:
    """Why the receipt is not a successful transfer of `units` of `token` to `recipient`, or None if it is."""
    if receipt.get("status") != 1:
        return TRANSACTION_FAILED
    transfers = transfers_in(receipt)
    of_token = [t for t in transfers if t.contract == to_checksum_address(token)]
    if not of_token:
        return WRONG_TOKEN if transfers else NO_TRANSFER
    to_recipient = [t for t in of_token if t.to == to_checksum_address(recipient)]
    if not to_recipient:
        return WRONG_RECIPIENT
    if not any(t.value == units for t in to_recipient):
        return WRONG_AMOUNT
    return None


def confirmations(receipt: Mapping[str, Any], *, latest_block: int) -> int:
    """Blocks on top of the receipt's, its own included; 0 while it is pending."""
    block = receipt.get("blockNumber")
    return 0 if block is None else max(latest_block - block + 1, 0)


class ChainVerifier:
    """Checks a named transaction against the chain over JSON-RPC."""

    def __init__(self, *, rpc_url: str, timeout: float, min_confirmations: int, tokens: dict[str, TokenContract]):
        self.tokens = tokens
        self.min_confirmations = min_confirmations
        # No automatic retries inside web3: the task retries with its own backoff.
        provider = HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None)
        self.w3 = Web3(provider)

    def token_for(self, currency: str) -> TokenContract | None:
        return self.tokens.get(currency)

    def verify_transfer(self, *, tx_hash: object, token: TokenContract, recipient: str, units: int, ref: str) -> None:
        """Return if the transfer is on the chain and confirmed; raise Transient/PermanentDeliveryError if not.

        `ref` names the gift in logs. Logs carry masked addresses and hashes only:
        a transaction hash leads to the wallet on any block explorer.
        """
        if not isinstance(tx_hash, str) or not TX_HASH.fullmatch(tx_hash):
            logger.warning("wallet credit names no transaction gift=%s", ref)
            raise PermanentDeliveryError(NO_TRANSACTION)
        try:
            receipt = self.w3.eth.get_transaction_receipt(tx_hash)
            latest_block = self.w3.eth.block_number
        except TransactionNotFound as exc:
            logger.info("wallet credit not mined yet gift=%s tx=%s", ref, mask_wallet(tx_hash))
            raise TransientDeliveryError(NOT_MINED) from exc
        except (Web3Exception, requests.RequestException, OSError, ValueError) as exc:
            # Refused, timed out, an HTTP or JSON-RPC error, an answer that does not parse: nothing
            # was learnt about the transaction. The URL is never logged (it may hold an API key).
            logger.warning("blockchain node unavailable gift=%s error=%s", ref, type(exc).__name__)
            raise TransientDeliveryError(UNREACHABLE) from exc
        seen = confirmations(receipt, latest_block=latest_block)
        if seen < self.min_confirmations:
            logger.info(
                "wallet credit unconfirmed gift=%s tx=%s confirmations=%s/%s",
                ref, mask_wallet(tx_hash), seen, self.min_confirmations,
            )  # fmt: skip
            raise TransientDeliveryError(UNCONFIRMED)
        mismatch = receipt_mismatch(receipt, token=token.address, recipient=recipient, units=units)
        if mismatch is not None:
            seen_transfers = [f"{mask_wallet(t.contract)}→{mask_wallet(t.to)}:{t.value}" for t in transfers_in(receipt)]
            logger.warning(
                "wallet credit mismatch gift=%s tx=%s check=%s expected=%s→%s:%s transfers=%s",
                ref, mask_wallet(tx_hash), mismatch, mask_wallet(token.address), mask_wallet(recipient), units,
                ",".join(seen_transfers) or "-",
            )  # fmt: skip
            raise PermanentDeliveryError(MISMATCH)
        logger.info("wallet credit confirmed on chain gift=%s tx=%s confirmations=%s", ref, mask_wallet(tx_hash), seen)


def chain_verifier() -> ChainVerifier | None:
    """The configured verifier, or None when ETH_RPC_URL is unset (then no wallet credit can be verified)."""
    if not settings.ETH_RPC_URL:
        return None
    return ChainVerifier(
        rpc_url=settings.ETH_RPC_URL,
        timeout=settings.ETH_RPC_TIMEOUT,
        min_confirmations=settings.ETH_MIN_CONFIRMATIONS,
        tokens=parse_token_contracts(settings.WALLET_TOKEN_CONTRACTS),
    )
