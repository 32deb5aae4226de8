"""Slack gets its acknowledgement in time whatever the work behind it costs; outbound 429s wait; the
manifest declares exactly what the app answers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path

import pytest
import yaml
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from waitress.server import create_server

from bot.config import Settings
from bot.drafts import Drafting
from bot.draftstore import DraftStore, Outcome
from bot.emails import Draft
from bot.nudges import Outgoing
from bot.services import HealthCard, Keepwell
from bot.slack import blocks as B
from bot.slack import nudge_blocks as NB
from bot.slack.app import ANSWER_WORKERS, build_app
from bot.slack.handlers import ACTIONS, APPLY_WORKERS, COMMAND, EVENTS, VIEWS
from bot.slack.http import SlackWSGI
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_requests import block_action, post, signed_headers, slash_command
from tests.slack.conftest import AS_OF, build_book
from tests.slack.payloads import action_ids

SECRET = "ack-test-secret"
ROOT = Path(__file__).resolve().parents[2]
SLOW = 10.0  # the issue's own figure: Slack gives up after 3 s


class SlowKeepwell(Keepwell):
    """The real services, with a health report that takes longer than Slack ever waits."""

    def health(self, query: str, as_of: date) -> HealthCard:
        time.sleep(SLOW)
        return super().health(query, as_of)


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, FakeSlack]]:
    folder = tmp_path_factory.mktemp("slow")
    real = build_book(folder)
    service = SlowKeepwell(real.book, real.config, drafts=real.teamwork.drafts)
    with FakeSlack() as fake:
        client = WebClient(token="xoxb-test", base_url=fake.api_url)
        client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=2))
        app = build_app(service, Settings(SLACK_SIGNING_SECRET=SECRET), client=client, today=lambda: AS_OF)
        server = create_server(SlackWSGI(app, SECRET, service.book.ping), host="127.0.0.1", port=0, threads=4)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.effective_port}/slack/events", fake
        finally:
            server.close()


def test_ack_is_immediate_while_the_service_takes_seconds(slow_server):
    url, fake = slow_server
    body = slash_command("health acme", response_url=fake.response_url("slow"))
    started = time.monotonic()
    status, _, _ = post(url, body, signed_headers(SECRET, body))
    acked = time.monotonic() - started
    assert status == 200 and acked < 1.0, f"ack took {acked:.2f}s"
    fake.wait_for("response", timeout=SLOW + 10)
    answered = time.monotonic() - started
    assert answered >= SLOW
    reply = next(r.payload for r in fake.responses if r.name == "slow")
    assert "ACME Corp" in json.dumps(reply)


def test_outbound_rate_limit_waits_for_retry_after(slow_server):
    url, fake = slow_server
    fake.rate_limit("views.open", retry_after=1)
    body = block_action("log_note", "DEMO-0001", response_url=fake.response_url("n"), trigger_id="trig-429")
    assert post(url, body, signed_headers(SECRET, body))[0] == 200
    calls = fake.wait_for("views.open", count=2, timeout=10)
    mine = [c for c in calls if c.params.get("trigger_id") == "trig-429"]
    assert len(mine) == 2 and mine[1].at - mine[0].at >= 1.0


# the manifest ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def manifest() -> dict:
    return yaml.safe_load((ROOT / "manifest.yml").read_text())


def test_manifest_declares_the_command_and_events_the_app_answers(manifest):
    commands = [c["command"] for c in manifest["features"]["slash_commands"]]
    assert commands == [COMMAND]
    assert manifest["features"]["slash_commands"][0]["should_escape"] is True  # mentions arrive as ids
    assert manifest["settings"]["event_subscriptions"]["bot_events"] == list(EVENTS)
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert manifest["settings"]["socket_mode_enabled"] is True


def test_manifest_asks_for_the_fewest_scopes_each_justified_in_the_docs(manifest):
    scopes = manifest["oauth_config"]["scopes"]["bot"]
    assert scopes == ["channels:read", "commands", "chat:write", "files:write", "users:read",
                      "users:read.email"]
    assert "user" not in manifest["oauth_config"]["scopes"]
    docs = (ROOT / "docs" / "slack.md").read_text()
    for scope in scopes:
        assert f"| `{scope}` |" in docs


def test_every_button_and_form_the_app_shows_is_one_it_answers(book):
    card = B.health_card(book.health("acme", AS_OF)).to_dict()
    risk = B.risk_list(book.accounts(AS_OF), "", 1, AS_OF).to_dict()  # 40 rows: several pages
    draft = B.draft_modal("A1", "A", ["checkin"], [("a@b.c", "A")], None).to_dict()
    note = B.note_modal("A1", "A").to_dict()
    plan = Drafting(book).plan("checkin", as_of=AS_OF, segment="mrr>=0")
    bulk = B.plan_view(plan).to_dict()
    link = "https://mail.google.com/mail/#drafts?compose=m1"
    made = B.draft_created("A", plan.sample, link, True).to_dict()
    acme = book.book.resolve("acme")
    review = Outgoing("review:qbr:1:2026-07-01", "review", "qbr", acme, "review due", AS_OF, 0)
    alert = Outgoing("alert:danger_zone:1::2026-06-30", "alert", "danger_zone", acme, "low use", None, 0)
    nudges = [NB.reminder(review, "team", None, AS_OF).to_dict(), NB.alert(alert, "team", None).to_dict()]
    shown = {a for p in (card, risk, draft, bulk, made, *nudges) for a in action_ids(p)}
    assert shown == set(ACTIONS)
    assert {draft["callback_id"], note["callback_id"]} == set(VIEWS)


def test_bolt_dispatches_every_declared_action_and_view(book):
    with FakeSlack() as fake:
        client = WebClient(token="xoxb-test", base_url=fake.api_url)
        app = build_app(book, Settings(SLACK_SIGNING_SECRET=SECRET), client=client, today=lambda: AS_OF)

        def dispatch(body: bytes) -> int:
            req = BoltRequest(body=body.decode(), headers=signed_headers(SECRET, body))  # type: ignore[arg-type]
            return app.dispatch(req).status

        for action_id in ACTIONS:
            assert dispatch(block_action(action_id, "{}", response_url=fake.response_url(action_id))) == 200
        assert dispatch(block_action("no_such_action", "x")) == 404
        answering = set(ACTIONS) - {"open_draft"}  # a link button: Slack opens the link, nothing to say
        fake.wait_for("response", count=len(answering), timeout=10)  # each answered (here: with an error)
        time.sleep(0.3)
        assert {r.name for r in fake.responses} == answering


# long work -----------------------------------------------------------------------------------------

class HeldStore:
    """The outbox, with every batch held until the test lets it through: a bulk apply that takes as long
    as Gmail's quota can make it."""

    def __init__(self, inner: DraftStore, gate: threading.Event) -> None:
        self.inner, self.gate, self.name = inner, gate, inner.name
        self.entered = threading.Semaphore(0)

    def find(self, message_id: str) -> str | None:
        return self.inner.find(message_id)

    def create_many(self, drafts: Sequence[Draft]) -> dict[str, Outcome]:
        self.entered.release()
        assert self.gate.wait(30), "the test never let the apply through"
        return self.inner.create_many(drafts)

    def link(self, location: str) -> str | None:
        return self.inner.link(location)


def test_bulk_applies_in_progress_never_hold_up_other_answers(tmp_path: Path) -> None:
    service = build_book(tmp_path)
    gate = threading.Event()
    held = HeldStore(service.teamwork.drafts, gate)
    with FakeSlack() as fake:
        client = WebClient(token="xoxb-test", base_url=fake.api_url)
        app = build_app(service, Settings(SLACK_SIGNING_SECRET=SECRET), client=client, today=lambda: AS_OF,
                        stores=lambda email: held)

        def send(body: bytes) -> None:
            request = BoltRequest(body=body.decode(), headers=signed_headers(SECRET, body))
            assert app.dispatch(request).status == 200

        try:
            # more applies at once than there are threads answering: each waits on its held store
            for n in range(ANSWER_WORKERS + 1):
                plan = Drafting(service).plan("checkin", as_of=AS_OF, segment=f"mrr>={n}")
                send(block_action("apply_plan", plan.plan_id, response_url=fake.response_url(f"apply{n}")))
            for _ in range(min(ANSWER_WORKERS + 1, APPLY_WORKERS)):
                assert held.entered.acquire(timeout=10), "an apply never started"
            send(slash_command("health acme", response_url=fake.response_url("card")))
            assert "ACME Corp" in json.dumps(fake.wait_for_response("card", timeout=10).payload)
        finally:
            gate.set()
        deadline = time.monotonic() + 30
        while not all(any(r.name == f"apply{n}" and "draft(s) created" in json.dumps(r.payload)
                          for r in fake.responses) for n in range(ANSWER_WORKERS + 1)):
            assert time.monotonic() < deadline, "an apply never finished"
            time.sleep(0.05)
