"""The benchmarks' SQS proxy (bench/sqs_proxy.py): a delayed proxy still forwards, a down one refuses and resets."""

import socket
import socketserver
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from sqs_proxy import SqsProxy  # bench/ is not a package: imported from its folder, as the scripts do


class Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        try:
            while data := self.request.recv(65536):
                self.request.sendall(data)
        except ConnectionResetError:  # the proxy going down resets its upstream connections: the test's point
            pass


@pytest.fixture
def proxy():
    upstream = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    upstream.daemon_threads = True
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    proxy = SqsProxy(upstream_port=upstream.server_address[1]).start()
    yield proxy
    proxy.stop()
    upstream.shutdown()
    upstream.server_close()


def exchange(conn: socket.socket, payload: bytes) -> bytes:
    conn.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = conn.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def test_a_delayed_proxy_forwards_every_byte_in_order(proxy):
    proxy.set_delay(20)
    payload = bytes(range(256)) * 1000  # several chunks

    with connect(proxy.port) as conn:
        assert exchange(conn, payload) == payload
        assert exchange(conn, b"second request") == b"second request"


def test_a_down_proxy_refuses_new_connections_and_resets_open_ones(proxy):
    open_conn = connect(proxy.port)
    assert exchange(open_conn, b"ping") == b"ping"

    proxy.set_up(False)

    with pytest.raises(ConnectionRefusedError):
        connect(proxy.port)
    try:
        answer = exchange(open_conn, b"ping")
    except OSError:  # reset by the proxy
        answer = b""
    assert answer == b""
    open_conn.close()


def test_a_proxy_back_up_listens_on_the_same_port(proxy):
    port = proxy.port
    proxy.set_up(False)
    proxy.set_up(True)

    assert proxy.port == port
    with connect(port) as conn:
        assert exchange(conn, b"pong") == b"pong"
