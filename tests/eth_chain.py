"""A local Ethereum chain for tests: eth-tester (py-evm) in process, served over JSON-RPC on loopback.

The code under test talks to it exactly as to a real node, with web3's HTTPProvider
over a real socket; the tests drive it in process (deploy tokens, send transfers,
mine blocks). eth-tester is not thread-safe, so every use of it, from the test or
from a request to the server, takes one lock.

The token is a minimal ERC-20 written here in EVM assembly (solc is not available
offline): `transfer(address,uint256)` moves balances, reverts when the sender's
balance is short, and emits the standard `Transfer(from, to, value)` event;
`balanceOf(address)` reads a balance. The deployer holds the whole supply.
"""

import json
import threading
from dataclasses import dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from eth_abi import encode
from eth_utils import keccak, to_checksum_address
from web3 import EthereumTesterProvider, Web3
from web3.datastructures import NamedElementOnion

TRANSFER_TOPIC = keccak(text="Transfer(address,address,uint256)")
TRANSFER_SELECTOR = keccak(text="transfer(address,uint256)")[:4]
BALANCE_OF_SELECTOR = keccak(text="balanceOf(address)")[:4]
SUPPLY = 2**128
GAS = 200_000  # given explicitly: web3 would otherwise estimate gas, and refuse a transfer that reverts

OPCODES = {
    "STOP": 0x00, "ADD": 0x01, "SUB": 0x03, "LT": 0x10, "EQ": 0x14, "SHR": 0x1C,
    "CALLER": 0x33, "CALLDATALOAD": 0x35, "CODECOPY": 0x39, "MSTORE": 0x52, "SLOAD": 0x54,
    "SSTORE": 0x55, "JUMPI": 0x57, "JUMPDEST": 0x5B, "DUP1": 0x80, "DUP3": 0x82, "SWAP1": 0x90,
    "LOG3": 0xA3, "RETURN": 0xF3, "REVERT": 0xFD,
}  # fmt: skip


def assemble(program: list) -> bytes:
    """EVM bytecode from opcode names, `("PUSH", n, value)`, `("LABEL", name)` and `("PUSH_LABEL", name)`."""

    def size(item) -> int:
        if isinstance(item, str):
            return 1
        return {"PUSH": lambda: 1 + item[1], "LABEL": lambda: 1, "PUSH_LABEL": lambda: 3}[item[0]]()

    labels, offset = {}, 0
    for item in program:
        if not isinstance(item, str) and item[0] == "LABEL":
            labels[item[1]] = offset
        offset += size(item)
    code = bytearray()
    for item in program:
        if isinstance(item, str):
            code.append(OPCODES[item])
        elif item[0] == "PUSH":
            code.append(0x5F + item[1])  # PUSH1 is 0x60
            code += item[2].to_bytes(item[1], "big")
        elif item[0] == "LABEL":
            code.append(OPCODES["JUMPDEST"])
        else:
            code += bytes([0x61]) + labels[item[1]].to_bytes(2, "big")  # PUSH2 <label>
    return bytes(code)


# Balances live at storage slot = the holder's address: a test token needs no mapping hash.
TOKEN_RUNTIME = assemble([
    ("PUSH", 1, 0), "CALLDATALOAD", ("PUSH", 1, 0xE0), "SHR",  # the 4-byte selector
    "DUP1", ("PUSH", 4, int.from_bytes(TRANSFER_SELECTOR, "big")), "EQ", ("PUSH_LABEL", "transfer"), "JUMPI",
    "DUP1", ("PUSH", 4, int.from_bytes(BALANCE_OF_SELECTOR, "big")), "EQ", ("PUSH_LABEL", "balance_of"), "JUMPI",
    ("LABEL", "fail"), ("PUSH", 1, 0), "DUP1", "REVERT",
    ("LABEL", "balance_of"),
    ("PUSH", 1, 4), "CALLDATALOAD", "SLOAD", ("PUSH", 1, 0), "MSTORE", ("PUSH", 1, 32), ("PUSH", 1, 0), "RETURN",
    ("LABEL", "transfer"),
    "CALLER", "SLOAD", ("PUSH", 1, 0x24), "CALLDATALOAD",  # balance value
    "DUP1", "DUP3", "LT", ("PUSH_LABEL", "fail"), "JUMPI",  # balance < value: revert
    "DUP1", "DUP3", "SUB", "CALLER", "SSTORE",  # balance[sender] -= value
    ("PUSH", 1, 4), "CALLDATALOAD", "DUP1", "SLOAD", "DUP3", "ADD", "SWAP1", "SSTORE",  # balance[to] += value
    "DUP1", ("PUSH", 1, 0), "MSTORE",  # the event's data: value
    ("PUSH", 1, 4), "CALLDATALOAD", "CALLER", ("PUSH", 32, int.from_bytes(TRANSFER_TOPIC, "big")),
    ("PUSH", 1, 32), ("PUSH", 1, 0), "LOG3",  # Transfer(sender, to, value)
    ("PUSH", 1, 1), ("PUSH", 1, 0), "MSTORE", ("PUSH", 1, 32), ("PUSH", 1, 0), "RETURN",  # true
])  # fmt: skip
TOKEN_DEPLOY = (
    assemble([
        ("PUSH", 16, SUPPLY - 1), "CALLER", "SSTORE",  # the deployer holds the supply
        ("PUSH", 2, len(TOKEN_RUNTIME)), ("PUSH_LABEL", "runtime"), ("PUSH", 1, 0), "CODECOPY",
        ("PUSH", 2, len(TOKEN_RUNTIME)), ("PUSH", 1, 0), "RETURN",
        ("LABEL", "runtime"),
    ])[:-1]  # the label marks where the runtime code starts: no JUMPDEST there
    + TOKEN_RUNTIME
)  # fmt: skip


@dataclass(frozen=True)
class Token:
    """A deployed test token and the decimals the application is told it has."""

    address: str
    decimals: int

    def units(self, amount: Decimal | str) -> int:
        return int(Decimal(amount).scaleb(self.decimals))


# Decimals as real stablecoins have them (USDC: 6); EUR with 18, so both ends of the range are proven.
CURRENCY_DECIMALS = {"EUR": 18, "USD": 6, "GBP": 2}


def token_contracts(tokens: dict[str, Token]) -> dict[str, str]:
    """The WALLET_TOKEN_CONTRACTS setting for these tokens, as env.dict parses it."""
    return {currency: f"{token.address}:{token.decimals}" for currency, token in tokens.items()}


def token_contracts_env(tokens: dict[str, Token]) -> str:
    """The WALLET_TOKEN_CONTRACTS variable for these tokens, for a worker's environment."""
    return ",".join(f"{currency}={value}" for currency, value in token_contracts(tokens).items())


class LocalChain:
    """An in-process chain with a JSON-RPC server on 127.0.0.1 that can be stopped and started again.

    Every transaction is mined at once in a block of its own, so a transfer has
    one confirmation until the test mines more blocks.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.provider = EthereumTesterProvider()
        self.w3 = Web3(self.provider)
        self._request = self.provider.request_func(self.w3, NamedElementOnion([]))
        self.funder = self.w3.eth.accounts[0]  # the wallet provider's hot wallet
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self.start()

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    # --- the JSON-RPC server -------------------------------------------------------------

    def start(self) -> None:
        """Serve JSON-RPC (again, on the same port once it has one)."""
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _RpcHandler)
        self._server.chain = self
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def ensure_running(self) -> None:
        if self._server is None:
            self.start()

    def stop(self) -> None:
        """Stop serving; the chain itself lives on, as a node that went away does."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def answer(self, request: dict) -> dict:
        """Answer one JSON-RPC request as a node does: camelCase keys, hex quantities and bytes."""
        with self._lock:
            # The provider's own middleware turns eth-tester's Python values into JSON-RPC's names.
            response = self._request(request.get("method", ""), request.get("params") or [])
        answer = {"jsonrpc": "2.0", "id": request.get("id")}
        if "error" in response:
            return {**answer, "error": response["error"]}
        return {**answer, "result": _as_json_rpc(response.get("result"))}

    # --- driving the chain from a test ---------------------------------------------------

    def deploy_token(self, *, decimals: int) -> Token:
        with self._lock:
            tx_hash = self.w3.eth.send_transaction({"from": self.funder, "data": TOKEN_DEPLOY, "gas": 1_000_000})
            address = self.w3.eth.get_transaction_receipt(tx_hash).contractAddress
        return Token(address=to_checksum_address(address), decimals=decimals)

    def deploy_currency_tokens(self) -> dict[str, Token]:
        """One token per currency of CURRENCY_DECIMALS."""
        return {currency: self.deploy_token(decimals=decimals) for currency, decimals in CURRENCY_DECIMALS.items()}

    def transfer(self, token: Token, *, to: str, units: int, sender: str | None = None) -> str:
        """Send `units` of the token to `to`; returns the transaction hash (0x…), mined (status 0 if it reverted)."""
        data = TRANSFER_SELECTOR + encode(["address", "uint256"], [to, units])
        with self._lock:
            tx_hash = self.w3.eth.send_transaction(
                {"from": sender or self.funder, "to": token.address, "data": data, "gas": GAS}
            )
        return "0x" + bytes(tx_hash).hex()

    def balance(self, token: Token, holder: str) -> int:
        data = BALANCE_OF_SELECTOR + encode(["address"], [holder])
        with self._lock:
            return int.from_bytes(self.w3.eth.call({"to": token.address, "data": data}), "big")

    def mine(self, blocks: int = 1) -> None:
        with self._lock:
            self.provider.ethereum_tester.mine_blocks(blocks)

    @property
    def block_number(self) -> int:
        with self._lock:
            return self.w3.eth.block_number


def _as_json_rpc(value):
    """Integers as hex quantities and bytes as hex data, as JSON-RPC writes them."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict):
        return {key: _as_json_rpc(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_as_json_rpc(item) for item in value]
    raise TypeError(f"not a JSON-RPC value: {type(value).__name__}")


class _RpcHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        chain: LocalChain = self.server.chain
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if isinstance(request, list):
            response = [chain.answer(item) for item in request]
        else:
            response = chain.answer(request)
        body = json.dumps(response).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args) -> None:
        pass  # keep test output quiet
