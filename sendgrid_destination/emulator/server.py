"""The HTTP transport: a threaded HTTP/1.1 keep-alive server that runs a dispatch function.

Contract: ``HttpServer(dispatch).start(host, port)`` serves on daemon threads until
``stop()``, which returns promptly even while a ``hang`` fault holds a connection: it stops
the accept loop, wakes every delayed or hanging handler, and shuts down every open
connection (so a pooled keep-alive socket cannot reach a stopped emulator). A response
with disposition ``drop`` closes the socket without writing anything; ``hang`` holds the
socket silently until the client hangs up or the server stops; ``drip`` writes the whole
response (status line, headers, body) one byte per ``drip_interval`` seconds, then closes,
stopping early when the client hangs up or the server stops. Bodies may come with
``Content-Length`` or chunked; anything larger than ``body_cap(path)`` (by default
``HARD_BODY_CAP``) is refused with 413 before it is read, and the connection is closed.
"""

from __future__ import annotations

import contextlib
import io
import select
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .http_types import Request, Response, error_response
from .rules import MAX_REQUEST_BYTES

Dispatch = Callable[[Request], Response]
BodyCap = Callable[[str], int]
# Bodies up to this size are read so the app can answer 413 on a live connection, as
# the real API does for bodies just over 6 MB; beyond it we refuse without reading.
HARD_BODY_CAP = 4 * MAX_REQUEST_BYTES
_POLL_SECONDS = 0.05
# serve_forever notices shutdown() only between selects; a short poll keeps stop() (and
# every test's teardown) at about 10 ms, for ~100 idle wake-ups a second.
_ACCEPT_POLL_SECONDS = 0.01


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], dispatch: Dispatch, body_cap: BodyCap) -> None:
        self.dispatch = dispatch
        self.body_cap = body_cap
        self.stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sendgrid-emulator"
    # Headers and body go out in two writes; with Nagle on, each keep-alive response would
    # stall ~40 ms on the client's delayed ACK.
    disable_nagle_algorithm = True
    server: _Server

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request log line (tests run thousands of requests)."""

    def _handle(self) -> None:
        body = self._read_body()
        if body is None:
            return
        request = Request(self.command, self.path, dict(self.headers.items()), body)
        response = self.server.dispatch(request)
        if response.disposition == "reply":
            self._send(response)
        elif response.disposition == "drop":
            self.close_connection = True
        elif response.disposition == "drip":
            self._drip(response)
        else:
            self._hang()

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            self._send(error_response(400, "invalid Content-Length"), close=True)
            return None
        if length > self.server.body_cap(self.path):
            self._send(error_response(413, "request entity too large"), close=True)
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes | None:
        parts: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            total += size
            if total > self.server.body_cap(self.path):
                self._send(error_response(413, "request entity too large"), close=True)
                return None
            parts.append(self.rfile.read(size))
            self.rfile.readline()

    def _send(self, response: Response, close: bool = False) -> None:
        self.send_response(response.status)
        if response.body or response.status != 204:
            self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(response.body)

    def _drip(self, response: Response) -> None:
        # The headers and body the normal path would write, captured, then sent slowly.
        wire, captured = self.wfile, io.BytesIO()
        self.wfile = captured
        try:
            self._send(response, close=True)
        finally:
            self.wfile = wire
        raw = captured.getvalue()
        for position in range(len(raw)):
            if self.server.stopping.wait(response.drip_interval):
                return
            try:
                self.wfile.write(raw[position : position + 1])
                self.wfile.flush()
            except OSError:
                return  # the client gave up

    def _hang(self) -> None:
        self.close_connection = True
        while not self.server.stopping.is_set():
            readable, _, _ = select.select([self.connection], [], [], _POLL_SECONDS)
            if readable and not self._peer_still_there():
                return

    def _peer_still_there(self) -> bool:
        try:
            data = self.connection.recv(1, socket.MSG_PEEK)
        except OSError:
            return False
        if data:
            # Pipelined bytes: keep hanging, without spinning on the readable socket.
            self.server.stopping.wait(_POLL_SECONDS)
        return bool(data)


class HttpServer:
    """Serves ``dispatch`` on a background thread."""

    def __init__(self, dispatch: Dispatch, body_cap: BodyCap = lambda path: HARD_BODY_CAP) -> None:
        self._dispatch = dispatch
        self._body_cap = body_cap
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return int(self._server.server_address[1])

    def wait(self, seconds: float) -> None:
        """Sleep ``seconds`` in real time, waking early when the server stops."""
        if self._server is not None:
            self._server.stopping.wait(seconds)

    def start(self, host: str, port: int) -> None:
        if self._server is not None:
            raise RuntimeError("the emulator is already started")
        self._server = _Server((host, port), self._dispatch, self._body_cap)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _ACCEPT_POLL_SECONDS},
            name=f"sendgrid-emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.stopping.set()
        server.shutdown()
        server.server_close()
        server.close_connections()
        thread.join(timeout=5)
        self._server = self._thread = None
