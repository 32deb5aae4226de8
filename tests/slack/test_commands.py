"""/keepwell parsing (instant, before the ack) and execution over a real book, and the console."""

from __future__ import annotations

import io
import json
from datetime import date

import pytest

from bot.errors import BadInput
from bot.slack.commands import Actor, Command, Modal, Usage, execute, parse, window
from bot.slack.console import answer, render_blocks, repl
from tests.slack.conftest import AS_OF


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Command("help")),
        ("help", Command("help")),
        ("health ACME Corp", Command("health", ("ACME", "Corp"))),
        ('health "ACME Corp"', Command("health", ("ACME Corp",))),
        ("HEALTH acme", Command("health", ("acme",))),
        ("risk", Command("risk")),
        ("risk tier:enterprise health<60", Command("risk", ("tier:enterprise", "health<60"))),
        ("retention last-quarter", Command("retention", ("last-quarter",))),
        ("reviews", Command("reviews")),
        ("draft checkin ACME", Command("draft", ("checkin", "ACME"))),
        ("note ACME call went well", Command("note", ("ACME", "call", "went", "well"))),
        ("team ACME", Command("team", ("ACME",))),
        ("team ACME Corp add <@U0123ABCD|ana> CS",
         Command("team_add", ("ACME", "Corp"), {"member": "U0123ABCD", "function": "cs"})),
        ("review done ACME", Command("review_done", ("ACME",))),
        ("health it's", Command("health", ("it's",))),
    ],
)
def test_parse(text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message", "usage"),
    [
        ("bogus", "unknown command 'bogus'", "/keepwell help"),
        ("health", "health needs an account", "/keepwell health ACCOUNT"),
        ("draft ACME", "draft needs a template and an account", "/keepwell draft"),
        ("note ACME", "note needs an account and some text", "/keepwell note"),
        ("review ACME", "say `review done ACCOUNT`", "review done"),
        ("x" * 10_000, "that is 10,000 characters; a command takes at most 2,000", "/keepwell help"),
    ],
)
def test_parse_refuses_with_what_would_work(text, message, usage):
    with pytest.raises(Usage) as caught:
        parse(text)
    assert message in caught.value.message
    assert usage in caught.value.usage


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), (date(2025, 7, 1), AS_OF)),
        (("last-month",), (date(2026, 5, 1), date(2026, 5, 31))),
        (("last-quarter",), (date(2026, 1, 1), date(2026, 3, 31))),
        (("2026-01-01", "2026-03-31"), (date(2026, 1, 1), date(2026, 3, 31))),
    ],
)
def test_retention_window(args, expected):
    assert window(args, AS_OF) == expected


def test_retention_window_refuses_nonsense():
    with pytest.raises(Usage, match="FROM TO"):
        window(("yesterday",), AS_OF)


def run(book, text: str, user: str = "U0123ABCD", ref: str = "r1"):
    return execute(book, parse(text), Actor(user, ref), AS_OF)


def test_health_card_from_a_fuzzy_name(book):
    reply = run(book, "health acme")
    assert not isinstance(reply, Modal)
    assert "ACME Corp" in json.dumps(reply.to_dict())


def test_unknown_account_says_did_you_mean(book):
    with pytest.raises(BadInput, match="did you mean 'ACME Corp'"):
        run(book, "health Acme Crop")


def test_risk_pages_and_retention_and_reviews(book):
    risk = run(book, "risk")
    assert "At risk on 2026-06-30" in json.dumps(risk.to_dict())
    retention = json.dumps(run(book, "retention last-quarter").to_dict())
    assert "at start" in retention and "new" in retention and "churned" in retention and "NRR" in retention
    assert "Coming due" in json.dumps(run(book, "reviews").to_dict())
    with pytest.raises(BadInput, match="unknown segment term"):
        run(book, "risk colour:blue")
    with pytest.raises(BadInput) as refused:  # in Slack's words, not the command line's
        run(book, "retention 2026-05-01 2026-01-01")
    assert str(refused.value) == (
        "the window ends 2026-01-01, before it starts 2026-05-01: give the earlier day first")


def test_note_and_draft_open_modals(book):
    note = run(book, "note ACME Corp call went well")
    assert isinstance(note, Modal)
    view = note.view.to_dict()
    assert view["callback_id"] == "note_submit" and view["blocks"][1]["element"]["initial_value"] == (
        "call went well")
    draft = run(book, "draft checkin acme")
    assert isinstance(draft, Modal) and draft.view.to_dict()["callback_id"] == "draft_submit"
    assert "Checking in on ACME Corp" in json.dumps(draft.view.to_dict())
    with pytest.raises(BadInput, match="no template 'poem'"):
        run(book, "draft poem acme")


def test_review_done_is_recorded_once_per_request(book):
    first = json.dumps(run(book, "review done acme", ref="cmd:T1").to_dict())
    again = json.dumps(run(book, "review done acme", ref="cmd:T1").to_dict())
    assert "Review recorded as done for ACME Corp" in first
    assert "already recorded" in again
    assert book.journal.last_review(book.book.resolve("acme").pk) == AS_OF


def test_team_add_records_the_author_and_admins_restrict_it(book, tmp_path):
    reply = run(book, "team ACME add <@U0NEW1234|new> marketing", user="U0123ABCD")
    assert "&lt;@U0NEW1234&gt;" not in json.dumps(reply.to_dict())  # a mention, not escaped text
    assert ("U0NEW1234", "marketing") in book.book.team(book.book.resolve("acme").pk)
    with pytest.raises(BadInput, match="neither a Slack user id"):
        run(book, "team ACME add nobody cs")
    with pytest.raises(BadInput, match="is not one of"):
        run(book, "team ACME add <@U0NEW1234> wizard")


def test_console_answers_like_slack(book):
    out = answer(book, "/keepwell health acme", "U0123ABCD", AS_OF)
    assert out.startswith("ACME Corp\n═") and "[Draft check-in]" in out
    assert "unknown command 'nope'" in answer(book, "/keepwell nope", "U0123ABCD", AS_OF)
    assert "did you mean" in answer(book, "health Acme Crop", "U0123ABCD", AS_OF)
    logged = answer(book, "note ACME Corp renewal call booked", "U0123ABCD", AS_OF)
    assert logged == "Note logged on ACME Corp."
    touch = book.book.latest_touch(book.book.resolve("acme").pk, AS_OF)
    assert touch is not None and touch["note"] == "renewal call booked" and touch["author"] == "U0123ABCD"


def test_console_drafts_to_the_outbox(book):
    out = answer(book, "draft checkin acme", "U0123ABCD", AS_OF)
    assert "Draft created" in out or "already exists" in out
    assert "review it and send it yourself" in out
    plan = answer(book, "draft checkin band:at_risk", "U0123ABCD", AS_OF)  # a segment: the plan, as in Slack
    assert "draft(s) with template checkin for band:at_risk" in plan and "plan " in plan


def test_console_repl_reads_until_end_of_input(book):
    stdout = io.StringIO()
    repl(book, "U0123ABCD", AS_OF, io.StringIO("help\n\nhealth acme\n"), stdout, prompt=False)
    text = stdout.getvalue()
    assert "/keepwell health ACCOUNT" in text and "ACME Corp" in text


def test_render_blocks_unescapes_for_the_terminal():
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*A &amp; B* &lt;x&gt; <@U1>"}}]
    assert render_blocks(blocks) == "A & B <x> @U1"
