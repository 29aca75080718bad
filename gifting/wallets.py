"""Wallet recipients: validating Ethereum addresses, and crediting vouchers through a wallet provider.

The provider speaks signed JSON over HTTP. Every request carries the gift id as
its idempotency key, so a retry after a lost response can never credit twice;
its signature covers the timestamp as well as the body, so the provider can
refuse stale replays; the provider's answer counts only when it is signed with
the shared secret. That answer names the transaction that moved the tokens, and
the gift is delivered only once gifting.chain has found it on the chain, confirmed
and matching (see there for the token model).
"""

import hashlib
import hmac
import http.client
import json
import logging
import time
import urllib.error
import urllib.request
from decimal import Decimal
from typing import NoReturn, Protocol
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from eth_utils import is_checksum_address, is_hex_address, to_checksum_address

from core.crypto import blind_index
from core.masking import mask_wallet
from gifting.chain import ChainVerifier, TokenContract, chain_verifier
from gifting.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from gifting.models import Gift, WalletCredit
from vouchers.models import Voucher

logger = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 64 * 1024  # a confirmation is tiny; never buffer whatever a server sends
UNVERIFIED = "The wallet provider's confirmation could not be verified."
NOT_CONFIGURED = "Wallet delivery is not configured."
TRANSACTION_REUSED = "The wallet provider's transaction does not credit this gift."


def normalize_wallet(raw: str) -> str:
    """The EIP-55 checksummed form of an Ethereum address; ValueError with a human message if invalid.

    All-lower and all-upper addresses carry no checksum and are accepted; a
    mixed-case address must match its checksum, since a mismatch means a typo.
    """
    # eth_utils also accepts a missing or upper-case "0X" prefix; the API asks for "0x".
    if not (raw.startswith("0x") and len(raw) == 42 and is_hex_address(raw)):
        raise ValueError("Enter a wallet address: 0x followed by 40 hexadecimal digits.")
    digits = raw[2:]
    if digits not in (digits.lower(), digits.upper()) and not is_checksum_address(raw):
        raise ValueError("This wallet address has a checksum error: check its upper- and lower-case letters.")
    return to_checksum_address(raw)


def sign(message: bytes, *, secret: str) -> str:
    """An X-Signature header value: `sha256=<hex HMAC-SHA256 of message>`.

    Requests sign `<X-Timestamp>.<body>`; the provider's answers sign their body.
    """
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class WalletProvider(Protocol):
    """Credits a gift's voucher to its recipient's wallet."""

    def credit(self, *, gift: Gift, voucher: Voucher) -> object:
        """The transaction hash the provider's confirmation names (unchecked: any JSON value, or None).

        Raises Transient/PermanentDeliveryError when there is no confirmation.
        """


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would re-send the signed request (or half of it) elsewhere: treat it as an answer."""

    def redirect_request(self, req, fp, code, msg, headers, newurl) -> None:
        return None


class HttpWalletProvider:
    """POSTs a signed JSON credit request and verifies the provider's signed confirmation."""

    def __init__(self, *, url: str, secret: str, timeout: float) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("WALLET_PROVIDER_URL must be an http:// or https:// URL.")
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirects)

    def credit(self, *, gift: Gift, voucher: Voucher) -> object:
        try:
            wallet = normalize_wallet(gift.recipient_wallet)
        except ValueError as exc:
            raise PermanentDeliveryError("The wallet address is not valid.") from exc
        body = json.dumps(
            {
                "gift_id": str(gift.id),
                "voucher_code": voucher.code,
                "amount": str(voucher.amount.quantize(Decimal("0.01"))),
                "currency": voucher.currency,
                "wallet": wallet,
            }
        ).encode()
        timestamp = str(int(time.time()))
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": str(gift.id),
                "X-Signature": sign(timestamp.encode() + b"." + body, secret=self.secret),
                "X-Timestamp": timestamp,
            },
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status, headers, payload = response.status, response.headers, response.read(MAX_RESPONSE_BYTES)
        except urllib.error.HTTPError as exc:
            exc.close()
            self._fail(gift, wallet, classify_http_status(exc.code), status=exc.code, cause=exc)
        except (OSError, http.client.HTTPException) as exc:
            # Refused or reset connections, DNS failures and timeouts (URLError is an OSError).
            error = TransientDeliveryError("The wallet provider could not be reached.")
            self._fail(gift, wallet, error, cause=exc)
        answer = self._confirmation(gift, status=status, signature=headers.get("X-Signature", ""), payload=payload)
        if answer is None:
            # Not a confirmation, but not a refusal either: the provider may have
            # credited the wallet and its answer was lost, garbled or forged. A
            # retry is safe (same Idempotency-Key, so it cannot credit twice) and
            # either gets a verifiable answer or a definite error; marking the gift
            # delivered on an unverified answer, or failed when it may have been
            # credited, would both be wrong. Exhausted retries dead-letter it for a person.
            self._fail(gift, wallet, TransientDeliveryError(UNVERIFIED), status=status)
        logger.info("wallet provider confirmed gift=%s wallet=%s", gift.id, mask_wallet(wallet))
        return answer.get("tx_hash")

    def _confirmation(self, gift: Gift, *, status: int, signature: str, payload: bytes) -> dict | None:
        """A 200/201 whose body is signed with our secret and says this gift was credited; else None."""
        expected = sign(payload, secret=self.secret)
        # Compared as bytes: compare_digest refuses non-ASCII str, and a header may carry anything.
        if status not in (200, 201) or not hmac.compare_digest(signature.encode(), expected.encode()):
            return None
        try:
            answer = json.loads(payload)
        except ValueError:
            return None
        if isinstance(answer, dict) and answer.get("gift_id") == str(gift.id) and answer.get("status") == "credited":
            return answer
        return None

    def _fail(
        self,
        gift: Gift,
        wallet: str,
        error: DeliveryError,
        *,
        status: int | None = None,
        cause: Exception | None = None,
    ) -> NoReturn:
        """Log coarsely (never the body or the voucher code) and raise `error`."""
        logger.warning(
            "wallet credit failed gift=%s wallet=%s status=%s cause=%s error=%s",
            gift.id,
            mask_wallet(wallet),
            status,
            type(cause).__name__ if cause else "-",
            type(error).__name__,
        )
        raise error from cause


def classify_http_status(status: int) -> DeliveryError:
    """HTTP 5xx, 429 and 408 (a timeout) are transient; any other answer is permanent."""
    if status >= 500 or status in (408, 429):
        return TransientDeliveryError("The wallet provider is temporarily unavailable.")
    return PermanentDeliveryError("The wallet provider refused the credit.")


def wallet_credit(*, gift: Gift, voucher: Voucher) -> None:
    """Credit the voucher to the gift's wallet and verify the transfer on chain; raise a DeliveryError if not done.

    Without a provider, a node to verify with, or a token for the currency,
    nothing is asked of the provider: a credit we cannot verify is not made.
    A retry asks the provider again under the same idempotency key, so it
    names the same transaction instead of crediting twice, and that
    transaction is checked again.
    """
    provider, verifier = wallet_provider(), chain_verifier()
    if provider is None or verifier is None:
        logger.error(
            "wallet delivery not configured gift=%s provider=%s chain=%s",
            gift.id, provider is not None, verifier is not None,
        )  # fmt: skip
        raise PermanentDeliveryError(NOT_CONFIGURED)
    token, units = _expected_transfer(verifier, gift=gift, voucher=voucher)
    tx_hash = provider.credit(gift=gift, voucher=voucher)
    # provider.credit has checked the wallet: normalize_wallet cannot fail here.
    recipient = normalize_wallet(gift.recipient_wallet)
    verifier.verify_transfer(tx_hash=tx_hash, token=token, recipient=recipient, units=units, ref=str(gift.id))
    _claim_transaction(gift=gift, tx_hash=tx_hash)
    logger.info("wallet credited gift=%s wallet=%s", gift.id, mask_wallet(recipient))


def _claim_transaction(*, gift: Gift, tx_hash: str) -> None:
    """Record that this transaction credited this gift; PermanentDeliveryError if it credited another one.

    Runs in the delivery's transaction (the gift row locked), so the claim commits with the
    delivery, or not at all. A retry of the same gift finds its own claim and carries on.
    """
    tx_index = blind_index(tx_hash.lower(), purpose="wallet-transaction")
    claimed_by = WalletCredit.objects.filter(tx_index=tx_index).values_list("gift_id", flat=True).first()
    if claimed_by == gift.id:
        return
    try:
        if claimed_by is not None:
            raise IntegrityError("transaction already claimed")
        with transaction.atomic():  # a savepoint: a concurrent claim leaves the delivery's transaction usable
            WalletCredit.objects.create(gift=gift, tx_index=tx_index)
    except IntegrityError:
        logger.error("wallet credit refused gift=%s check=transaction_reused tx=%s", gift.id, mask_wallet(tx_hash))
        raise PermanentDeliveryError(TRANSACTION_REUSED) from None


def _expected_transfer(verifier: ChainVerifier, *, gift: Gift, voucher: Voucher) -> tuple[TokenContract, int]:
    """The token and the units the credit must move; PermanentDeliveryError if this currency cannot be verified."""
    token = verifier.token_for(voucher.currency)
    if token is None:
        logger.error("wallet delivery not configured gift=%s currency=%s token=none", gift.id, voucher.currency)
        raise PermanentDeliveryError(NOT_CONFIGURED)
    try:
        return token, token.units(voucher.amount)
    except ValueError as exc:
        logger.error("wallet delivery not configured gift=%s currency=%s error=%s", gift.id, voucher.currency, exc)
        raise PermanentDeliveryError(NOT_CONFIGURED) from exc


def wallet_provider() -> WalletProvider | None:
    """The configured provider, or None when WALLET_PROVIDER_URL or WALLET_PROVIDER_SECRET is unset."""
    if not (settings.WALLET_PROVIDER_URL and settings.WALLET_PROVIDER_SECRET):
        return None
    return HttpWalletProvider(
        url=settings.WALLET_PROVIDER_URL,
        secret=settings.WALLET_PROVIDER_SECRET,
        timeout=settings.WALLET_PROVIDER_TIMEOUT,
    )
