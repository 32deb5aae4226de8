"""`keepwell tick` killed with SIGKILL in the middle of its work, then started again: nothing Slack
may have shown is posted twice, and what was never posted still is."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.slack_api import FakeSlack
from tests.slack.conftest import build_book

OFF = "[alerts]\nenabled = false\n[surveys]\nenabled = false\n"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sigkill")
    build_book(folder).book.engine.dispose()
    return folder / "book.db"


def tick(env: dict[str, str], now: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "bot.cli", "tick", "--now", now], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def setup(tmp_path: Path, template: Path, fake: FakeSlack, config: str) -> dict[str, str]:
    (tmp_path / "book.db").write_bytes(template.read_bytes())
    (tmp_path / "keepwell.toml").write_text(config)
    return {**os.environ, "SLACK_BOT_TOKEN": "xoxb-kill", "SLACK_API_URL": fake.api_url,
            "KEEPWELL_CONFIG": str(tmp_path / "keepwell.toml"),
            "KEEPWELL_DATABASE_URL": f"sqlite:///{tmp_path / 'book.db'}"}


def kill_when(fake: FakeSlack, proc: subprocess.Popen[str], method: str, count: int) -> None:
    """SIGKILL the process once its `count`-th call of `method` has reached Slack (and hangs there)."""
    try:
        fake.wait_for(method, count=count, timeout=60)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL


def test_killed_while_posting_a_digest_it_is_reported_never_repeated(tmp_path, template):
    config = OFF + '[reviews]\nenabled = false\n[[digests]]\nchannel = "C0DIGEST"\nschedule = "daily 09:00"\n'
    with FakeSlack(channels={"C0DIGEST"}) as fake:
        env = setup(tmp_path, template, fake, config)
        fake.stall("chat.postMessage", 60)  # Slack has the post; its answer never comes back
        kill_when(fake, tick(env, "2026-06-30T09:05:00Z"), "chat.postMessage", 1)
        again = tick(env, "2026-06-30T09:12:00Z")  # after the 5-minute lease, within the grace
        out, err = again.communicate(timeout=60)
        assert again.returncode == 0, err
        assert "nothing due" in out
        assert "digest:C0DIGEST:all 2026-06-30T09:00+00:00: interrupted while posting" in err
        assert len(fake.calls_to("chat.postMessage")) == 1
        tomorrow = tick(env, "2026-07-01T09:01:00Z")
        assert "posted" in tomorrow.communicate(timeout=60)[0]  # the next period is not held up
        assert len(fake.calls_to("chat.postMessage")) == 2


def test_killed_halfway_through_reminders_the_rest_are_posted_and_none_twice(tmp_path, template):
    config = OFF + '[reviews]\nchannel = "C0CS"\nmax_per_run = 4\nschedule = "daily 09:00"\n'
    with FakeSlack(channels={"C0CS"}) as fake:
        env = setup(tmp_path, template, fake, config)
        fake.stall("chat.postMessage", 0, times=2)
        fake.stall("chat.postMessage", 60)  # the third reminder hangs
        kill_when(fake, tick(env, "2026-06-30T09:05:00Z"), "chat.postMessage", 3)
        early = tick(env, "2026-06-30T09:07:00Z")  # the dead run's lease has not passed: hands off
        assert "nothing due" in early.communicate(timeout=60)[0]
        assert len(fake.calls_to("chat.postMessage")) == 3
        later = tick(env, "2026-06-30T09:12:00Z")
        out, err = later.communicate(timeout=60)
        assert later.returncode == 0, err
        assert "reminders 2026-06-30T09:00+00:00: 3 posted" in out  # the next ones, up to max_per_run
        assert "interrupted while posting" in err  # the hung one: left to a person
    posts = fake.calls_to("chat.postMessage")
    keys = [json.dumps(next(b for b in c.params["blocks"] if b["type"] == "actions")) for c in posts]
    assert len(posts) == 6 and len(set(keys)) == 6  # the hung third one was never sent again
