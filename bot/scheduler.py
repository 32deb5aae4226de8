"""Scheduled jobs, each period run exactly once: find what is due, claim it, do it, record it.

For now the jobs are the `[[digests]]` of keepwell.toml. `keepwell tick` runs this once (for cron);
`keepwell run` and `serve` will run it in-process.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from bot.claims import Claim, Claims
from bot.core.schedule import Schedule, due, parse_schedule
from bot.errors import ChannelUnavailable
from bot.services import Keepwell
from bot.slack.blocks import Reply, digest_blocks

log = logging.getLogger("keepwell.scheduler")


@dataclass(frozen=True)
class Job:
    name: str  # stable: the claim key
    schedule: Schedule
    channel: str
    segment: str | None
    only_when_changed: bool


@dataclass(frozen=True)
class Ran:
    job: str
    period: str
    outcome: str  # posted | skipped | failed


def jobs(service: Keepwell) -> list[Job]:
    out = []
    for d in service.config.digests:
        name = f"digest:{d.channel}:{d.segment or 'all'}"
        out.append(Job(name, parse_schedule(d.schedule, d.timezone), d.channel, d.segment,
                       d.only_when_changed))
    return out


class Scheduler:
    def __init__(self, service: Keepwell, claims: Claims, post: Callable[[str, Reply], str]) -> None:
        self.service = service
        self.claims = claims
        self.post = post
        self.grace = timedelta(hours=service.config.scheduler.grace_hours)

    def tick(self, now: datetime) -> list[Ran]:
        """Run every job due at `now` whose period nobody has run yet; one failing job blocks no other."""
        ran = []
        for job in jobs(self.service):
            fire = due(job.schedule, now, grace=self.grace)
            if fire is None:
                continue
            period = job.schedule.period_key(fire)
            claim = self.claims.claim(job.name, period)
            if claim is None:
                continue  # another process has it, or it is done
            try:
                outcome = self._digest(job, fire.astimezone(job.schedule.tz).date(), claim)
            except Exception as exc:  # nothing reached Slack: give the period back for the next tick
                log.warning("job %s for %s failed before posting: %s", job.name, period, exc)
                self.claims.release(claim)
                outcome = "failed"
            ran.append(Ran(job.name, period, outcome))
        return ran

    def _digest(self, job: Job, as_of: date, claim: Claim) -> str:
        last = self.claims.last_done(job.name)
        since = date.fromisoformat(json.loads(last[1])["as_of"]) if last and last[1] else None
        if self.service.book.snapshots(as_of) is None:
            self.service.score(as_of)  # the next digest compares against today's stored scores
        digest = self.service.digest(as_of, job.segment, since)
        moved = digest.newly_at_risk or digest.recovered or digest.entered_danger or digest.entered_forgotten
        if job.only_when_changed and since is not None and not moved:
            self.claims.done(claim, json.dumps({"as_of": as_of.isoformat(), "skipped": "nothing changed"}))
            return "skipped"
        if not self.claims.posting(claim):
            return "skipped"  # the lease passed and someone else took it over
        try:
            ts = self.post(job.channel, digest_blocks(digest))
        except ChannelUnavailable as exc:
            log.warning("%s (job %s keeps running for its other periods)", exc, job.name)
            self.claims.failed(claim, str(exc))
            return "failed"
        self.claims.done(claim, json.dumps({"as_of": as_of.isoformat(), "ts": ts}))
        return "posted"


class Background:
    """The scheduler inside `keepwell run` / `serve`: a thread that ticks every `every` seconds.

    Several instances may each run one: the claims make every period run exactly once anyway.
    """

    def __init__(self, scheduler: Scheduler, every: float = 30.0,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.scheduler = scheduler
        self.every = every
        self.clock = clock
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="keepwell-scheduler", daemon=True)

    def start(self) -> Background:
        if jobs(self.scheduler.service):
            self.thread.start()
        return self

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                for ran in self.scheduler.tick(self.clock()):
                    log.info("scheduled %s %s: %s", ran.job, ran.period, ran.outcome)
            except Exception:  # one bad tick must not end the scheduler
                log.exception("a scheduler tick failed")
            self.stop.wait(self.every)
