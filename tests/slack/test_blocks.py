"""Every block builder through to_dict(): what Slack would receive, escaped and within limits."""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from decimal import Decimal

import pytest

from bot.core.model import Account, Driver, HealthScore
from bot.emails import Draft
from bot.services import DueItem, HealthCard
from bot.slack import blocks as B
from bot.slack.mrkdwn import clip, esc, mention
from bot.store import Scored
from tests.slack.conftest import AS_OF
from tests.slack.payloads import texts

EVIL = ["<!channel>", "<https://evil.example|click here>", "<@U0ADMIN>", "A & B <script>"]


def scored(name: str = "ACME Corp", score: int = 35, drivers: int = 3, **over: object) -> Scored:
    account = Account(pk=1, account_id="A1", name=name, start_date=date(2024, 1, 1), mrr=Decimal("12400"),
                      renewal_date=date(2026, 8, 1), owner_email="maya@example.com")
    health = HealthScore(
        account_id="A1", name=name, score=score, band="at_risk", danger_zone=True, forgotten_zone=False,
        stickiness=0.2, engagement=4.8, previous_score=40,
        drivers=tuple(Driver(f"f{i}", i, -float(i), f"reason {i} for {name}") for i in range(drivers)),
    )
    return Scored(dataclasses.replace(account, **over), health)  # type: ignore[arg-type]


def card(name: str = "ACME Corp", note: str = "went well") -> HealthCard:
    return HealthCard(scored(name), [("U0123ABCD", "cs"), ("zoe@example.com", "exec")],
                      {"day": date(2026, 6, 1), "team": "cs", "channel": "call", "note": note}, AS_OF)


def test_health_card_shows_what_a_csm_needs():
    data = B.health_card(card()).to_dict()
    joined = "\n".join(texts(data))
    assert data["response_type"] == "ephemeral"
    assert "Health 35" in joined and "at risk" in joined and "▼ 5 since last score" in joined
    assert "danger zone" in joined and "12,400" in joined and "2026-08-01" in joined
    assert "<@U0123ABCD> (cs)" in joined and "zoe@example.com (exec)" in joined
    assert "went well" in joined and "reason 2 for ACME Corp" in joined
    buttons = [e for b in data["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert [(b["action_id"], b["value"]) for b in buttons] == [
        ("draft_checkin", "A1"), ("log_note", "A1"), ("review_done", "A1")]


@pytest.mark.parametrize("name", EVIL)
def test_data_cannot_ping_or_link(name):
    payloads: list[dict] = [
        B.health_card(card(name, note=name)).to_dict(),
        B.risk_list([scored(name)], name, 1, AS_OF).to_dict(),
        B.team_view(name, [(name, "cs")]).to_dict(),
        B.error(f"no account {name!r}").to_dict(),
        B.home_view([scored(name)], [], [{"day": AS_OF, "name": name, "contact_email": name, "note": name}],
                    AS_OF).to_dict(),
    ]
    for payload in payloads:  # plain_text is never parsed by Slack; every mrkdwn text must be inert
        parsed = [payload.get("text", ""), *texts(payload, ("mrkdwn",))]
        for text in parsed:
            assert "<!channel>" not in text and "<https://evil" not in text and "<@U0ADMIN>" not in text
            assert "<script>" not in text


def test_escaping_is_exactly_slacks_three_characters():
    assert esc("a & b < c > d *bold* _it_") == "a &amp; b &lt; c &gt; d *bold* _it_"
    assert mention("U0123ABCD") == "<@U0123ABCD>"
    assert mention("<!channel>") == "&lt;!channel&gt;"


def test_long_texts_are_clipped_to_slacks_limit_without_breaking_an_escape():
    long = "&" * 2000 + "x" * 5000
    data = B.health_card(card(name="N" * 500, note=long)).to_dict()
    assert all(len(t) <= 3000 for t in texts(data))
    header = next(b for b in data["blocks"] if b["type"] == "header")
    assert len(header["text"]["text"]) <= 150
    cut = clip(esc("&" * 2000), 3000)
    assert cut.endswith("…") and not cut[:-1].endswith(("&", "&a", "&am", "&amp"))


def test_risk_list_pages_within_fifty_blocks():
    rows = [dataclasses.replace(scored(f"Account {i}"), account=dataclasses.replace(
        scored().account, account_id=f"A{i}", name=f"Account {i}")) for i in range(95)]
    first = B.risk_list(rows, "tier:enterprise", 1, AS_OF).to_dict()
    assert len(first["blocks"]) <= 50
    opened = [b["accessory"]["value"] for b in first["blocks"] if b.get("accessory")]
    assert opened == [f"A{i}" for i in range(10)]
    nav = [e for b in first["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert [json.loads(e["value"]) for e in nav] == [{"expr": "tier:enterprise", "page": 2}]
    last = B.risk_list(rows, "", 10, AS_OF).to_dict()
    assert [b["accessory"]["value"] for b in last["blocks"] if b.get("accessory")] == [f"A{i}" for i in
                                                                                      range(90, 95)]
    assert "page 10 of 10" in json.dumps(last)


def test_empty_risk_list_says_so():
    assert "Nothing at risk" in json.dumps(B.risk_list([], "", 1, AS_OF).to_dict())


def test_home_stays_within_a_hundred_blocks():
    many = [scored(f"Account {i}") for i in range(300)]
    due = [DueItem(scored().account, "renewal", AS_OF, 3, None)] * 50
    drafts = [{"day": AS_OF, "name": "x", "contact_email": "a@b.c", "note": "s"}] * 50
    view = B.home_view(many, due, drafts, AS_OF).to_dict()
    assert view["type"] == "home" and len(view["blocks"]) <= 100


def test_modals_serialise():
    draft = Draft("checkin", "A1", "dana@acme.example", "Dana", "maya@x.com", "Maya", "Checking in",
                  "Hi Dana <!channel>", "<p>Hi</p>", "<id@x>")
    view = B.draft_modal("A1", "ACME", ["checkin", "qbr"], [("dana@acme.example", "Dana (champion)")],
                         draft).to_dict()
    assert view["callback_id"] == "draft_submit" and view["private_metadata"] == "A1"
    assert "<!channel>" not in json.dumps(view)
    note = B.note_modal("A1", "ACME", "prefilled").to_dict()
    assert note["callback_id"] == "note_submit"
    assert note["blocks"][1]["element"]["initial_value"] == "prefilled"
    nobody = B.draft_modal("A1", "ACME", ["checkin"], [], None).to_dict()
    assert "submit" not in nobody and "No reachable contact" in json.dumps(nobody)


def test_help_lists_every_subcommand():
    joined = json.dumps(B.help_reply().to_dict())
    for word in ("health", "risk", "retention", "reviews", "draft", "note", "team", "review done", "help"):
        assert f"/keepwell {word}" in joined
