"""keepwell digest: the portfolio in a channel (or in the terminal), with what moved since last time."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from bot.core.digest import build_digest
from bot.services import Keepwell
from bot.slack.blocks import digest_blocks
from tests.cli import run
from tests.fakes.slack_api import FakeSlack
from tests.slack.conftest import AS_OF, build_book


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Keepwell:
    service = build_book(tmp_path_factory.mktemp("digest"))
    service.score(AS_OF - timedelta(days=7))
    return service


def test_digest_shows_new_and_lost_beside_the_rate_and_what_moved(book):
    d = book.digest(AS_OF, since=AS_OF - timedelta(days=7))
    assert d.since == AS_OF - timedelta(days=7)
    assert d.retention.start == AS_OF - timedelta(days=6)
    text = json.dumps(digest_blocks(d).to_dict())
    assert "new*" in text and "churned*" in text and "beside churn" in text
    assert "Since 2026-06-23" in text
    payload = digest_blocks(d).to_dict()
    assert payload["response_type"] == "in_channel" and len(payload["blocks"]) <= 50
    first = book.digest(AS_OF)
    assert first.since is None and first.newly_at_risk == ()


def test_the_lean_read_from_stored_scores_says_what_the_full_read_says(book):
    since = AS_OF - timedelta(days=7)
    lean = book.digest(AS_OF, since=since)
    full = {s.account.pk: s.health for s in book.book_health(AS_OF)}  # every driver of every account
    assert lean.at_risk and all(h.drivers and h.drivers == full[a.pk].drivers for a, h in lean.at_risk)
    before = book.book.snapshots(since) or {}
    rows = sorted(book.accounts(AS_OF), key=lambda s: s.account.account_id)  # the book's order
    expected = build_digest([(s.account, s.health) for s in rows], AS_OF, lean.retention,
                            previous=before, since=since)
    for field in ("newly_at_risk", "recovered", "entered_danger", "entered_forgotten", "bands", "scores"):
        got, want = getattr(lean, field), getattr(expected, field)
        assert [g[0].pk if isinstance(g, tuple) else g for g in got] == [
            w[0].pk if isinstance(w, tuple) else w for w in want], field


def test_movers_compare_the_two_days_scores(book):
    d = book.digest(AS_OF, since=AS_OF - timedelta(days=7))
    before = book.book.snapshots(AS_OF - timedelta(days=7)) or {}
    ids = {pk: h.account_id for pk, h in before.items()}
    was_at_risk = {ids[pk] for pk, h in before.items() if h.band == "at_risk" or (
        h.band == "watch" and (h.danger_zone or h.forgotten_zone))}
    assert all(a.account_id not in was_at_risk for a, _ in d.newly_at_risk)
    assert all(a.account_id in was_at_risk for a, _ in d.recovered)


def test_digest_command_posts_once_to_the_channel(tmp_path, capsys, monkeypatch, book):
    url = str(book.book.engine.url)
    with FakeSlack(channels={"C0DIGEST"}) as fake:
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-digest-test")
        monkeypatch.setenv("SLACK_API_URL", fake.api_url)
        code, out, err = run(capsys, "digest", "--channel", "C0DIGEST", "--db", url, "--as-of", str(AS_OF))
        assert code == 0, err
        [post] = fake.calls_to("chat.postMessage")
        assert post.params["channel"] == "C0DIGEST"
        assert "Portfolio digest" in json.dumps(post.params["blocks"])
        assert "posted to C0DIGEST" in out
        code, _, err = run(capsys, "digest", "--channel", "C0GONE", "--db", url, "--as-of", str(AS_OF))
        assert code == 2 and "cannot post to C0GONE: channel_not_found" in err
        assert len(err.strip().splitlines()) == 1


def test_digest_dry_run_prints_it_here(capsys, book):
    code, out, _ = run(capsys, "digest", "--channel", "C1", "--dry-run", "--db", str(book.book.engine.url),
                       "--as-of", str(AS_OF))
    assert code == 0 and out.startswith("Portfolio digest — 2026-06-30") and "At risk" in out


def test_digest_json_says_what_the_digest_shows(capsys, book):
    url, since = str(book.book.engine.url), AS_OF - timedelta(days=7)
    code, out, _ = run(capsys, "digest", "--channel", "C1", "--dry-run", "--json", "--db", url,
                       "--as-of", str(AS_OF), "--since", str(since))
    assert code == 0
    data = json.loads(out)
    d = book.digest(AS_OF, since=since)
    assert (data["as_of"], data["since"], data["customers"]) == (str(AS_OF), str(since), d.customers)
    assert data["customers"] == sum(b["accounts"] for b in data["bands"])
    assert (data["danger_zone"], data["forgotten_zone"], data["at_risk_total"]) == (
        d.danger, d.forgotten, d.at_risk_total)
    assert [r["account_id"] for r in data["at_risk"]] == [a.account_id for a, _ in d.at_risk]
    assert data["at_risk"] and all(r["reasons"] for r in data["at_risk"])
    mrrs = [r["mrr"] or 0 for r in data["at_risk"]]
    assert mrrs == sorted(mrrs, reverse=True)  # most revenue at stake first
    r = data["retention"]  # new and lost beside the rate, as everywhere
    assert r["customers_end"] == r["customers_start"] + r["new_customers"] - r["churned_customers"]
    assert {"newly_at_risk", "recovered", "entered_danger", "entered_forgotten", "renewals", "reviews_due",
            "detractors", "overdue_invoices"} <= set(data)
    code, _, err = run(capsys, "digest", "--channel", "C1", "--json", "--db", url)
    assert (code, err.strip()) == (
        2, "keepwell: --json prints the digest instead of posting it: add --dry-run")


def test_no_garbage_collection_while_the_digest_is_built_and_the_collector_is_back_after(book, monkeypatch):
    """A million short-lived objects at 100k accounts (bot.collector): no collection walks them."""
    import gc

    seen: list[bool] = []
    states = book.book.states

    def reading(day):
        seen.append(gc.isenabled())
        return states(day)

    monkeypatch.setattr(book.book, "states", reading)
    book.digest(AS_OF, since=AS_OF - timedelta(days=7))
    assert seen == [False]
    assert gc.isenabled()
