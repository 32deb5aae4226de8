"""keepwell tick: each digest period posted exactly once, caught up within the grace, across DST."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.cli import run
from tests.fakes.slack_api import FakeSlack
from tests.slack.conftest import build_book


@pytest.fixture(scope="module")
def book_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("tick")
    build_book(folder).book.engine.dispose()
    return f"sqlite:///{folder / 'book.db'}"


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    with FakeSlack(channels={"C0WEEKLY", "C0DAILY"}) as fake:
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-tick")
        monkeypatch.setenv("SLACK_API_URL", fake.api_url)
        yield fake


DIGESTS_ONLY = "[reviews]\nenabled = false\n[alerts]\nenabled = false\n[surveys]\nenabled = false\n"


def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, *, digests_only: bool = True) -> None:
    """keepwell.toml for a test; by default with the daily reminder, alert and survey jobs off."""
    path = tmp_path / "keepwell.toml"
    path.write_text((DIGESTS_ONLY if digests_only else "") + body)
    monkeypatch.setenv("KEEPWELL_CONFIG", str(path))


def fresh_db(tmp_path: Path, book_url: str) -> str:
    """A copy of the module's book, so each test starts with no digest posted."""
    target = tmp_path / "book.db"
    target.write_bytes(Path(book_url.removeprefix("sqlite:///")).read_bytes())
    return f"sqlite:///{target}"


WEEKLY = '[[digests]]\nchannel = "C0WEEKLY"\nschedule = "weekly mon 09:00"\ntimezone = "Europe/Berlin"\n'


def test_a_weekly_digest_is_posted_once_per_week(tmp_path, monkeypatch, capsys, slack, book_url):
    url = fresh_db(tmp_path, book_url)
    config(tmp_path, monkeypatch, WEEKLY)
    monday = "2026-06-22T09:05:00+02:00"
    code, out, err = run(capsys, "tick", "--now", monday, "--db", url)
    assert code == 0, err
    assert "digest:C0WEEKLY:all 2026-06-22T09:00+02:00: posted" in out
    for later in ("2026-06-22T09:05:00+02:00", "2026-06-22T11:00:00+02:00", "2026-06-23T09:00:00+02:00"):
        assert run(capsys, "tick", "--now", later, "--db", url)[1].strip() == "nothing due"
    assert len(slack.calls_to("chat.postMessage")) == 1
    [chart] = slack.shared  # the picture comes with the digest, once
    assert chart.channels == ["C0WEEKLY"] and chart.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert chart.title == "Health and retention, 2026-06-22"
    code, out, _ = run(capsys, "tick", "--now", "2026-06-29T10:00:00+02:00", "--db", url)
    assert "posted" in out
    [first, second] = slack.calls_to("chat.postMessage")
    assert "Since 2026-06-22" in json.dumps(second.params["blocks"])
    assert "Since" not in json.dumps(first.params["blocks"])
    assert [f.title[-10:] for f in slack.shared] == ["2026-06-22", "2026-06-29"]


def test_a_digest_missed_while_down_is_posted_once_within_the_grace(tmp_path, monkeypatch, capsys, slack,
                                                                    book_url):
    url = fresh_db(tmp_path, book_url)
    config(tmp_path, monkeypatch, "[scheduler]\ngrace_hours = 6\n" + WEEKLY)
    assert "posted" in run(capsys, "tick", "--now", "2026-06-22T13:30:00+02:00", "--db", url)[1]
    assert "nothing due" in run(capsys, "tick", "--now", "2026-06-22T14:00:00+02:00", "--db", url)[1]
    (tmp_path / "x").mkdir()
    later = fresh_db(tmp_path / "x", book_url)  # a bot down for a whole day: the period has passed
    assert "nothing due" in run(capsys, "tick", "--now", "2026-06-23T09:00:00+02:00", "--db", later)[1]
    assert len(slack.calls_to("chat.postMessage")) == 1


def test_a_removed_channel_warns_and_blocks_no_other_job(tmp_path, monkeypatch, capsys, slack, book_url):
    url = fresh_db(tmp_path, book_url)
    config(tmp_path, monkeypatch, WEEKLY.replace("C0WEEKLY", "C0REMOVED") + WEEKLY)
    code, out, err = run(capsys, "tick", "--now", "2026-06-22T09:01:00+02:00", "--db", url)
    assert code == 1  # cron learns of it
    assert "digest:C0REMOVED:all 2026-06-22T09:00+02:00: failed (cannot post to C0REMOVED: " in out
    assert "digest:C0WEEKLY:all 2026-06-22T09:00+02:00: posted" in out
    assert err.splitlines()[-1] == ("keepwell: 1 of 2 due job(s) failed: "
                                    "digest:C0REMOVED:all 2026-06-22T09:00+02:00")
    attempts = sorted(c.params["channel"] for c in slack.calls_to("chat.postMessage"))
    assert attempts == ["C0REMOVED", "C0WEEKLY"]
    run(capsys, "tick", "--now", "2026-06-22T09:30:00+02:00", "--db", url)  # the failed period is not retried
    assert len(slack.calls_to("chat.postMessage")) == 2


def test_a_post_slack_fails_exits_1_and_is_left_to_a_person(tmp_path, monkeypatch, capsys, slack, book_url):
    """An outage answering the post: Slack may have shown it, so no tick posts it again (never twice);
    the exit code tells cron, and the line says what to do."""
    url = fresh_db(tmp_path, book_url)
    config(tmp_path, monkeypatch, WEEKLY)
    slack.fail("chat.postMessage", status=500)
    code, out, err = run(capsys, "tick", "--now", "2026-06-22T09:01:00+02:00", "--db", url)
    assert code == 1
    assert out == ("digest:C0WEEKLY:all 2026-06-22T09:00+02:00: failed (Slack answered HTTP 500; not run "
                   "again, as its post may have gone out: check the channel)\n")
    assert err.splitlines()[-1] == ("keepwell: 1 of 1 due job(s) failed: "
                                    "digest:C0WEEKLY:all 2026-06-22T09:00+02:00")
    code, out, _ = run(capsys, "tick", "--now", "2026-06-22T09:06:00+02:00", "--db", url)
    assert (code, out.strip()) == (0, "nothing due")
    assert len(slack.calls_to("chat.postMessage")) == 1


def test_a_daily_job_ticked_all_through_a_dst_day_posts_once(tmp_path, monkeypatch, capsys, slack, book_url):
    url = fresh_db(tmp_path, book_url)
    config(tmp_path, monkeypatch, '[[digests]]\nchannel = "C0DAILY"\nschedule = "daily 02:30"\n'
                                  'timezone = "Europe/Berlin"\n')
    moment = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)  # Berlin falls back on 25 October 2026
    while moment < datetime(2026, 10, 25, 23, 0, tzinfo=UTC):
        run(capsys, "tick", "--now", moment.isoformat(), "--db", url)
        moment += timedelta(minutes=30)
    assert len(slack.calls_to("chat.postMessage")) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[[digests]]\nchannel = "C0A"\nschedule = "0 0 30 2 *"\n', "digests[0]: Value error, cron"),
        ('[[digests]]\nchannel = "C0A"\nschedule = "daily 09:00"\ntimezone = "Mars/Olympus"\n',
         "unknown time zone 'Mars/Olympus'"),
        ('[[digests]]\nchannel = "general"\nschedule = "daily 09:00"\n', "is not a Slack channel id"),
        ('[[digests]]\nchannel = "C0A"\nschedule = "weekly mnday 09:00"\n', "unknown weekday 'mnday'"),
    ],
)
def test_bad_schedules_are_refused_naming_the_key(tmp_path, monkeypatch, capsys, body, message):
    config(tmp_path, monkeypatch, body)
    code, _, err = run(capsys, "schedule", "--db", f"sqlite:///{tmp_path / 'b.db'}")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_schedule_lists_jobs_with_their_next_run(tmp_path, monkeypatch, capsys):
    config(tmp_path, monkeypatch, WEEKLY)
    code, out, _ = run(capsys, "schedule", "--db", f"sqlite:///{tmp_path / 'b.db'}")
    assert code == 0 and "digest:C0WEEKLY:all: weekly mon 09:00 (Europe/Berlin) — next" in out
