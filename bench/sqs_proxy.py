"""A loopback TCP proxy in front of the SQS server, to slow it down or take it away during a benchmark.

    proxy = SqsProxy(upstream_port=4566).start()   # listens on 127.0.0.1:proxy.port
    proxy.set_delay(50)    # every request waits 50 ms longer
    proxy.set_up(False)    # SQS is down: connections refused, open ones reset
    proxy.set_up(True)
    proxy.stop()

It runs an asyncio loop in a thread of the calling process, so the benchmark
switches it between phases with plain method calls.

Slowed: each chunk of bytes from client to server is forwarded `delay_ms`
after it arrived (answers come back at once). That is one-way latency added on
the way in, so every HTTP request/response exchange (an SQS call on a kept-alive
connection) takes `delay_ms` longer, however many chunks the request was sent in;
a new connection costs nothing extra to open.

Down: the listening socket is closed (a new connection is refused, as when the
SQS server is stopped) and every open connection is reset (botocore and kombu
keep connections alive: without the reset they would go on working). A black hole
(connections accepted, never answered) is not simulated: the clients' read
timeouts, not SQS, would then set every figure.

Stdlib only, 127.0.0.1 only.
"""

import asyncio
import socket
import struct
import threading

LOOPBACK = "127.0.0.1"
CHUNK = 65536
CONTROL_TIMEOUT = 10.0  # seconds a method call waits for the proxy's loop


class SqsProxy:
    """A TCP proxy 127.0.0.1:port → 127.0.0.1:upstream_port with a switchable delay and outage."""

    def __init__(self, *, upstream_port: int, port: int = 0) -> None:
        self.upstream_port = upstream_port
        self.port = port  # 0: a free port, chosen by the first start and kept through outages
        self.delay_ms = 0.0
        self.connections = 0  # accepted client connections, all told
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sqs-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def up(self) -> bool:
        return self._server is not None

    def start(self) -> "SqsProxy":
        self._thread.start()
        self._call(self._listen())
        return self

    def set_delay(self, delay_ms: float) -> None:
        """Forward client bytes `delay_ms` after they arrive (0: at once); applies to bytes arriving from now on."""
        self.delay_ms = float(delay_ms)

    def set_up(self, up: bool) -> None:
        """Listen (True), or refuse new connections and reset the open ones (False)."""
        self._call(self._listen() if up else self._refuse())

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._refuse())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CONTROL_TIMEOUT)
        self._loop.close()

    def _call(self, coroutine) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(CONTROL_TIMEOUT)

    # --- In the proxy's loop -------------------------------------------------------------------

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, LOOPBACK, self.port, reuse_address=True)
            self.port = self._server.sockets[0].getsockname()[1]

    async def _refuse(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._open):
            reset(writer)
        self._open.clear()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            server_reader, server_writer = await asyncio.open_connection(LOOPBACK, self.upstream_port)
        except OSError:
            reset(client_writer)  # the SQS server itself is not there
            return
        writers = {client_writer, server_writer}
        self._open |= writers
        pumps = [
            asyncio.create_task(self._forward_delayed(client_reader, server_writer)),
            asyncio.create_task(self._forward(server_reader, client_writer)),
        ]
        try:
            # Either side closing ends the pair (HTTP clients and servers here never half-close).
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            for writer in writers:
                writer.close()
            self._open -= writers

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(CHUNK):
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass

    async def _forward_delayed(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Forward each chunk delay_ms after its arrival, in order: reading goes on while a chunk waits."""
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def read() -> None:
            try:
                while chunk := await reader.read(CHUNK):
                    chunks.put_nowait((loop.time() + self.delay_ms / 1000, chunk))
            except (ConnectionError, OSError):
                pass
            chunks.put_nowait((loop.time(), b""))  # end of stream, after what is already waiting

        reading = asyncio.create_task(read())
        try:
            while True:
                due, chunk = await chunks.get()
                if not chunk:
                    return
                await asyncio.sleep(max(0.0, due - loop.time()))
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            reading.cancel()


def reset(writer: asyncio.StreamWriter) -> None:
    """Close the connection with an RST (linger 0), as a dead server's host would: the peer's next call fails."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
