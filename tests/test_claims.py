"""Exactly once per job and period, across processes sharing one database (SQLite and PostgreSQL)."""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.claims import LEASE, Claims
from bot.db.engine import make_engine, migrate

PERIODS = 100


def racer(url: str, log: str, name: str) -> None:
    engine = make_engine(url)
    claims = Claims(engine, owner=name)
    for i in range(PERIODS):
        won = claims.claim("digest:C1", f"p{i:03d}")
        if won is None:
            continue
        assert claims.posting(won)
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"p{i:03d} {name}\n".encode())  # "the post"
        os.close(fd)
        claims.done(won, f"ts-{i}")
    engine.dispose()


def test_three_schedulers_racing_post_every_period_exactly_once(db_url: str, tmp_path: Path):
    migrate(make_engine(db_url))
    log = str(tmp_path / "posts.log")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=racer, args=(db_url, log, f"r{n}")) for n in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    posted = Counter(line.split()[0] for line in Path(log).read_text().splitlines())
    assert len(posted) == PERIODS and set(posted.values()) == {1}


def test_a_claim_abandoned_before_posting_is_taken_over_after_the_lease(engine):
    now = [datetime(2026, 11, 23, 9, tzinfo=UTC)]
    first = Claims(engine, clock=lambda: now[0], owner="a")
    second = Claims(engine, clock=lambda: now[0], owner="b")
    assert first.claim("digest:C1", "w48") is not None  # then "a" dies before posting
    assert second.claim("digest:C1", "w48") is None  # within the lease: still a's
    now[0] += LEASE + timedelta(seconds=1)
    taken = second.claim("digest:C1", "w48")
    assert taken is not None and second.posting(taken)
    second.done(taken, "ts-1")
    assert second.last_done("digest:C1") == ("w48", "ts-1")
    assert first.claim("digest:C1", "w48") is None  # done is done


def test_a_post_interrupted_midway_is_reported_never_repeated(engine):
    now = [datetime(2026, 11, 23, 9, tzinfo=UTC)]
    first = Claims(engine, clock=lambda: now[0], owner="a")
    won = first.claim("digest:C1", "w48")
    assert won is not None and first.posting(won)  # then "a" dies while Slack has the post
    now[0] += LEASE * 10
    other = Claims(engine, clock=lambda: now[0], owner="b")
    assert other.claim("digest:C1", "w48") is None
    assert other.interrupted() == [("digest:C1", "w48")]


def test_release_gives_the_period_back(engine):
    claims = Claims(engine, owner="a")
    won = claims.claim("digest:C1", "w1")
    assert won is not None
    claims.release(won)
    assert Claims(engine, owner="b").claim("digest:C1", "w1") is not None
