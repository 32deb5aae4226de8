"""`keepwell serve` writes one structured line per request: what it was, never what it said.

Driven at the WSGI level (signed environs straight into SlackWSGI, the real Bolt app behind it) and
once through a running `keepwell serve`, at debug level, where Bolt would otherwise log bodies.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient

from bot import logs
from bot.config import Settings
from bot.slack.app import build_app
from bot.slack.http import REJECTED, Health, SlackWSGI, request_summary
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_requests import (
    TEAM_ID,
    VERIFICATION_TOKEN,
    app_home_opened,
    block_action,
    event_headers,
    post,
    signed_headers,
    slash_command,
    url_verification,
    view_submission,
)
from tests.slack.conftest import AS_OF, build_book
from tests.slack.test_http_e2e import DAILY_JOBS_OFF, free_port

SECRET = "request-log-signing-secret-4d2c"
BOT_TOKEN = "xoxb-request-log-token-77aa"
MARKER = "USER-TEXT-5e91"  # stands for anything a person typed


def note_values(text: str) -> dict[str, Any]:
    return {"note": {"text": {"type": "plain_text_input", "value": text}},
            "sentiment": {"value": {"type": "static_select", "selected_option": {"value": "neutral"}}},
            "kind": {"value": {"type": "static_select", "selected_option": None}}}


def environ(body: bytes, headers: dict[str, str], *, path: str = "/slack/events",
            method: str = "POST") -> dict[str, Any]:
    env: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "",
                           "SERVER_PROTOCOL": "HTTP/1.1", "CONTENT_LENGTH": str(len(body)),
                           "wsgi.input": io.BytesIO(body)}
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        env[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"] = value
    return env


def call(wsgi: Any, env: dict[str, Any]) -> tuple[int, bytes]:
    got: list[str] = []
    body = b"".join(wsgi(env, lambda status, headers, *exc: got.append(status)))
    return int(got[0].split()[0]), body


class Bot:
    def __init__(self, wsgi: SlackWSGI, fake: FakeSlack) -> None:
        self.wsgi, self.fake = wsgi, fake

    def send(self, body: bytes, *, json_body: bool = False, **extra: str) -> tuple[int, bytes]:
        headers = event_headers(SECRET, body) if json_body else signed_headers(SECRET, body)
        return call(self.wsgi, environ(body, {**headers, **extra}))


@pytest.fixture(scope="module")
def bot(book: Any) -> Iterator[Bot]:
    with FakeSlack() as fake:
        client = WebClient(token=BOT_TOKEN, base_url=fake.api_url)
        app = build_app(book, Settings(SLACK_SIGNING_SECRET=SECRET), client=client, today=lambda: AS_OF)
        yield Bot(SlackWSGI(app, SECRET, book.book.ping), fake)


@pytest.fixture
def log_lines(capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """Logging as `keepwell serve` sets it up (JSON on stderr); a function returning the lines so far."""

    def read(logger: str | None = "keepwell.http") -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
        return [line for line in lines if logger is None or line["logger"] == logger]

    with logs.configured("json", "info"):
        yield read


# what a request is, from its parsed body ----------------------------------------------------------

def parsed(body: bytes, content_type: str = "application/x-www-form-urlencoded") -> dict[str, Any]:
    return BoltRequest(body=body.decode(), headers={"content-type": content_type}).body


@pytest.mark.parametrize(("body", "expected"), [
    (slash_command(f"health {MARKER}", response_url="https://hooks.example/r"),
     {"kind": "command", "type": "/keepwell"}),
    (block_action("open_card", MARKER), {"kind": "action", "type": "block_actions", "ids": ["open_card"]}),
    (view_submission("note_submit", note_values(MARKER)),
     {"kind": "view", "type": "view_submission", "ids": ["note_submit"]}),
    (app_home_opened(), {"kind": "event", "type": "app_home_opened"}),
    (url_verification(MARKER), {"kind": "url_verification"}),
], ids=["command", "action", "view", "event", "url_verification"])
def test_a_request_is_summarised_by_its_kind_type_and_ids(body, expected):
    content_type = "application/json" if body.startswith(b"{") else "application/x-www-form-urlencoded"
    assert request_summary(parsed(body, content_type)) == expected


def test_a_summary_keeps_only_what_looks_like_an_id():
    body = {"type": "block_actions", "actions": [{"action_id": "open card <!channel>"}, {"action_id": "ok_1"},
                                                  "junk", {"action_id": 7}]}
    assert request_summary(body) == {"kind": "action", "type": "block_actions", "ids": ["ok_1"]}
    assert request_summary({"type": {"nested": MARKER}}) == {"kind": "other"}
    assert request_summary({"type": "options_load", "value": MARKER}) == {"kind": "options_load"}
    assert request_summary({"type": "block_suggestion", "action_id": "pick_account", "value": MARKER}) == {
        "kind": "options", "type": "block_suggestion", "ids": ["pick_account"]}


# one line per request, through SlackWSGI ----------------------------------------------------------

def test_a_slash_command_is_one_line_with_what_it_was(bot, log_lines):
    status, _ = bot.send(slash_command(f"health acme {MARKER}", response_url=bot.fake.response_url("c1")))
    assert status == 200
    [line] = log_lines()
    assert line["level"] == "info" and line["message"] == "request"
    assert {k: line[k] for k in ("method", "path", "status", "kind", "type", "team")} == {
        "method": "POST", "path": "/slack/events", "status": 200, "kind": "command", "type": "/keepwell",
        "team": TEAM_ID}
    assert isinstance(line["duration_ms"], int | float) and 0 <= line["duration_ms"] < 5000
    assert set(line) <= {"time", "level", "logger", "message", "method", "path", "status", "duration_ms",
                         "kind", "type", "ids", "team", "retry"}
    assert line["time"].endswith("Z")


def test_buttons_modals_and_events_name_their_ids(bot, log_lines):
    bot.send(block_action("open_card", "DEMO-0001", response_url=bot.fake.response_url("a1")))
    bot.send(view_submission("note_submit", note_values(f"met them {MARKER}"), private_metadata="DEMO-0001"))
    bot.send(app_home_opened("U0123ABCD", event_id="EvLog1"), json_body=True,
             **{"X-Slack-Retry-Num": "2", "X-Slack-Retry-Reason": "http_timeout"})
    action, view, event = log_lines()
    assert (action["kind"], action["ids"], action["status"]) == ("action", ["open_card"], 200)
    assert (view["kind"], view["type"], view["ids"]) == ("view", "view_submission", ["note_submit"])
    assert (event["kind"], event["type"], event["retry"], event["team"]) == ("event", "app_home_opened", 2,
                                                                            TEAM_ID)


def test_no_token_secret_url_or_text_is_ever_logged(bot, log_lines):
    response_url = bot.fake.response_url("secret-path")
    bodies = [
        (slash_command(f"note acme {MARKER}", response_url=response_url), False),
        (slash_command(f"bogus {MARKER}", response_url=response_url), False),  # the ack echoes it
        (block_action("log_note", MARKER, response_url=response_url, trigger_id="trig-secret"), False),
        (view_submission("note_submit", note_values(MARKER), private_metadata="DEMO-0001"), False),
        (app_home_opened("U0123ABCD", event_id="EvLog2"), True),
    ]
    signatures, posted = [], len(bot.fake.calls_to("chat.postMessage"))
    for body, json_body in bodies:
        headers = event_headers(SECRET, body) if json_body else signed_headers(SECRET, body)
        signatures.append(headers["X-Slack-Signature"])
        assert call(bot.wsgi, environ(body, headers))[0] == 200
    bot.fake.wait_for("chat.postMessage", count=posted + 1, timeout=10)  # the work after the acks ran too
    time.sleep(0.5)
    everything = log_lines(logger=None)
    assert len([line for line in everything if line["logger"] == "keepwell.http"]) == len(bodies)
    text = json.dumps(everything)
    for secret in (SECRET, BOT_TOKEN, VERIFICATION_TOKEN, MARKER, "secret-path", "trig-secret", *signatures):
        assert secret not in text


def test_a_forged_request_is_one_warning_without_its_body(bot, log_lines):
    body = slash_command(f"health acme {MARKER}", response_url=bot.fake.response_url("forged"))
    status, _ = call(bot.wsgi, environ(body, {**signed_headers(SECRET, body), "X-Slack-Signature": "v0=00"}))
    assert status == 401
    [line] = log_lines()
    assert (line["level"], line["message"], line["status"]) == ("warning", REJECTED, 401)
    assert "kind" not in line and "team" not in line and MARKER not in json.dumps(line)


def test_other_paths_are_logged_too(bot, log_lines):
    assert call(bot.wsgi, environ(b"", {}, path="/wp-login.php", method="GET"))[0] == 404
    assert call(bot.wsgi, environ(b"", {}, method="GET"))[0] == 405
    assert [(line["path"], line["status"]) for line in log_lines()] == [("/wp-login.php", 404),
                                                                          ("/slack/events", 405)]


def test_an_exception_is_a_500_line_at_error_and_still_raises(log_lines):
    class Broken:
        def dispatch(self, request: Any) -> Any:
            raise RuntimeError("boom")

    wsgi = SlackWSGI(Broken(), SECRET, lambda: True)  # type: ignore[arg-type]
    body = slash_command("health acme", response_url="https://hooks.example/r")
    with pytest.raises(RuntimeError):
        call(wsgi, environ(body, signed_headers(SECRET, body)))
    [line] = log_lines()
    assert (line["level"], line["status"], line["kind"]) == ("error", 500, "command")


# /healthz ----------------------------------------------------------------------------------------

def test_healthz_answers_503_while_the_database_is_unreachable_and_says_so_once(log_lines):
    up = [True]
    wsgi = SlackWSGI(None, SECRET, lambda: up[0])  # type: ignore[arg-type]
    health = environ(b"", {}, path="/healthz", method="GET")
    assert call(wsgi, health) == (200, b'{"ok": true, "database": "reachable"}')
    assert log_lines() == []  # load balancers ask every few seconds: a 200 is a debug line
    up[0] = False
    assert call(wsgi, environ(b"", {}, path="/healthz", method="GET")) == (
        503, b'{"ok": false, "database": "unreachable"}')
    [line] = log_lines()
    assert (line["level"], line["path"], line["status"]) == ("warning", "/healthz", 503)


def test_a_ping_that_raises_is_unreachable():
    def ping() -> bool:
        raise OSError("no route to host")

    assert call(SlackWSGI(None, SECRET, ping), environ(b"", {}, path="/healthz", method="GET"))[0] == 503  # type: ignore[arg-type]


def test_a_hanging_ping_ties_up_one_thread_not_all():
    release, entered = threading.Event(), threading.Event()
    answers = iter([True])

    def ping() -> bool:
        first = next(answers, None)
        if first is not None:
            return first
        entered.set()
        release.wait(10)
        return False

    health = Health(ping, patience=1.0)
    assert health() is True
    hung = threading.Thread(target=health)
    hung.start()
    assert entered.wait(5)
    started = time.monotonic()
    assert health() is True  # meanwhile: the last answer, at once
    time.sleep(1.1)
    assert health() is False  # the ping has taken too long: unreachable
    assert time.monotonic() - started < 3
    release.set()
    hung.join(5)
    assert health.last is False


# through a running `keepwell serve` --------------------------------------------------------------

def test_keepwell_serve_logs_json_lines_and_no_body_even_at_debug(tmp_path):
    build_book(tmp_path).book.engine.dispose()
    (tmp_path / "keepwell.toml").write_text(DAILY_JOBS_OFF)
    port = free_port()
    with FakeSlack() as fake:
        env = {**os.environ, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SECRET,
               "SLACK_API_URL": fake.api_url, "KEEPWELL_DATABASE_URL": f"sqlite:///{tmp_path / 'book.db'}",
               "KEEPWELL_OUTBOX": str(tmp_path / "outbox"), "KEEPWELL_LOG_LEVEL": "debug"}
        for name in ("KEEPWELL_CONFIG", "KEEPWELL_LOG_FORMAT"):
            env.pop(name, None)
        proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", str(port)], env=env,
                                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/healthz", timeout=1) as answer:
                        assert answer.status == 200
                        break
                except OSError:
                    assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
                    time.sleep(0.1)
            response_url = fake.response_url("serve-secret-path")
            for text in (f"health acme {MARKER}", f"bogus {MARKER}"):
                body = slash_command(text, response_url=response_url)
                assert post(f"{base}/slack/events", body, signed_headers(SECRET, body))[0] == 200
            fake.wait_for("response", timeout=10)
            time.sleep(0.5)
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=10)
    lines = [json.loads(line) for line in err.splitlines()]  # every line is JSON
    requests = [line for line in lines if line["logger"] == "keepwell.http"]
    assert [(r["path"], r["status"], r.get("kind")) for r in requests][-2:] == [
        ("/slack/events", 200, "command"), ("/slack/events", 200, "command")]
    assert any(r["path"] == "/healthz" and r["level"] == "debug" for r in requests)  # debug is on
    for secret in (SECRET, BOT_TOKEN, VERIFICATION_TOKEN, MARKER, "serve-secret-path"):
        assert secret not in err


# Bolt and the word "payload" ----------------------------------------------------------------------

def test_a_command_whose_text_says_payload_reaches_the_app(bot):
    """Bolt took any form body containing "payload" for an interactive payload, and so ran
    `/keepwell health payload-co` as an empty request; SlackWSGI hands it over intact (and signed)."""
    reply_to = bot.fake.response_url("said-payload")
    status, _ = bot.send(slash_command("health payload-co", response_url=reply_to))
    assert status == 200
    deadline = time.monotonic() + 10
    while not (answers := [r for r in bot.fake.responses if r.name == "said-payload"]):
        assert time.monotonic() < deadline, "the command never reached the app"
        time.sleep(0.02)
    assert "payload-co" in json.dumps(answers[0].payload)


R = "https://hooks.example/r"


@pytest.mark.parametrize(("body", "encoded"), [
    (slash_command("note ACME the payload failed, payload=1 & more", response_url=R), True),
    (slash_command("health acme", response_url=R), False),
    (block_action("open_card", "payload"), False),  # a real interactive payload: Bolt reads it right
    (url_verification("payload"), False),  # JSON
], ids=["command", "no-mention", "interactive", "json"])
def test_only_a_mention_of_payload_in_a_form_is_encoded_and_the_form_says_the_same(body, encoded):
    from urllib.parse import parse_qsl

    from bot.slack.http import without_payload_word

    text = body.decode()
    safe = without_payload_word(text)
    assert (safe != text) is encoded
    if encoded:
        assert "payload" not in safe
        assert parse_qsl(safe, keep_blank_values=True) == parse_qsl(text, keep_blank_values=True)
        assert parsed(safe.encode())["text"] == "note ACME the payload failed, payload=1 & more"
