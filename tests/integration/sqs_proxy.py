"""A loopback HTTP proxy in front of the SQS server that can fail the way SQS and networks fail."""

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HANG_SECONDS = 20
THROTTLED = b'{"__type":"com.amazonaws.sqs#RequestThrottled","message":"Rate exceeded"}'
# mode → (status, body) answered instead of forwarding; "pass" forwards, "hang" never answers.
ANSWERS = {
    "error500": (500, b"Internal Server Error"),
    "unavailable503": (503, b""),
    "throttled": (400, THROTTLED),
    "garbage": (200, b"\x00this is not what SQS says"),
    "empty": (200, b""),
}


class FaultyProxy:
    """Forwards to `upstream` in mode "pass"; otherwise answers as ANSWERS says, or hangs, or refuses."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.mode = "pass"
        self.requests_by_mode: dict[str, int] = {}
        self._lock = threading.Lock()
        self._released = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                proxy._handle(self)

            do_GET = do_POST

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def set_mode(self, mode: str) -> None:
        assert mode == "pass" or mode == "hang" or mode in ANSWERS, mode
        with self._lock:
            self.mode = mode

    def seen(self, mode: str) -> int:
        with self._lock:
            return self.requests_by_mode.get(mode, 0)

    def close(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        with self._lock:
            mode = self.mode
            self.requests_by_mode[mode] = self.requests_by_mode.get(mode, 0) + 1
        if mode == "hang":
            self._released.wait(HANG_SECONDS)  # then drop the connection without a word
            handler.close_connection = True
            return
        if mode in ANSWERS:
            status, payload = ANSWERS[mode]
            handler.send_response(status)
            handler.send_header("Content-Type", "application/x-amz-json-1.0")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            return
        upstream = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=30)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("host", "connection")}
        upstream.request(handler.command, handler.path, body=body, headers=headers)
        response = upstream.getresponse()
        payload = response.read()
        handler.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)
        upstream.close()
