"""A fake Slack Socket Mode server: WebSocket (RFC 6455) on 127.0.0.1, standard library only, for tests.

The real clients connect to it as they connect to Slack: ``apps.connections.open`` (answered by the
`FakeSlack` it is given, for the app-level token only) hands out ``ws://127.0.0.1:PORT/link/?ticket=…``;
the client upgrades to a WebSocket there, gets ``{"type": "hello", …}``, and then acknowledges each
envelope the test delivers with ``{"envelope_id": …, "payload"?: …}``::

    with FakeSlack() as slack, FakeSocketMode(slack) as socket_mode:
        handler = SocketModeHandler(app, "xapp-test", web_client=app.client)
        handler.connect()
        try:
            ack = socket_mode.deliver("slash_commands", socket_payload(slash_command(...)))
        finally:
            handler.close()

Everything a client sends is recorded (`received`; acknowledgements also in `acks`); what the fake
could not accept (a protocol violation, an acknowledgement of no envelope) goes to `errors`, and a
refused handshake to `rejected`. Close the client before the fake: a fake that stops drops its
connections without a close frame.

The fake pings every open connection every ``ping_every`` seconds, as Slack pings its clients (far more
often: slack_sdk's builtin client holds its receive lock through a ``recv`` with a 3 s timeout, and its
``close()`` waits for that lock, so a ping lets a close finish at once instead of after up to 3 s).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import struct
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, parse_qsl, urlsplit

from tests.fakes.slack_api import Call, FakeSlack
from tests.fakes.slack_requests import API_APP_ID

__all__ = ["GUID", "Connection", "FakeSocketMode", "Message", "accept_key", "socket_payload"]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
DATA_OPCODES = (OP_TEXT, OP_BINARY)
CONTROL_OPCODES = (OP_CLOSE, OP_PING, OP_PONG)
MAX_MESSAGE = 1 << 20  # Slack's envelopes and acknowledgements are far smaller
MAX_HANDSHAKE = 16 << 10
HOST = "applink-fake-0"


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept answering a Sec-WebSocket-Key."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


def socket_payload(body: bytes) -> dict[str, Any]:
    """The Socket Mode payload of a request body built by `tests.fakes.slack_requests` for HTTP mode.

    Slack puts the same fields in both: a slash command's form fields as a dict of strings, an
    interaction's ``payload=<json>`` as that JSON object, an Events API body as it is.
    """
    text = body.decode("utf-8")
    if text.lstrip().startswith("{"):
        data = json.loads(text)
    else:
        form = dict(parse_qsl(text, keep_blank_values=True))
        data = json.loads(form["payload"]) if set(form) == {"payload"} else form
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = None) -> bytes:
    """One WebSocket frame; masked with ``mask`` (4 bytes) as a client sends it, else as a server does."""
    length = len(payload)
    first = (0x80 if fin else 0) | opcode
    flag = 0x80 if mask is not None else 0
    if length < 126:
        header = struct.pack("!BB", first, flag | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, flag | 126, length)
    else:
        header = struct.pack("!BBQ", first, flag | 127, length)
    if mask is None:
        return header + payload
    return header + mask + _unmask(payload, mask)


def _unmask(data: bytes, mask: bytes) -> bytes:
    """XOR with the repeated 4-byte key (masking and unmasking are the same operation)."""
    if not data:
        return b""
    n = len(data)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def recv_exactly(sock: socket.socket, buffer: bytearray, n: int) -> bytes | None:
    """The next n bytes from a socket, through `buffer` (what came beyond them stays there for the
    next read); None when the peer closed first."""
    while len(buffer) < n:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buffer += chunk
    out = bytes(buffer[:n])
    del buffer[:n]
    return out


@dataclass(frozen=True)
class Message:
    """One text message from a client (its fragments joined), as the fake received it."""

    connection: int
    text: str
    data: dict[str, Any] | None  # the JSON object, when it is one
    at: float


class _ProtocolError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class _Ended(Exception):
    """The client closed the TCP connection (or the fake is stopping)."""


class _Rejected(Exception):
    def __init__(self, status: str, why: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(why)
        self.status, self.why, self.headers = status, why, headers or {}


@dataclass(eq=False)
class Connection:
    """The server side of one client's WebSocket."""

    id: int
    sock: socket.socket
    fake: FakeSocketMode
    path: str = ""
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # the handshake's, with lower-case names
    pings: list[bytes] = field(default_factory=list)  # payloads of the client's pings (each answered)
    pongs: list[bytes] = field(default_factory=list)  # payloads of the client's pongs
    close_code: int | None = None  # what the client's close frame said; None: it sent none
    close_sent: bool = False
    ended: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._send_lock = threading.Lock()
        self._buffer = bytearray()
        self._fragments: tuple[int, list[bytes]] | None = None

    @property
    def open(self) -> bool:
        return not self.ended.is_set() and not self.close_sent

    # ------------------------------------------------------------------ sending

    def _send(self, data: bytes) -> None:
        with self._send_lock:
            if self.ended.is_set():
                raise ConnectionError(f"socket mode connection {self.id} has ended")
            self.sock.sendall(data)

    def send_text(self, text: str) -> None:
        self._send(frame(OP_TEXT, text.encode("utf-8")))

    def send_json(self, message: dict[str, Any]) -> None:
        self.send_text(json.dumps(message, separators=(",", ":")))

    def ping(self, payload: bytes = b"") -> None:
        self._send(frame(OP_PING, payload[:125]))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (the client answers with a close frame, or just goes)."""
        with self._send_lock:
            if self.close_sent or self.ended.is_set():
                return
            self.close_sent = True
            with contextlib.suppress(OSError):
                self.sock.sendall(frame(OP_CLOSE, struct.pack("!H", code) + reason.encode("utf-8")[:123]))

    def wait_ended(self, timeout: float = 5.0) -> None:
        """Block until the client has gone (TCP closed); AssertionError after ``timeout`` seconds."""
        if not self.ended.wait(timeout):
            raise AssertionError(f"socket mode connection {self.id} still open after {timeout:g} s")

    # ------------------------------------------------------------------ receiving

    def _read(self, n: int) -> bytes:
        out = recv_exactly(self.sock, self._buffer, n)
        if out is None:
            raise _Ended
        return out

    def _handshake(self) -> str:
        """Read and check the HTTP Upgrade request; return the Sec-WebSocket-Accept to answer with."""
        while b"\r\n\r\n" not in self._buffer:
            if len(self._buffer) > MAX_HANDSHAKE:
                raise _Rejected("431 Request Header Fields Too Large", "handshake too large")
            chunk = self.sock.recv(4096)
            if not chunk:
                raise _Ended
            self._buffer += chunk
        head, _, rest = bytes(self._buffer).partition(b"\r\n\r\n")
        self._buffer = bytearray(rest)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or parts[0] != "GET" or not parts[2].startswith("HTTP/1."):
            raise _Rejected("400 Bad Request", f"not a GET request: {lines[0][:80]!r}")
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise _Rejected("400 Bad Request", f"malformed header line {line[:80]!r}")
            self.headers[name.strip().lower()] = value.strip()
        target = urlsplit(parts[1])
        self.path = target.path
        self.query = {k: v[0] for k, v in parse_qs(target.query).items()}
        h = self.headers
        if "host" not in h:
            raise _Rejected("400 Bad Request", "no Host header")
        if h.get("upgrade", "").lower() != "websocket":
            raise _Rejected("400 Bad Request", "no 'Upgrade: websocket'")
        if "upgrade" not in [t.strip().lower() for t in h.get("connection", "").split(",")]:
            raise _Rejected("400 Bad Request", "no 'Connection: Upgrade'")
        if h.get("sec-websocket-version") != "13":
            raise _Rejected("426 Upgrade Required", "Sec-WebSocket-Version is not 13",
                            {"Sec-WebSocket-Version": "13"})
        key = h.get("sec-websocket-key", "")
        try:
            if len(base64.b64decode(key, validate=True)) != 16:
                raise ValueError
        except ValueError:
            raise _Rejected("400 Bad Request", f"bad Sec-WebSocket-Key {key[:40]!r}") from None
        if self.path.rstrip("/") != "/link":
            raise _Rejected("404 Not Found", f"no WebSocket at {self.path[:80]!r}")
        if not self.fake._ticket_ok(self.query.get("ticket")):
            raise _Rejected("401 Unauthorized", "unknown ticket (not from apps.connections.open)")
        return accept_key(key)

    def _frame(self) -> tuple[bool, int, bytes]:
        first, second = self._read(2)
        fin, rsv, opcode = bool(first & 0x80), first & 0x70, first & 0x0F
        masked, length = bool(second & 0x80), second & 0x7F
        if rsv:
            raise _ProtocolError(1002, "reserved bits set without an extension")
        if opcode not in (OP_CONTINUATION, *DATA_OPCODES, *CONTROL_OPCODES):
            raise _ProtocolError(1002, f"unknown opcode {opcode:#x}")
        if not masked:
            raise _ProtocolError(1002, "a client frame must be masked")
        if length == 126:
            (length,) = struct.unpack("!H", self._read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read(8))
        if opcode in CONTROL_OPCODES and (not fin or length > 125):
            raise _ProtocolError(1002, "a control frame must be whole and at most 125 bytes")
        if length > MAX_MESSAGE:
            raise _ProtocolError(1009, "frame too big")
        mask = self._read(4)
        return fin, opcode, _unmask(self._read(length), mask)

    def _serve(self) -> None:
        """Frames until the client goes: data messages joined from their fragments, control frames
        answered (a ping with a pong, a close with a close)."""
        while True:
            fin, opcode, data = self._frame()
            if opcode in DATA_OPCODES:
                if self._fragments is not None:
                    raise _ProtocolError(1002, "a new message before the fragmented one ended")
                if fin:
                    self._message(opcode, data)
                else:
                    self._fragments = (opcode, [data])
            elif opcode == OP_CONTINUATION:
                if self._fragments is None:
                    raise _ProtocolError(1002, "a continuation frame without a message to continue")
                self._fragments[1].append(data)
                if sum(len(part) for part in self._fragments[1]) > MAX_MESSAGE:
                    raise _ProtocolError(1009, "message too big")
                if fin:
                    first_opcode, parts = self._fragments
                    self._fragments = None
                    self._message(first_opcode, b"".join(parts))
            elif opcode == OP_PING:
                with self.fake._cond:
                    self.pings.append(data)
                with contextlib.suppress(ConnectionError, OSError):
                    self._send(frame(OP_PONG, data))
            elif opcode == OP_PONG:
                with self.fake._cond:
                    self.pongs.append(data)
                    self.fake._cond.notify_all()
            else:  # close
                self._closed_by_client(data)
                return

    def _message(self, opcode: int, data: bytes) -> None:
        if opcode == OP_BINARY:
            self.fake._error(f"connection {self.id}: a binary message ({len(data)} bytes); Slack takes text")
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise _ProtocolError(1007, "a text message that is not UTF-8") from None
        self.fake._received(self, text)

    def _closed_by_client(self, data: bytes) -> None:
        if len(data) == 1:
            raise _ProtocolError(1002, "a close frame with a 1-byte body")
        code = struct.unpack("!H", data[:2])[0] if data else None
        try:
            data[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise _ProtocolError(1007, "a close reason that is not UTF-8") from None
        with self.fake._cond:
            self.close_code = code
        with self._send_lock:  # answer it (same code), unless this closes the fake's own close
            if not self.close_sent:
                self.close_sent = True
                with contextlib.suppress(OSError):
                    self.sock.sendall(frame(OP_CLOSE, struct.pack("!H", code) if code else b""))

    def _run(self) -> None:
        try:
            try:
                accept = self._handshake()
            except _Rejected as no:
                self.fake._reject(self, no)
                return
            self.sock.settimeout(None)
            with self._send_lock:  # the hello goes before anything a test sends on this connection
                self.fake._opened(self)
                self.sock.sendall(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Accept: " + accept.encode("ascii") + b"\r\n\r\n"
                )
                self.sock.sendall(frame(OP_TEXT, json.dumps(self.fake._hello()).encode()))
            self._serve()
        except _ProtocolError as bad:
            self.fake._error(f"connection {self.id}: {bad.reason} (closed with {bad.code})")
            self.close(bad.code, bad.reason)
        except (_Ended, ConnectionError, TimeoutError):
            pass
        except OSError:
            if not self.fake._stopping.is_set():
                self.fake._error(f"connection {self.id}: {traceback.format_exc()}")
        except Exception:
            self.fake._error(f"connection {self.id}: {traceback.format_exc()}")
        finally:
            with self._send_lock:
                with contextlib.suppress(OSError):
                    self.sock.close()
                self.ended.set()
            with self.fake._cond:
                self.fake._cond.notify_all()


class FakeSocketMode:
    """Slack's Socket Mode server on 127.0.0.1 (a free port), for tests. Use as a context manager.

    ``slack``, when given, answers ``apps.connections.open`` with a fresh URL of this server, for
    ``app_token`` only (any other token: ``invalid_auth``, or ``not_allowed_token_type`` when it is not
    an app-level token at all).
    """

    name = "fake-socket-mode"

    def __init__(
        self,
        slack: FakeSlack | None = None,
        *,
        app_token: str = "xapp-test",
        app_id: str = API_APP_ID,
        ping_every: float | None = 0.1,
    ) -> None:
        self.slack = slack
        self.app_token = app_token
        self.app_id = app_id
        self.ping_every = ping_every
        self.connections: list[Connection] = []  # every connection that completed its handshake
        self.received: list[Message] = []
        self.acks: dict[str, dict[str, Any]] = {}  # envelope id → the client's acknowledgement
        self.sent: dict[str, dict[str, Any]] = {}  # envelope id → the envelope
        self.errors: list[str] = []  # what the fake could not accept: protocol violations, stray acks
        self.rejected: list[str] = []  # refused handshakes: "401 Unauthorized: why"
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._tickets: set[str] = set()
        self._all: list[Connection] = []  # every accepted socket, for the stop
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Self:
        if self._listener is not None:
            raise RuntimeError("FakeSocketMode is already running")
        self._stopping.clear()
        listener = socket.create_server(("127.0.0.1", 0), backlog=16)
        listener.settimeout(0.05)  # the accept loop looks at _stopping this often
        self._listener = listener
        self._start(self._accept_loop, "accept")
        if self.ping_every:
            self._start(self._ping_loop, "ping")
        if self.slack is not None:
            self.slack.answer("apps.connections.open", self._connections_open)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        listener = self._listener
        if listener is None:
            return
        self._stopping.set()
        listener.close()
        self._threads[0].join(timeout=2.0)  # the accept loop: no connection comes after this
        with self._cond:
            connections = list(self._all)
        for conn in connections:  # wakes each reader with an EOF
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads[1:]:
            thread.join(timeout=2.0)
        self._threads = []
        self._listener = None

    def _start(self, target: Any, what: str) -> None:
        thread = threading.Thread(target=target, name=f"{self.name}-{what}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        listener = self._listener
        while not self._stopping.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed: stopping
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(10.0)  # for the handshake; none once it is a WebSocket
            with self._cond:
                conn = Connection(len(self._all) + 1, sock, self)
                self._all.append(conn)
            self._start(conn._run, f"conn{conn.id}")

    def _ping_loop(self) -> None:
        n = 0
        while not self._stopping.wait(self.ping_every):
            n += 1
            for conn in self.open_connections():
                with contextlib.suppress(ConnectionError, OSError):
                    conn.ping(f"fake-ping-{n}".encode())

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("FakeSocketMode is not running; use it as a context manager")
        return int(self._listener.getsockname()[1])

    # ------------------------------------------------------------------ apps.connections.open

    def open_url(self) -> str:
        """A URL to connect to, with a fresh ticket: what apps.connections.open answers."""
        ticket = str(uuid.uuid4())
        with self._cond:
            self._tickets.add(ticket)
        return f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={self.app_id}"

    def _connections_open(self, call: Call) -> dict[str, Any]:
        auth = call.headers.get("authorization", "")
        token = auth[len("Bearer "):].strip() if auth.startswith("Bearer ") else call.params.get("token")
        if not token:
            return {"ok": False, "error": "not_authed"}
        if not str(token).startswith("xapp-"):
            return {"ok": False, "error": "not_allowed_token_type"}
        if token != self.app_token:
            return {"ok": False, "error": "invalid_auth"}
        return {"ok": True, "url": self.open_url()}

    def _ticket_ok(self, ticket: str | None) -> bool:
        with self._cond:
            return ticket in self._tickets

    # ------------------------------------------------------------------ connection events

    def _hello(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "num_connections": len(self.open_connections()),
            "debug_info": {"host": HOST, "build_number": 1, "approximate_connection_time": 18060},
            "connection_info": {"app_id": self.app_id},
        }

    def _opened(self, conn: Connection) -> None:
        with self._cond:
            self.connections.append(conn)
            self._cond.notify_all()

    def _reject(self, conn: Connection, no: _Rejected) -> None:
        with self._cond:
            self.rejected.append(f"{no.status}: {no.why}")
            self._cond.notify_all()
        body = no.why.encode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in no.headers.items())
        with contextlib.suppress(OSError):
            conn.sock.sendall(
                f"HTTP/1.1 {no.status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n{extra}\r\n".encode() + body
            )

    def _error(self, what: str) -> None:
        with self._cond:
            self.errors.append(what)
            self._cond.notify_all()

    def _received(self, conn: Connection, text: str) -> None:
        data: dict[str, Any] | None = None
        with contextlib.suppress(ValueError):
            parsed = json.loads(text)
            data = parsed if isinstance(parsed, dict) else None
        with self._cond:
            self.received.append(Message(conn.id, text, data, time.monotonic()))
            if data is not None and isinstance(data.get("envelope_id"), str):
                envelope_id = data["envelope_id"]
                if envelope_id not in self.sent:
                    self.errors.append(f"an acknowledgement of no envelope sent: {text[:200]}")
                elif envelope_id in self.acks:
                    self.errors.append(f"envelope {envelope_id} acknowledged twice: {text[:200]}")
                else:
                    self.acks[envelope_id] = data
            self._cond.notify_all()

    # ------------------------------------------------------------------ what tests use

    def open_connections(self) -> list[Connection]:
        with self._cond:
            return [c for c in self.connections if c.open]

    def wait_connected(self, count: int = 1, timeout: float = 5.0) -> Connection:
        """Block until ``count`` connections have been made (handshake done, hello sent); the last."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.connections) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"FakeSocketMode: {len(self.connections)} connection(s) after {timeout:g} s, wanted "
                        f"{count}; rejected handshakes: {self.rejected}; errors: {self.errors}"
                    )
                self._cond.wait(remaining)
            return self.connections[count - 1]

    def send(self, message: dict[str, Any], connection: Connection | None = None) -> None:
        """Send a JSON message on ``connection``, by default the newest open one (Slack picks any)."""
        if connection is None:
            open_now = self.open_connections()
            if not open_now:
                raise AssertionError("FakeSocketMode: no open connection to send on")
            connection = open_now[-1]
        connection.send_json(message)

    def send_envelope(
        self,
        type: str,
        payload: dict[str, Any],
        *,
        envelope_id: str | None = None,
        accepts_response_payload: bool | None = None,
        retry_attempt: int | None = None,
        retry_reason: str | None = None,
        connection: Connection | None = None,
    ) -> str:
        """Deliver a request as Slack does; its envelope id. ``type`` is "slash_commands",
        "interactive" or "events_api". Events carry ``retry_attempt``/``retry_reason``, 0 and "" by
        default, as Slack sends them. ``accepts_response_payload`` defaults to true for what may be
        answered in its acknowledgement (slash commands, modal submissions, options), else false."""
        envelope_id = envelope_id or str(uuid.uuid4())
        if accepts_response_payload is None:
            accepts_response_payload = type == "slash_commands" or (
                type == "interactive" and payload.get("type") in ("view_submission", "block_suggestion"))
        envelope: dict[str, Any] = {"envelope_id": envelope_id, "payload": payload, "type": type,
                                    "accepts_response_payload": accepts_response_payload}
        if type == "events_api" or retry_attempt is not None:
            envelope["retry_attempt"] = retry_attempt or 0
            envelope["retry_reason"] = retry_reason or ""
        with self._cond:
            self.sent[envelope_id] = envelope
        self.send(envelope, connection)
        return envelope_id

    def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """Block until the envelope is acknowledged; the acknowledgement (``{"envelope_id", "payload"?}``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while envelope_id not in self.acks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = [m.text[:200] for m in self.received[-10:]]
                    raise AssertionError(
                        f"FakeSocketMode: envelope {envelope_id} not acknowledged within {timeout:g} s; last "
                        f"messages received: {got}; errors: {self.errors}"
                    )
                self._cond.wait(remaining)
            return self.acks[envelope_id]

    def deliver(
        self, type: str, payload: dict[str, Any], timeout: float = 5.0, **envelope: Any
    ) -> dict[str, Any]:
        """`send_envelope`, then `wait_for_ack`: the acknowledgement."""
        return self.wait_for_ack(self.send_envelope(type, payload, **envelope), timeout)

    def ask_to_reconnect(
        self, reason: str = "refresh_requested", connection: Connection | None = None
    ) -> None:
        """Slack's ``disconnect`` message: the client is to open a new connection (Slack sends it before a
        connection's lifetime ends, and when it restarts a server)."""
        self.send({"type": "disconnect", "reason": reason, "debug_info": {"host": HOST}}, connection)
