"""`keepwell serve` as a subprocess, driven like Slack drives it: signed requests in, and the real
slack_sdk client answering to a fake Web API on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.db.models import Review, table_of
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_requests import (
    app_home_opened,
    block_action,
    event_headers,
    post,
    signed_headers,
    slash_command,
    view_submission,
    wait_until_serving,
)
from tests.slack.conftest import build_book

SECRET = "e2e-signing-secret-0123456789abcdef"
MARKER = "BODY-MARKER-7f3a"


@dataclass
class Server:
    url: str
    fake: FakeSlack
    log: Path
    book: object


DAILY_JOBS_OFF = "[reviews]\nenabled = false\n[alerts]\nenabled = false\n[surveys]\nenabled = false\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("serve")
    book = build_book(folder)
    port = free_port()
    log = folder / "serve.log"
    with FakeSlack() as fake:
        env = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-e2e-token", "SLACK_SIGNING_SECRET": SECRET,
               "SLACK_API_URL": fake.api_url, "KEEPWELL_DATABASE_URL": f"sqlite:///{folder / 'book.db'}",
               "KEEPWELL_OUTBOX": str(folder / "outbox")}
        env.pop("KEEPWELL_CONFIG", None)  # ./keepwell.toml: only the Slack app, no daily jobs racing it
        (folder / "keepwell.toml").write_text(DAILY_JOBS_OFF)
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bot.cli", "serve", "--port", str(port)],
                env=env, cwd=folder, stdout=sink, stderr=subprocess.STDOUT,
            )
            base = f"http://127.0.0.1:{port}"
            try:
                wait_until_serving(base, proc, log)
                yield Server(f"{base}/slack/events", fake, log, book)
            finally:
                proc.terminate()
                proc.wait(timeout=10)


def send(server: Server, body: bytes, *, json_body: bool = False, **headers: str) -> tuple[int, bytes, float]:
    head = event_headers(SECRET, body) if json_body else signed_headers(SECRET, body)
    head.update(headers)
    started = time.monotonic()
    status, _, answer = post(server.url, body, head)
    return status, answer, time.monotonic() - started


def responses(server: Server, name: str, count: int = 1) -> list[dict]:
    server.fake.wait_for("response", count=count, timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        got = [r.payload for r in server.fake.responses if r.name == name]
        if len(got) >= count:
            return got
        time.sleep(0.05)
    raise AssertionError(f"no response to {name}: {[r.name for r in server.fake.responses]}")


def test_healthz(server):
    base = server.url.rsplit("/slack", 1)[0]
    with urllib.request.urlopen(f"{base}/healthz", timeout=2) as r:
        assert r.status == 200 and json.load(r)["ok"] is True


def test_slash_command_acks_at_once_then_answers_through_response_url(server):
    body = slash_command("health acme", response_url=server.fake.response_url("h1"))
    status, answer, took = send(server, body)
    assert status == 200 and took < 1.0
    assert answer in (b"", b"{}") or json.loads(answer) == {}
    [reply] = responses(server, "h1")
    assert reply["response_type"] == "ephemeral"
    assert "ACME Corp" in json.dumps(reply["blocks"])


def test_bad_input_is_answered_in_the_ack(server):
    status, answer, _ = send(server, slash_command("bogus", response_url=server.fake.response_url("b1")))
    assert status == 200
    data = json.loads(answer)
    assert data["response_type"] == "ephemeral" and "unknown command 'bogus'" in json.dumps(data)
    assert "/keepwell health ACCOUNT" in json.dumps(data)  # and the help that says what would work
    status, answer, _ = send(server, slash_command("x" * 10_000, response_url=server.fake.response_url("b2")))
    assert status == 200 and "a command takes at most" in answer.decode()


def test_unknown_account_gets_did_you_mean(server):
    send(server, slash_command("health Acme Crop", response_url=server.fake.response_url("u1")))
    [reply] = responses(server, "u1")
    assert "did you mean" in json.dumps(reply) and "ACME Corp" in json.dumps(reply)


def test_card_button_and_paging(server):
    send(server, block_action("open_card", "DEMO-0001", response_url=server.fake.response_url("c1")))
    assert "ACME Corp" in json.dumps(responses(server, "c1")[0])
    send(server, block_action("risk_page", json.dumps({"expr": "", "page": 2}),
                              response_url=server.fake.response_url("p1")))
    page = responses(server, "p1")[0]
    assert page.get("replace_original") is True and "At risk on" in json.dumps(page)


def test_review_done_button_records_once_however_often_clicked(server):
    engine = server.book.book.engine  # type: ignore[attr-defined]
    reviews = table_of(Review)

    def count() -> int:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(reviews)).scalar() or 0)

    before = count()
    body = block_action("review_done", "DEMO-0002", response_url=server.fake.response_url("r1"))
    send(server, body)
    send(server, body)  # the same click delivered twice
    assert "Review recorded as done" in json.dumps(responses(server, "r1")[0])
    time.sleep(0.5)
    assert count() == before + 1
    assert len([r for r in server.fake.responses if r.name == "r1"]) == 1


def test_note_modal_submission_logs_a_touch_and_confirms_by_dm(server):
    values = {"note": {"text": {"type": "plain_text_input", "value": f"QBR booked {MARKER}"}},
              "sentiment": {"value": {"type": "static_select", "selected_option": {"value": "positive"}}},
              "kind": {"value": {"type": "static_select", "selected_option": None}}}
    status, _, took = send(server, view_submission("note_submit", values, private_metadata="DEMO-0001",
                                                   view_id="VNOTE1"))
    assert status == 200 and took < 1.0
    calls = server.fake.wait_for("chat.postMessage", timeout=10)
    assert any("Note logged on ACME Corp" in json.dumps(c.params) for c in calls)
    touch = server.book.book.latest_touch(1, date.today() + timedelta(days=1))  # type: ignore[attr-defined]
    assert touch is not None and MARKER in touch["note"] and touch["sentiment"] == "positive"


def test_empty_note_is_refused_inside_the_modal(server):
    values = {"note": {"text": {"type": "plain_text_input", "value": "   "}}}
    status, answer, _ = send(server, view_submission("note_submit", values, private_metadata="DEMO-0001"))
    assert status == 200
    assert json.loads(answer) == {"response_action": "errors", "errors": {"note": "Write something first."}}


def test_draft_button_opens_a_modal_with_a_preview(server):
    send(server, block_action("draft_checkin", "DEMO-0001", response_url=server.fake.response_url("d1"),
                              trigger_id="trig-d1"))
    calls = server.fake.wait_for("views.open", timeout=10)
    view = next(c.params["view"] for c in calls if c.params.get("trigger_id") == "trig-d1")
    assert view["callback_id"] == "draft_submit" and "Checking in on ACME Corp" in json.dumps(view)


def test_app_home_is_published_once_per_event_even_when_retried(server):
    body = app_home_opened("U0123ABCD", event_id="EvHome1")
    status, _, took = send(server, body, json_body=True)
    assert status == 200 and took < 1.0
    server.fake.wait_for("views.publish", timeout=10)
    send(server, body, json_body=True, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    time.sleep(0.7)
    published = [c for c in server.fake.calls_to("views.publish") if c.params.get("user_id") == "U0123ABCD"]
    assert len(published) == 1
    assert published[0].params["view"]["type"] == "home"
    assert len(published[0].params["view"]["blocks"]) <= 100


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Slack-Signature": "v0=" + "0" * 64},  # forged
        {"X-Slack-Request-Timestamp": str(int(time.time()) - 400)},  # stale (re-signed below)
        {"X-Slack-Request-Timestamp": "not-a-number"},  # malformed
        {"X-Slack-Signature": "", "X-Slack-Request-Timestamp": ""},  # missing
    ],
    ids=["forged", "stale", "malformed", "missing"],
)
def test_bad_signatures_get_401_and_the_body_is_not_logged(server, headers):
    body = slash_command(f"health acme {MARKER}", response_url=server.fake.response_url("sig"))
    head = signed_headers(SECRET, body)
    if "X-Slack-Request-Timestamp" in headers and headers["X-Slack-Request-Timestamp"].isdigit():
        head = signed_headers(SECRET, body, timestamp=int(headers["X-Slack-Request-Timestamp"]))
    else:
        head.update(headers)
    status, _, answer = post(server.url, body, head)
    assert status == 401 and json.loads(answer) == {"error": "invalid request"}
    time.sleep(0.2)
    assert MARKER not in server.log.read_text(errors="replace")
    assert not [r for r in server.fake.responses if r.name == "sig"]


def test_bulk_draft_shows_the_plan_then_creates_on_the_button(server):
    send(server, slash_command("draft checkin tier:enterprise", response_url=server.fake.response_url("b")))
    [plan] = responses(server, "b")
    buttons = [e for b in plan["blocks"] if b["type"] == "actions" for e in b["elements"]]
    [create] = [b for b in buttons if b["action_id"] == "apply_plan"]
    count = int(create["text"]["text"].split()[1])
    assert count >= 1 and "skipped" in json.dumps(plan)
    outbox = server.log.parent / "outbox"
    before = len(list(outbox.glob("*.eml"))) if outbox.exists() else 0
    body = block_action("apply_plan", create["value"], response_url=server.fake.response_url("apply"))
    send(server, body)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done = [r.payload for r in server.fake.responses if r.name == "apply"
                and "draft(s) created" in json.dumps(r.payload)]
        if done:
            break
        time.sleep(0.1)
    assert done and all(r.get("replace_original") for r in
                        (x.payload for x in server.fake.responses if x.name == "apply"))
    assert f"{count} draft(s) created" in json.dumps(done[0])
    assert len(list(outbox.glob("*.eml"))) == before + count
    send(server, block_action("apply_plan", create["value"], response_url=server.fake.response_url("again")))
    [again] = responses(server, "again")
    assert "already being created" in json.dumps(again)
    assert len(list(outbox.glob("*.eml"))) == before + count
