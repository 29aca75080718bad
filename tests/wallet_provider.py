"""A wallet provider on a real loopback HTTP server, for tests of wallet delivery.

Given a LocalChain (tests/eth_chain.py) it really credits: it sends the token
transfer on the chain and names its transaction hash in its signed answer.
"""

import hashlib
import hmac
import json
import threading
from dataclasses import dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.eth_chain import LocalChain, Token

# The EIP-55 specification's own example addresses.
CHECKSUMMED = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
DIGITS_ONLY_CHECKSUMMED = "0x52908400098527886E0F7030069857D2E4169EE7"
SECRET = "test-wallet-secret"
# How the stub credits on chain (WalletProviderStub.transfer): as asked, or wrong in one way.
TRANSFER_MODES = ("correct", "wrong_recipient", "wrong_amount", "failed", "wrong_contract", "no_tx_hash")


def hmac_hex(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class ReceivedRequest:
    headers: dict[str, str]
    body: bytes
    signed: bool  # X-Signature was the HMAC of "<X-Timestamp>.<exact body bytes>"

    def json(self) -> dict:
        return json.loads(self.body)


class WalletProviderStub:
    """A wallet provider on a real loopback HTTP server that answers as a test tells it.

    It records every request and checks its signature (401 if wrong). By default
    it confirms the credit with a signed `{"gift_id", "status": "credited"}`;
    `status`, `answer`, `signature` ("valid", "missing", "wrong", "non-ascii"),
    `headers` (extra response headers) and `delay` (seconds before answering)
    change that.

    With a `chain` and its `tokens` (by currency) it credits for real, once per
    gift id as a real provider's idempotency key promises: the first request
    sends the transfer, later ones name the same transaction. `transfer` (or
    `transfers_by_wallet`, per recipient) chooses how it credits, one of
    TRANSFER_MODES; `sent` lists every transaction it sent.
    """

    def __init__(
        self, secret: str = SECRET, *, chain: LocalChain | None = None, tokens: dict[str, Token] | None = None
    ):
        self.secret = secret
        self.chain = chain
        self.tokens = tokens or {}
        self.transfer = "correct"
        self.transfers_by_wallet: dict[str, str] = {}
        self.credits: dict[str, str | None] = {}  # gift id → the transaction named for it
        self.sent: list[str] = []
        self._credit_lock = threading.Lock()
        self.requests: list[ReceivedRequest] = []
        self.status = 200
        self.answer: dict | None = None
        self.signature = "valid"
        self.delay = 0.0
        self.headers: dict[str, str] = {}
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _StubHandler)
        self._server.stub = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1/credits"
        # A short poll interval, so that stop() (shutdown) returns quickly.
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def credit(self, request: dict) -> str | None:
        """Credit the request's wallet on chain, once per gift id; the transaction hash (None: none named)."""
        with self._credit_lock:
            if request["gift_id"] not in self.credits:
                self.credits[request["gift_id"]] = self._send(request)
            return self.credits[request["gift_id"]]

    def _send(self, request: dict) -> str | None:
        mode = self.transfers_by_wallet.get(request["wallet"], self.transfer)
        if mode == "no_tx_hash":
            return None
        token = self.tokens[request["currency"]]
        to, units, sender = request["wallet"], token.units(Decimal(request["amount"])), None
        if mode == "wrong_recipient":
            to = self.chain.w3.eth.accounts[9]
        elif mode == "wrong_amount":
            units -= 1  # one smallest unit short
        elif mode == "failed":
            sender = self.chain.w3.eth.accounts[8]  # holds no tokens: the transfer reverts
        elif mode == "wrong_contract":
            token = self.chain.deploy_token(decimals=token.decimals)  # same code, another contract
        tx_hash = self.chain.transfer(token, to=to, units=units, sender=sender)
        self.sent.append(tx_hash)
        return tx_hash

    def stop(self) -> None:
        self._stopping.set()  # wakes a handler that is still delaying its answer
        self._server.shutdown()
        self._server.server_close()


class _StubHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        stub: WalletProviderStub = self.server.stub
        body = self.rfile.read(int(self.headers["Content-Length"]))
        signed_part = self.headers.get("X-Timestamp", "").encode() + b"." + body
        signed = hmac.compare_digest(self.headers.get("X-Signature", ""), hmac_hex(signed_part, stub.secret))
        stub.requests.append(ReceivedRequest(headers=dict(self.headers), body=body, signed=signed))
        if stub.delay and stub._stopping.wait(stub.delay):
            return  # the test is over; nobody is listening any more
        if not signed:
            self._answer(401, b'{"error": "bad signature"}', signature="")
            return
        request = json.loads(body)
        confirmation = {"gift_id": request["gift_id"], "status": "credited"}
        if stub.chain is not None and stub.status in (200, 201) and stub.answer is None:
            tx_hash = stub.credit(request)
            if tx_hash is not None:
                confirmation["tx_hash"] = tx_hash
        answer = json.dumps(stub.answer or confirmation).encode()
        signature = {
            "valid": hmac_hex(answer, stub.secret),
            "wrong": hmac_hex(answer, "not-the-secret"),
            "non-ascii": "sha256=é",
        }
        self._answer(stub.status, answer, signature=signature.get(stub.signature, ""))

    def _answer(self, status: int, body: bytes, *, signature: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if signature:
            self.send_header("X-Signature", signature)
        for name, value in self.server.stub.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args) -> None:
        pass  # keep test output quiet
