"""`keepwell run`: the Slack app over Socket Mode, end to end.

Wired as `keepwell run` wires it (`build_app`, then `LoggedSocketModeHandler(app, app_token,
web_client=app.client)`), the real slack_sdk Socket Mode client connects to a fake Socket Mode server
(tests/fakes/socket_mode.py) that delivers what Slack would; replies go to the fake Web API.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from slack_sdk import WebClient

from bot import logs
from bot.config import Settings
from bot.services import Keepwell
from bot.slack.app import build_app
from bot.slack.socket import LoggedSocketModeHandler
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_requests import (
    VERIFICATION_TOKEN,
    app_home_opened,
    block_action,
    slash_command,
    view_submission,
)
from tests.fakes.socket_mode import FakeSocketMode, socket_payload
from tests.slack.conftest import AS_OF

SECRET = "socket-mode-signing-secret-9b1e"
BOT_TOKEN = "xoxb-socket-mode-token-31fd"
APP_TOKEN = "xapp-1-socket-mode-token-c07a"
MARKER = "USER-TEXT-8c3f"  # stands for anything a person typed
WAIT = 10.0  # generous: a busy 2-core CI machine
LINE_FIELDS = {"time", "level", "logger", "message", "method", "path", "status", "duration_ms", "kind",
               "type", "ids", "team", "retry"}


@dataclass
class Bot:
    fake: FakeSlack
    socket_mode: FakeSocketMode

    def send(self, type: str, body: bytes, **envelope: Any) -> str:
        """Deliver a request built by tests.fakes.slack_requests over the socket; its envelope id."""
        return self.socket_mode.send_envelope(type, socket_payload(body), **envelope)

    def ack(self, envelope_id: str) -> dict[str, Any]:
        return self.socket_mode.wait_for_ack(envelope_id, timeout=WAIT)


@contextmanager
def running(book: Keepwell) -> Iterator[Bot]:
    """The bot as `keepwell run` starts it, connected; closed on the way out (before the fakes stop)."""
    with FakeSlack() as fake, FakeSocketMode(fake, app_token=APP_TOKEN) as socket_mode:
        client = WebClient(token=BOT_TOKEN, base_url=fake.api_url)
        app = build_app(book, Settings(SLACK_SIGNING_SECRET=SECRET), client=client, today=lambda: AS_OF)
        handler = LoggedSocketModeHandler(app, APP_TOKEN, web_client=app.client)
        handler.connect()
        try:
            socket_mode.wait_connected(timeout=WAIT)
            yield Bot(fake, socket_mode)
        finally:
            handler.close()
    assert fake.errors == [] and socket_mode.errors == [] and socket_mode.rejected == []


@pytest.fixture(scope="module")
def bot(book: Keepwell) -> Iterator[Bot]:
    with running(book) as connected:
        yield connected


class Lines:
    """Logging as `keepwell run` sets it up (JSON on stderr), read back as it arrives."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.text = ""
        self.lines: list[dict[str, Any]] = []

    def _read(self) -> None:
        self.text += self.capsys.readouterr().err
        whole, _, self.text = self.text.rpartition("\n")  # a line still being written waits
        self.lines += [json.loads(line) for line in whole.splitlines() if line.startswith("{")]

    def of(self, logger: str | None = "keepwell.socket") -> list[dict[str, Any]]:
        self._read()
        return [line for line in self.lines if logger is None or line["logger"] == logger]

    def wait(self, count: int, logger: str = "keepwell.socket") -> list[dict[str, Any]]:
        """The first ``count`` lines of ``logger``, once written (a request's line follows its ack)."""
        deadline = time.monotonic() + WAIT
        while len(got := self.of(logger)) < count:
            assert time.monotonic() < deadline, f"{len(got)} {logger} lines after {WAIT:g} s, wanted {count}"
            time.sleep(0.01)
        return got


@pytest.fixture
def lines(capsys: pytest.CaptureFixture[str]) -> Iterator[Lines]:
    with logs.configured("json", "info"):
        yield Lines(capsys)


# what a user sees ---------------------------------------------------------------------------------

def test_a_slash_command_is_acknowledged_over_the_socket_then_answered_at_its_response_url(bot: Bot) -> None:
    started = time.monotonic()
    body = slash_command("health acme", response_url=bot.fake.response_url("health"))
    eid = bot.send("slash_commands", body)
    ack = bot.ack(eid)
    acked = time.monotonic() - started

    assert ack == {"envelope_id": eid}  # an empty acknowledgement: the card follows
    assert acked < 3.0, f"ack took {acked:.2f} s; Slack gives up after 3 s"
    reply = bot.fake.wait_for_response("health", timeout=WAIT).payload
    assert reply["response_type"] == "ephemeral"
    assert "ACME Corp" in json.dumps(reply["blocks"])


def test_a_mistyped_command_is_answered_in_the_acknowledgement_itself(bot: Bot) -> None:
    eid = bot.send("slash_commands", slash_command("bogus", response_url=bot.fake.response_url("bogus")))
    ack = bot.ack(eid)

    assert ack["envelope_id"] == eid
    assert ack["payload"]["response_type"] == "ephemeral"
    assert "unknown command 'bogus'" in json.dumps(ack["payload"])
    assert "/keepwell health ACCOUNT" in json.dumps(ack["payload"])  # and the help that says what would work


def test_a_button_click_is_acknowledged_and_answered(bot: Bot) -> None:
    click = block_action("open_card", "DEMO-0001", response_url=bot.fake.response_url("card"))
    eid = bot.send("interactive", click)

    assert bot.ack(eid) == {"envelope_id": eid}
    reply = bot.fake.wait_for_response("card", timeout=WAIT).payload
    assert "ACME Corp" in json.dumps(reply["blocks"])


def test_opening_app_home_publishes_the_home_tab(bot: Bot) -> None:
    published = len(bot.fake.calls_to("views.publish"))
    eid = bot.send("events_api", app_home_opened("U0123ABCD", event_id="EvSocketHome1"))

    assert bot.ack(eid) == {"envelope_id": eid}
    publish = bot.fake.wait_for("views.publish", count=published + 1, timeout=WAIT)[published]
    assert publish.params["user_id"] == "U0123ABCD" and publish.params["view"]["type"] == "home"


def test_a_command_whose_text_says_payload_reaches_the_app(bot: Bot) -> None:
    """Over HTTP, Bolt took a form body mentioning "payload" for an interaction (see SlackWSGI); an
    envelope's payload is a JSON object, so the command arrives as it was typed."""
    bot.ack(bot.send("slash_commands", slash_command("health payload-co",
                                                     response_url=bot.fake.response_url("said-payload"))))
    reply = bot.fake.wait_for_response("said-payload", timeout=WAIT).payload
    assert "payload-co" in json.dumps(reply)


# what is logged -----------------------------------------------------------------------------------

def test_each_request_is_one_line_saying_what_it_was(bot: Bot, lines: Lines) -> None:
    # Its requests come from a team of their own, so that a line another test's request writes now (a
    # line follows its acknowledgement, and that test may be done as soon as it has the acknowledgement)
    # is not counted as one of these.
    team = "T0LOGLINES"

    def ours() -> list[dict[str, Any]]:
        return [line for line in lines.of() if line.get("team") == team]

    def line_of(type: str, body: bytes, acked: bool = True, **envelope: Any) -> dict[str, Any]:
        before = len(ours())
        eid = bot.send(type, body, **envelope)
        if acked:
            bot.ack(eid)
        deadline = time.monotonic() + WAIT  # written once the ack is sent
        while len(got := ours()) <= before:
            assert time.monotonic() < deadline, f"no line for the request after {WAIT:g} s"
            time.sleep(0.01)
        return got[before]

    command = line_of("slash_commands", slash_command(f"health acme {MARKER}", team_id=team,
                                                      response_url=bot.fake.response_url("log-c1")))
    action = line_of("interactive", block_action("open_card", "DEMO-0001", team_id=team,
                                                 response_url=bot.fake.response_url("log-a1")))
    retried = line_of("events_api", app_home_opened("U0123ABCD", event_id="EvSocketLog1", team_id=team),
                      retry_attempt=2, retry_reason="timeout")
    fresh = line_of("events_api", app_home_opened("U0123ABCD", event_id="EvSocketLog2", team_id=team))
    unknown = line_of("interactive", block_action("no_such_button", "x", team_id=team), acked=False)  # 404

    assert command["level"] == "info" and command["message"] == "request"
    assert {k: command[k] for k in ("method", "path", "status", "kind", "type")} == {
        "method": "SOCKET", "path": "slash_commands", "status": 200, "kind": "command", "type": "/keepwell"}
    for line in (command, action, retried, fresh, unknown):
        assert set(line) <= LINE_FIELDS and line["method"] == "SOCKET"
        assert isinstance(line["duration_ms"], int | float) and 0 <= line["duration_ms"] < 5000
    assert (action["path"], action["status"], action["kind"], action["type"], action["ids"]) == (
        "interactive", 200, "action", "block_actions", ["open_card"])
    assert (retried["path"], retried["kind"], retried["type"], retried["retry"]) == (
        "events_api", "event", "app_home_opened", 2)
    assert fresh["type"] == "app_home_opened" and "retry" not in fresh  # Slack's retry_attempt 0: no retry
    assert (unknown["status"], unknown["level"], unknown["ids"]) == (404, "info", ["no_such_button"])
    bot.fake.wait_for_response("log-c1", timeout=WAIT)
    bot.fake.wait_for_response("log-a1", timeout=WAIT)  # the answers came, and logged no more requests
    assert len(ours()) == 5


def test_no_token_ticket_url_or_text_is_ever_logged_even_at_debug(
    book: Keepwell, capsys: pytest.CaptureFixture[str]
) -> None:
    response_url_name, trigger = "socket-secret-path", "socket-trig-secret"
    note = {"note": {"text": {"type": "plain_text_input", "value": f"met them {MARKER}"}},
            "sentiment": {"value": {"type": "static_select", "selected_option": {"value": "neutral"}}},
            "kind": {"value": {"type": "static_select", "selected_option": None}}}
    with logs.configured("json", "debug"):
        seen = Lines(capsys)
        with running(book) as live:
            url = live.fake.response_url(response_url_name)

            def command(text: str) -> tuple[str, bytes]:
                return "slash_commands", slash_command(text, response_url=url, trigger_id=trigger)

            requests = [
                command(f"health acme {MARKER}"),
                command(f"bogus {MARKER}"),  # the ack echoes it
                command(f"note acme {MARKER}"),
                ("interactive", block_action("log_note", "DEMO-0001", response_url=url, trigger_id=trigger)),
                ("interactive", view_submission("note_submit", note, private_metadata="DEMO-0001",
                                                view_id="VSOCKETNOTE")),
                ("events_api", app_home_opened("U0123ABCD", event_id="EvSocketSecret")),
            ]
            for type, body in requests:
                live.ack(live.send(type, body))
            # the work after the acknowledgements ran too
            live.fake.wait_for_response(response_url_name, timeout=WAIT)
            live.fake.wait_for("views.open", count=2, timeout=WAIT)
            live.fake.wait_for("chat.postMessage", timeout=WAIT)  # "Note logged on ACME Corp."
            live.fake.wait_for("views.publish", timeout=WAIT)
            seen.wait(len(requests))
            tickets = [conn.query["ticket"] for conn in live.socket_mode.connections]
        everything = seen.of(logger=None)
    assert len([line for line in everything if line["logger"] == "keepwell.socket"]) == len(requests)
    assert any(line["logger"] == "keepwell.slack.bolt" for line in everything)  # the client's own lines
    text = json.dumps(everything)
    for secret in (SECRET, BOT_TOKEN, APP_TOKEN, VERIFICATION_TOKEN, MARKER, response_url_name, trigger,
                   "ticket=", *tickets):
        assert secret not in text
