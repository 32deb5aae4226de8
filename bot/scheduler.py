"""Scheduled jobs, each period run exactly once: find what is due, claim it, do it, record it.

The jobs: the `[[digests]]` of keepwell.toml, and the daily reminders (reviews and renewals),
alerts and survey triggers. `keepwell tick` runs this once (for cron); `keepwell run` and `serve` run
it in-process. A job's period is claimed once; inside a batch job each message is claimed again on
its own, so a batch interrupted halfway and run again posts only what it had not posted.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from slack_sdk.errors import SlackApiError

from bot.claims import KEEP_RUNS, Claim, Claims
from bot.core.digest import Digest
from bot.core.schedule import Schedule, due, parse_schedule
from bot.errors import BadInput, ChannelUnavailable
from bot.logs import fields
from bot.nudges import Nudges, Outgoing
from bot.services import Keepwell
from bot.slack import nudge_blocks as NB
from bot.slack.blocks import Reply, digest_blocks

log = logging.getLogger("keepwell.scheduler")
KEEP_DELIVERIES = timedelta(days=7)  # Slack retries a delivery within minutes; a week is plenty


class Outbound(Protocol):
    """How jobs reach Slack (integrations.slack_client.Poster)."""

    def post(self, channel: str, reply: Reply) -> str: ...

    def upload(self, channel: str, content: bytes, *, filename: str, title: str,
               thread_ts: str | None = None, comment: str | None = None) -> str: ...

    def user_for(self, email: str) -> str | None: ...


@dataclass(frozen=True)
class Job:
    name: str  # stable: the claim key
    schedule: Schedule
    kind: str = "digest"  # digest | reminders | alerts | surveys
    channel: str | None = None
    segment: str | None = None
    only_when_changed: bool = False


class Refused(Exception):
    """A job's period failed for good (Slack refused the channel): recorded, and not run again."""


@dataclass(frozen=True)
class Ran:
    job: str
    period: str
    outcome: str  # posted | skipped | failed, or what a batch did
    reason: str = ""  # why it failed


def _why(exc: Exception) -> str:
    """A failure in one short line: Slack's error code or HTTP status, else the message's first line."""
    if isinstance(exc, SlackApiError) and exc.response is not None:
        status = exc.response.status_code  # Slack says no with 200 and an error code; else an outage
        error = exc.response.get("error") if status == 200 and isinstance(exc.response.data, dict) else None
        return f"Slack answered {error or f'HTTP {status}'}"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"


def jobs(service: Keepwell) -> list[Job]:
    cfg = service.config
    out = []
    for d in cfg.digests:
        name = f"digest:{d.channel}:{d.segment or 'all'}"
        out.append(Job(name, parse_schedule(d.schedule, d.timezone), "digest", d.channel, d.segment,
                       d.only_when_changed))
    for kind, job in (("reminders", cfg.reviews), ("alerts", cfg.alerts), ("surveys", cfg.surveys)):
        if job.enabled:
            out.append(Job(kind, parse_schedule(job.schedule, job.timezone), kind, job.channel))
    return out


class Scheduler:
    def __init__(self, service: Keepwell, claims: Claims, slack: Callable[[], Outbound]) -> None:
        self.service = service
        self.claims = claims
        self._connect = slack
        self._slack: Outbound | None = None
        self.grace = timedelta(hours=service.config.scheduler.grace_hours)
        self.nudges = Nudges(service)

    @property
    def slack(self) -> Outbound:
        """The Slack client, built only when something is due (a tick with nothing due needs no token)."""
        if self._slack is None:
            self._slack = self._connect()
        return self._slack

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
            as_of = fire.astimezone(job.schedule.tz).date()
            started = time.perf_counter()
            reason = ""
            try:
                outcome = self._run(job, as_of, claim)
            except Refused as exc:  # not retried: the claim has recorded it
                outcome, reason = "failed", str(exc)
            except Exception as exc:  # give the period back for the next tick; what was posted is claimed
                log.warning("job %s for %s failed: %s", job.name, period, exc)
                again = ("the next tick tries again" if self.claims.release(claim)
                         else "not run again, as its post may have gone out: check the channel")
                outcome, reason = "failed", f"{_why(exc)}; {again}"
            ran.append(Ran(job.name, period, outcome, reason))
            log.log(logging.WARNING if outcome == "failed" else logging.INFO, "job run", extra=fields(
                job=job.name, period=period, outcome=outcome,
                duration_ms=round((time.perf_counter() - started) * 1000, 1)))
        self._housekeeping(now)
        return ran

    def _housekeeping(self, now: datetime) -> None:
        """Once a day (claimed like a job, so one instance does it): forget what no longer matters, so
        the bookkeeping tables stay small however long the deployment runs."""
        claim = self.claims.claim("housekeeping", now.date().isoformat())
        if claim is None:
            return
        try:
            runs = self.claims.prune(self.claims.clock() - KEEP_RUNS)
            deliveries = self.service.journal.prune_deliveries(datetime.now(UTC) - KEEP_DELIVERIES)
        except Exception as exc:  # the next tick tries again
            log.warning("housekeeping failed: %s", exc)
            self.claims.release(claim)
            return
        self.claims.done(claim, json.dumps({"job_runs": runs, "slack_deliveries": deliveries}))
        log.info("housekeeping", extra=fields(job_runs_pruned=runs, slack_deliveries_pruned=deliveries))

    def _run(self, job: Job, as_of: date, claim: Claim) -> str:
        if not self.service.book.scored_on(as_of):
            self.service.score(as_of)  # the day's stored scores: digests and alerts compare against them
        if job.kind == "digest":
            return self._digest(job, as_of, claim)
        if job.kind == "reminders":
            outcome = self._reminders(as_of)
        elif job.kind == "alerts":
            outcome = self._alerts(as_of)
        else:
            outcome = self._surveys(as_of)
        self.claims.done(claim, json.dumps({"as_of": as_of.isoformat(), "outcome": outcome}))
        return outcome

    # digests ------------------------------------------------------------------------------------

    def _digest(self, job: Job, as_of: date, claim: Claim) -> str:
        assert job.channel is not None
        last = self.claims.last_done(job.name)
        since = date.fromisoformat(json.loads(last[1])["as_of"]) if last and last[1] else None
        digest = self.service.digest(as_of, job.segment, since)
        moved = digest.newly_at_risk or digest.recovered or digest.entered_danger or digest.entered_forgotten
        if job.only_when_changed and since is not None and not moved:
            self.claims.done(claim, json.dumps({"as_of": as_of.isoformat(), "skipped": "nothing changed"}))
            return "skipped"
        if not self.claims.posting(claim):
            return "skipped"  # the lease passed and someone else took it over
        try:
            ts = self.slack.post(job.channel, digest_blocks(digest))
        except ChannelUnavailable as exc:
            log.warning("%s (job %s keeps running for its other periods)", exc, job.name)
            self.claims.failed(claim, str(exc))
            raise Refused(str(exc)) from None
        self.claims.done(claim, json.dumps({"as_of": as_of.isoformat(), "ts": ts}))
        self._chart(job, digest, claim.period)
        return "posted"

    def _chart(self, job: Job, digest: Digest, period: str) -> None:
        """The digest's chart, uploaded right after it (claimed on its own: once, or reported)."""
        assert job.channel is not None
        claim = self.claims.claim(f"{job.name}:chart", period)
        if claim is None or not self.claims.posting(claim):
            return
        try:
            png = chart_png(self.service, digest)
            file_id = self.slack.upload(job.channel, png, filename=f"keepwell-health-{digest.as_of}.png",
                                        title=f"Health and retention, {digest.as_of}")
        except Exception as exc:  # the digest itself is posted; a missing chart is one warning
            log.warning("the chart of %s for %s was not uploaded: %s", job.name, period, exc)
            self.claims.failed(claim, str(exc))
            return
        self.claims.done(claim, file_id)

    # reminders, alerts, surveys ----------------------------------------------------------------

    def _deliver(self, key: str, round_: int, destinations: Sequence[str], reply: Reply) -> int:
        """Post one message to each destination, each exactly once (a claim per destination)."""
        sent = 0
        for dest in dict.fromkeys(destinations):
            claim = self.claims.claim(f"nudge:{key}"[:200], f"{round_}:{dest}")
            if claim is None or not self.claims.posting(claim):
                continue
            try:
                ts = self.slack.post(dest, reply)
            except (ChannelUnavailable, SlackApiError) as exc:  # Slack said no: nothing was posted
                log.warning("could not post %s to %s: %s", key, dest, exc)
                self.claims.failed(claim, str(exc))
                continue
            self.claims.done(claim, ts)
            sent += 1
        return sent

    def _users(self, emails: Sequence[str]) -> dict[str, str]:
        """Slack user ids of the emails that have one (users.lookupByEmail, cached by the client)."""
        out = {}
        for email in dict.fromkeys(e.lower() for e in emails if "@" in e):
            user = self.slack.user_for(email)
            if user:
                out[email] = user
        return out

    def _team(self, item: Outgoing) -> tuple[str, list[str], dict[str, str]]:
        """The team line, the members reachable in Slack (owner first), and emails → user ids."""
        team = self.service.book.team(item.account.pk)
        owner = item.account.owner_email
        users = self._users([m for m, _ in team] + ([owner] if owner else []))
        people = [users.get(m.lower(), m) for m in ([owner] if owner else []) + [m for m, _ in team]]
        reachable = [p for p in dict.fromkeys(people) if p[:1] in ("U", "W") and "@" not in p]
        return NB.team_line(team, owner, users), reachable, users

    def _send(self, items: Sequence[Outgoing], as_of: date, channel: str | None, *, alert: bool) -> str:
        health = {s.account.pk: s.health for s in self.service.book_health(as_of)} if items else {}
        channels = self.service.config.slack.account_channels
        sent = nowhere = 0
        for item in items:
            text, reachable, _ = self._team(item)
            h = health.get(item.account.pk)
            reply = NB.alert(item, text, h) if alert else NB.reminder(item, text, h, as_of)
            places = [c for c in (channel, channels.get(item.account.account_id)) if c]
            if alert:  # the owner hears of it directly, and the channels see it
                places = reachable[:1] + places
            elif not places:  # no channel for reminders: the whole team, each directly
                places = reachable
            if not places:
                nowhere += 1
                log.warning("nowhere to post %s for %s: no channel configured and nobody on its team "
                            "is in Slack", item.kind, item.account.name)
            sent += self._deliver(item.key, item.round, places, reply)
            self.nudges.posted(item)
        return f"{sent} posted" + (f", {nowhere} with nowhere to go" if nowhere else "")

    def _reminders(self, as_of: date) -> str:
        items = self.nudges.reminders(as_of)
        return self._send(items, as_of, self.service.config.reviews.channel, alert=False)

    def _alerts(self, as_of: date) -> str:
        baseline = self.claims.last_done("alerts") is None
        items = self.nudges.alerts(as_of, baseline=baseline)
        if baseline:
            return "baseline: conditions that already hold are recorded, not posted"
        return self._send(items, as_of, self.service.config.alerts.channel, alert=True)

    def _surveys(self, as_of: date) -> str:
        from bot.surveys import Surveys

        surveys = Surveys(self.service)
        sent = 0
        for due_plan in surveys.due(as_of):
            owner = due_plan.account.owner_email
            users = self._users([owner] if owner else [])
            places = [p for p in (users.get((owner or "").lower()), self.service.config.surveys.channel) if p]
            reply = NB.survey_notice(due_plan.account.name, due_plan.why, due_plan.plan)
            sent += self._deliver(f"survey:{due_plan.plan.plan_id}", 0, places, reply)
            surveys.close(due_plan.keys, due_plan.plan.plan_id, as_of)
        return f"{sent} survey plan(s) announced"


def configured_channels(service: Keepwell) -> list[tuple[str, str]]:
    """Every channel keepwell.toml names, with its key."""
    cfg = service.config
    out = [(f"digests[{i}].channel", d.channel) for i, d in enumerate(cfg.digests)]
    out += [(f"{name}.channel", job.channel) for name, job in
            (("reviews", cfg.reviews), ("alerts", cfg.alerts), ("surveys", cfg.surveys)) if job.channel]
    out += [(f"slack.account_channels.{account}", ch) for account, ch in cfg.slack.account_channels.items()]
    return out


def check_channels(service: Keepwell, lookup: Callable[[str], str | None]) -> list[str]:
    """Refuse a channel Slack does not know (BadInput naming the key); warnings for the rest."""
    warnings = []
    for key, channel in configured_channels(service):
        try:
            problem = lookup(channel)
        except LookupError as exc:
            return [f"channels not checked at start-up ({exc}; the channels:read scope is missing?)"]
        if problem == "unknown":
            raise BadInput(f"keepwell.toml: {key}: Slack knows no channel {channel} (check the id; for a "
                           "private channel, invite the bot first)")
        if problem:
            warnings.append(f"keepwell.toml: {key}: channel {channel} is {problem}; invite the bot to it")
    return warnings


def chart_png(service: Keepwell, digest: Digest) -> bytes:
    """The digest's picture: the health distribution and six months of GRR and NRR."""
    from bot.charts import digest_chart

    bands = service.config.health.bands
    return digest_chart(digest.scores, healthy=bands.healthy, watch=bands.watch,
                        trend=service.retention_trend(digest.as_of), title=f"Portfolio on {digest.as_of}")


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
