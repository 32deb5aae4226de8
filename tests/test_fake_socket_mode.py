"""The Socket Mode fake, driven by slack_sdk's REAL builtin SocketModeClient (and, for what that client
never sends, by a raw WebSocket client written here) over TCP on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_requests import block_action, slash_command
from tests.fakes.socket_mode import FakeSocketMode, accept_key, recv_exactly, socket_payload

APP_TOKEN = "xapp-1-fake-socket-test"
# RFC 6455 section 1.3's own example: this key must be answered with this accept value.
RFC_KEY, RFC_ACCEPT = "dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def wait_until(condition: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not hold within {timeout:g} s"
        time.sleep(0.01)


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake
    assert fake.errors == []


@pytest.fixture
def socket_mode(slack: FakeSlack) -> Iterator[FakeSocketMode]:
    with FakeSocketMode(slack, app_token=APP_TOKEN) as fake:
        yield fake
    assert fake.errors == [] and fake.rejected == []


class Client:
    """The real builtin client, answering each request with what it was given; what it saw."""

    def __init__(self, slack: FakeSlack) -> None:
        self.raw: list[str] = []
        self.requests: list[SocketModeRequest] = []
        web = WebClient(token="xoxb-test", base_url=slack.api_url)
        self.sdk = SocketModeClient(APP_TOKEN, web_client=web, on_message_listeners=[self.raw.append])
        self.sdk.socket_mode_request_listeners.append(self.answer)

    def answer(self, client: Any, req: SocketModeRequest) -> None:
        self.requests.append(req)
        payload = {"echo": req.payload.get("type"), "kind": req.type}
        client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id, payload=payload))


@pytest.fixture
def client(slack: FakeSlack, socket_mode: FakeSocketMode) -> Iterator[Client]:
    c = Client(slack)
    yield c
    c.sdk.close()  # before the fake stops


def test_the_client_connects_with_its_app_token_and_is_greeted(
    slack: FakeSlack, socket_mode: FakeSocketMode, client: Client
) -> None:
    client.sdk.connect()
    conn = socket_mode.wait_connected()

    [call] = slack.calls_to("apps.connections.open")
    assert call.headers["authorization"] == f"Bearer {APP_TOKEN}"
    assert conn.path == "/link/" and conn.query["app_id"] == "A0FAKE" and conn.query["ticket"]
    assert conn.headers["upgrade"] == "websocket" and conn.headers["sec-websocket-version"] == "13"
    assert client.sdk.is_connected()
    wait_until(lambda: client.raw, what="the hello")
    hello = json.loads(client.raw[0])
    assert hello["type"] == "hello" and hello["num_connections"] == 1
    assert hello["connection_info"] == {"app_id": "A0FAKE"}
    # ping/pong both ways: the client pings on connecting (answered), the fake pings every 0.1 s
    session = client.sdk.current_session
    assert session is not None
    # the client read the answer to its ping (its last_ping_pong_time), and answered the fake's
    wait_until(lambda: conn.pings and session.last_ping_pong_time and conn.pongs, what="ping/pong both ways")
    assert conn.pongs[0].startswith(b"fake-ping-")


def test_envelopes_of_each_type_are_acknowledged_with_their_payloads(
    slack: FakeSlack, socket_mode: FakeSocketMode, client: Client
) -> None:
    client.sdk.connect()
    socket_mode.wait_connected()
    command = socket_payload(slash_command("health acme", response_url=slack.response_url("r1")))
    click = socket_payload(block_action("open_card", "DEMO-0001"))

    first = socket_mode.send_envelope("slash_commands", command)
    ack = socket_mode.wait_for_ack(first)
    assert ack == {"envelope_id": first, "payload": {"echo": None, "kind": "slash_commands"}}
    assert socket_mode.deliver("interactive", click)["payload"] == {"echo": "block_actions",
                                                                    "kind": "interactive"}
    big = {"type": "event_callback", "event": {"type": "message", "text": "x" * 70_000}}  # a 64-bit length
    assert socket_mode.deliver("events_api", big, retry_attempt=2, retry_reason="timeout")["payload"] == {
        "echo": "event_callback", "kind": "events_api"}

    slash, interactive, event = client.requests
    assert slash.payload == command and slash.payload["text"] == "health acme"
    assert slash.accepts_response_payload
    assert interactive.payload["actions"][0]["action_id"] == "open_card"
    assert event.payload == big and (event.retry_attempt, event.retry_reason) == (2, "timeout")
    assert [m.data["envelope_id"] for m in socket_mode.received if m.data] == list(socket_mode.sent)
    assert len(socket_mode.acks) == 3


def test_a_closing_client_is_seen_to_go(socket_mode: FakeSocketMode, client: Client) -> None:
    client.sdk.connect()
    conn = socket_mode.wait_connected()
    assert socket_mode.open_connections() == [conn]

    started = time.monotonic()
    client.sdk.close()
    closed_in = time.monotonic() - started
    conn.wait_ended()

    assert socket_mode.open_connections() == []
    assert closed_in < 2.5, f"close took {closed_in:.2f} s"  # 3 s without the fake's pings
    with pytest.raises(ConnectionError):
        conn.send_json({"type": "hello"})


def test_a_disconnect_message_moves_the_client_to_a_new_connection(
    slack: FakeSlack, socket_mode: FakeSocketMode, client: Client
) -> None:
    client.sdk.connect()
    old = socket_mode.wait_connected()

    socket_mode.ask_to_reconnect()
    new = socket_mode.wait_connected(2)
    old.wait_ended()

    assert new.query["ticket"] != old.query["ticket"]
    assert len(slack.calls_to("apps.connections.open")) == 2
    assert socket_mode.open_connections() == [new]
    eid = socket_mode.send_envelope("events_api", {"type": "event_callback", "event": {"type": "x"}})
    assert socket_mode.wait_for_ack(eid)["envelope_id"] == eid


def test_only_the_app_token_opens_a_connection(slack: FakeSlack, socket_mode: FakeSocketMode) -> None:
    web = WebClient(base_url=slack.api_url)
    with pytest.raises(SlackApiError, match="invalid_auth"):
        web.apps_connections_open(app_token="xapp-1-someone-else")
    with pytest.raises(SlackApiError, match="not_allowed_token_type"):
        web.apps_connections_open(app_token="xoxb-a-bot-token")
    url = web.apps_connections_open(app_token=APP_TOKEN)["url"]
    assert url.startswith(f"ws://127.0.0.1:{socket_mode.port}/link/?ticket=")
    assert socket_mode.connections == []


# a raw client: what the builtin client never sends ------------------------------------------------

def mask(payload: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class Raw:
    """A minimal WebSocket client over a plain socket."""

    def __init__(self, url: str, key: str = RFC_KEY, version: str = "13") -> None:
        rest = url.removeprefix("ws://")
        hostport, _, path = rest.partition("/")
        host, _, port = hostport.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.sock.sendall(
            f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
            f"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: {version}\r\n\r\n".encode()
        )
        self.buffer = bytearray()
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            self.buffer += chunk
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        self.buffer = bytearray(rest)
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split(" ")[1])
        pairs = (line.partition(":") for line in lines[1:])
        self.headers = {k.strip().lower(): v.strip() for k, _, v in pairs}

    def send(self, opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True) -> None:
        key = os.urandom(4)
        length = len(payload)
        header = bytes([(0x80 if fin else 0) | opcode])
        flag = 0x80 if masked else 0
        header += bytes([flag | length]) if length < 126 else bytes([flag | 126]) + struct.pack("!H", length)
        self.sock.sendall(header + (key + mask(payload, key) if masked else payload))

    def read(self, n: int) -> bytes:
        out = recv_exactly(self.sock, self.buffer, n)
        if out is None:
            raise EOFError
        return out

    def recv(self) -> tuple[int, bytes]:
        first, second = self.read(2)
        assert first & 0x80 and not second & 0x80, "a server frame is whole and never masked"
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self.read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self.read(8))
        return first & 0x0F, self.read(length)

    def at_eof(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


@pytest.fixture
def quiet(slack: FakeSlack) -> Iterator[FakeSocketMode]:
    """A fake that never pings, so that a raw client reads only what it asked for."""
    with FakeSocketMode(slack, app_token=APP_TOKEN, ping_every=None) as fake:
        yield fake


def test_handshake_fragments_ping_and_close_by_the_rfc(quiet: FakeSocketMode) -> None:
    assert accept_key(RFC_KEY) == RFC_ACCEPT
    raw = Raw(quiet.open_url())
    assert raw.status == 101 and raw.headers["sec-websocket-accept"] == RFC_ACCEPT
    assert raw.headers["upgrade"].lower() == "websocket"
    opcode, hello = raw.recv()
    assert opcode == 0x1 and json.loads(hello)["type"] == "hello"

    eid = quiet.send_envelope("slash_commands", {"command": "/keepwell", "text": "help"})
    opcode, envelope = raw.recv()
    assert opcode == 0x1 and json.loads(envelope)["envelope_id"] == eid
    ack = json.dumps({"envelope_id": eid, "payload": {"text": "ü" * 100}}).encode()
    raw.send(0x1, ack[:7], fin=False)  # a text message in three fragments, a ping between two of them
    raw.send(0x9, b"are you there")
    assert raw.recv() == (0xA, b"are you there")
    raw.send(0x0, ack[7:150], fin=False)
    raw.send(0x0, ack[150:])
    assert quiet.wait_for_ack(eid) == {"envelope_id": eid, "payload": {"text": "ü" * 100}}

    raw.send(0x8, struct.pack("!H", 1000) + b"bye")
    assert raw.recv() == (0x8, struct.pack("!H", 1000))  # the close is answered with its code
    assert raw.at_eof()
    conn = quiet.wait_connected()
    conn.wait_ended()
    assert conn.close_code == 1000 and quiet.errors == [] and quiet.rejected == []


def test_protocol_violations_are_refused_and_recorded(quiet: FakeSocketMode) -> None:
    wrong_ticket = Raw(f"ws://127.0.0.1:{quiet.port}/link/?ticket=made-up&app_id=A0FAKE")
    assert wrong_ticket.status == 401 and wrong_ticket.at_eof()
    old_version = Raw(quiet.open_url(), version="8")
    assert old_version.status == 426 and old_version.headers["sec-websocket-version"] == "13"
    bad_key = Raw(quiet.open_url(), key=base64.b64encode(b"short").decode())
    assert bad_key.status == 400
    assert [r.split(":")[0] for r in quiet.rejected] == ["401 Unauthorized", "426 Upgrade Required",
                                                         "400 Bad Request"]
    assert quiet.connections == []

    unmasked = Raw(quiet.open_url())
    assert unmasked.recv()[0] == 0x1  # hello
    unmasked.send(0x1, b'{"envelope_id": "x"}', masked=False)
    opcode, body = unmasked.recv()
    assert opcode == 0x8 and struct.unpack("!H", body[:2])[0] == 1002
    assert unmasked.at_eof()
    stray = Raw(quiet.open_url())
    stray.recv()
    stray.send(0x1, b'{"envelope_id": "never-sent"}')
    stray.send(0x0, b"orphan continuation")
    assert stray.recv()[0] == 0x8 and stray.at_eof()
    assert quiet.acks == {}
    assert len(quiet.errors) == 3
    assert "must be masked" in quiet.errors[0] and "no envelope sent" in quiet.errors[1]
    assert "continuation frame without a message" in quiet.errors[2]
    quiet.errors.clear()
