"""Exactly-once runs of scheduled jobs: each (job, period) is claimed in the database before its side
effect and recorded after it, so restarts and several instances sharing one database never run a
period twice.

A claim is an INSERT that only one process can win (the primary key is (job, period)). Its states:
- `claimed`: won, nothing done outside yet. If the claimant dies here, another process takes the
  claim over once the lease has passed, and the period still runs once.
- `posting`: the side effect (a Slack post) is under way. If the claimant dies here, nobody can know
  whether Slack accepted the post, so the period is never run again automatically: it is reported.
- `done` / `failed`: finished, with the result (a message ts, or why it failed).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from bot.db import models as m

J = m.table_of(m.JobRun)
LEASE = timedelta(minutes=5)
KEEP_RUNS = timedelta(days=400)  # how long finished periods are remembered (housekeeping prunes older)


def me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:100]


@dataclass(frozen=True)
class Claim:
    job: str
    period: str
    owner: str


class Claims:
    def __init__(self, engine: Engine, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 owner: str | None = None) -> None:
        self.engine = engine
        self.clock = clock
        self.owner = owner or me()

    def claim(self, job: str, period: str) -> Claim | None:
        """Win the period (or take over a claim whose owner died before doing anything); else None."""
        now = self.clock()
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(J).values(job=job, period=period, state="claimed", owner=self.owner,
                                              claimed_at=now))
            return Claim(job, period, self.owner)
        except IntegrityError:
            pass
        with self.engine.begin() as conn:  # a stale claim, nothing posted: take it over (one winner)
            taken = conn.execute(
                update(J).where(and_(J.c.job == job, J.c.period == period, J.c.state == "claimed",
                                     J.c.claimed_at < now - LEASE))
                .values(owner=self.owner, claimed_at=now)
            ).rowcount
        return Claim(job, period, self.owner) if taken else None

    def _move(self, claim: Claim, frm: str, to: str, result: str | None = None) -> bool:
        finished = self.clock() if to in ("done", "failed") else None
        with self.engine.begin() as conn:
            return bool(conn.execute(
                update(J).where(and_(J.c.job == claim.job, J.c.period == claim.period, J.c.state == frm,
                                     J.c.owner == claim.owner))
                .values(state=to, result=result, finished_at=finished)
            ).rowcount)

    def posting(self, claim: Claim) -> bool:
        """About to post: from here on, a crash leaves the period to a person, never to a retry."""
        return self._move(claim, "claimed", "posting")

    def done(self, claim: Claim, result: str | None = None) -> None:
        if not self._move(claim, "posting", "done", result):
            self._move(claim, "claimed", "done", result)

    def failed(self, claim: Claim, why: str) -> None:
        if not self._move(claim, "posting", "failed", why[:2000]):
            self._move(claim, "claimed", "failed", why[:2000])

    def release(self, claim: Claim) -> bool:
        """Give a claimed period back (nothing was done): the next tick may run it. False when its post
        was under way (`posting`): Slack may have shown it, so it stays for a person to check."""
        with self.engine.begin() as conn:
            return bool(conn.execute(J.delete().where(and_(
                J.c.job == claim.job, J.c.period == claim.period, J.c.state == "claimed",
                J.c.owner == claim.owner))).rowcount)

    def prune(self, before: datetime) -> int:
        """Forget the periods claimed before `before`; returns how many.

        Periods are dated (a digest's week, a reminder's renewal date and offset), so one claimed more
        than a year ago can never fall due again; `KEEP_RUNS` is longer than that."""
        with self.engine.begin() as conn:
            return conn.execute(J.delete().where(J.c.claimed_at < before)).rowcount

    def last_done(self, job: str) -> tuple[str, str | None] | None:
        """The latest period of a job that finished, with its result."""
        with self.engine.connect() as conn:
            row = conn.execute(select(J.c.period, J.c.result).where(J.c.job == job, J.c.state == "done")
                               .order_by(J.c.claimed_at.desc()).limit(1)).first()
        return (row[0], row[1]) if row else None

    def interrupted(self, since: datetime | None = None) -> list[tuple[str, str]]:
        """Periods whose post was under way when their process died (claimed after `since`): for a
        person to check, since Slack may or may not have shown them."""
        now = self.clock()
        with self.engine.connect() as conn:
            rows = conn.execute(select(J.c.job, J.c.period).where(
                J.c.state == "posting", J.c.claimed_at < now - LEASE,
                J.c.claimed_at >= (since or datetime(1970, 1, 1, tzinfo=UTC))).order_by(J.c.claimed_at))
            return [(r[0], r[1]) for r in rows]
