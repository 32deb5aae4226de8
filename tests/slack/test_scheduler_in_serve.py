"""`keepwell serve` runs the scheduler in-process: a digest due now is posted, once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_requests import wait_until_serving
from tests.slack.conftest import build_book
from tests.slack.test_http_e2e import DAILY_JOBS_OFF, free_port


def test_serve_posts_a_due_digest_once(tmp_path: Path) -> None:
    folder = tmp_path
    build_book(folder).book.engine.dispose()
    ten_minutes_ago = datetime.now(UTC) - timedelta(minutes=10)
    config = folder / "keepwell.toml"
    config.write_text(DAILY_JOBS_OFF
                      + f'[[digests]]\nchannel = "C0SERVE"\nschedule = "daily {ten_minutes_ago:%H:%M}"\n')
    port = free_port()
    with FakeSlack() as fake:
        env = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-sched", "SLACK_SIGNING_SECRET": "sched-secret-123",
               "SLACK_API_URL": fake.api_url, "KEEPWELL_CONFIG": str(config),
               "KEEPWELL_DATABASE_URL": f"sqlite:///{folder / 'book.db'}"}
        proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", str(port)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            [post] = fake.wait_for("chat.postMessage", timeout=30)
            assert post.params["channel"] == "C0SERVE"
            wait_until_serving(f"http://127.0.0.1:{port}", proc)
            time.sleep(1.0)
            assert len(fake.calls_to("chat.postMessage")) == 1
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_serve_refuses_a_channel_slack_does_not_know(tmp_path: Path) -> None:
    build_book(tmp_path).book.engine.dispose()
    config = tmp_path / "keepwell.toml"
    config.write_text(DAILY_JOBS_OFF + '[[digests]]\nchannel = "C0KNOWN"\nschedule = "daily 09:00"\n'
                      '[[digests]]\nchannel = "C0GONE"\nschedule = "daily 09:00"\n')
    with FakeSlack(channels={"C0KNOWN"}) as fake:
        env = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-sched", "SLACK_SIGNING_SECRET": "sched-secret-123",
               "SLACK_API_URL": fake.api_url, "KEEPWELL_CONFIG": str(config),
               "KEEPWELL_DATABASE_URL": f"sqlite:///{tmp_path / 'book.db'}"}
        done = subprocess.run([sys.executable, "-m", "bot.cli", "serve", "--port", str(free_port())], env=env,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "keepwell: keepwell.toml: digests[1].channel: Slack knows no channel C0GONE "
        "(check the id; for a private channel, invite the bot first)")


def test_serve_with_no_scheduler_leaves_due_jobs_to_tick(tmp_path: Path) -> None:
    build_book(tmp_path).book.engine.dispose()
    due = datetime.now(UTC) - timedelta(minutes=10)
    config = tmp_path / "keepwell.toml"
    config.write_text(DAILY_JOBS_OFF + f'[[digests]]\nchannel = "C0SERVE"\nschedule = "daily {due:%H:%M}"\n')
    port = free_port()
    with FakeSlack() as fake:
        env = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-sched", "SLACK_SIGNING_SECRET": "sched-secret-123",
               "SLACK_API_URL": fake.api_url, "KEEPWELL_CONFIG": str(config),
               "KEEPWELL_DATABASE_URL": f"sqlite:///{tmp_path / 'book.db'}"}
        cmd = [sys.executable, "-m", "bot.cli", "serve", "--port", str(port), "--no-scheduler"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until_serving(f"http://127.0.0.1:{port}", proc)
            time.sleep(2.0)  # the in-process scheduler would have ticked at once
            assert fake.calls_to("chat.postMessage") == []
            tick = subprocess.run([sys.executable, "-m", "bot.cli", "tick"], env=env, capture_output=True,
                                  text=True, timeout=60)
            assert "posted" in tick.stdout, tick.stderr
            assert len(fake.calls_to("chat.postMessage")) == 1
        finally:
            proc.terminate()
            proc.wait(timeout=10)
