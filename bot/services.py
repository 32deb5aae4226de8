"""Use cases over the book: what the CLI (and later Slack and the scheduler) call.

Each takes `as_of` (the day a report is for) explicitly; nothing here reads the clock.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from bot import collector
from bot.config import KeepwellConfig
from bot.core.digest import Digest, build_digest, is_at_risk, reasons
from bot.core.health import Peers, score_account, score_book
from bot.core.model import Account, HealthScore
from bot.core.retention import Cohort, Retention, cohorts, retention, revenue_months
from bot.core.segments import SegmentError, parse_segment
from bot.draftstore import DraftStore, NoStore
from bot.errors import BadInput
from bot.importer.run import ImportReport, import_csv
from bot.scoring import score_and_store
from bot.store import RUN_COMPUTED_AT, Book, Journal, Scored
from bot.teamwork import Teamwork


def health_dict(item: Scored) -> dict[str, Any]:
    """The health object of CONTRACT §5 (plus a few extras a reader of the JSON wants)."""
    a, h = item.account, item.health
    return {
        "account_id": a.account_id,
        "name": a.name,
        "score": h.score,
        "band": h.band,
        "previous_score": h.previous_score,
        "danger_zone": h.danger_zone,
        "forgotten_zone": h.forgotten_zone,
        "stickiness": h.stickiness,
        "engagement": h.engagement,
        "mrr": float(a.mrr) if a.mrr is not None else None,
        "renewal_date": a.renewal_date.isoformat() if a.renewal_date else None,
        "tier": a.tier,
        "tags": list(a.tags),
        "owner_email": a.owner_email,
        "drivers": [d.to_dict() for d in h.drivers],
    }


def digest_dict(d: Digest) -> dict[str, Any]:
    """`keepwell digest --json`: what the digest shows, with stable keys (money as numbers, days ISO)."""

    def money(value: Decimal | None) -> float | None:
        return None if value is None else float(value)

    def brief(a: Account) -> dict[str, Any]:
        return {"account_id": a.account_id, "name": a.name, "mrr": money(a.mrr)}

    def health(a: Account, h: HealthScore | None) -> dict[str, Any]:  # null where not scored
        if h is None:
            return brief(a) | {"score": None, "band": None, "previous_score": None}
        return brief(a) | {"score": h.score, "band": h.band, "previous_score": h.previous_score}

    return {
        "as_of": d.as_of.isoformat(),
        "since": d.since.isoformat() if d.since else None,
        "customers": d.customers,
        "mrr": money(d.mrr),
        "bands": [{"band": b.band, "accounts": b.accounts, "mrr": money(b.mrr)} for b in d.bands],
        "danger_zone": d.danger,
        "forgotten_zone": d.forgotten,
        "at_risk_total": d.at_risk_total,
        "at_risk": [health(a, h) | {"danger_zone": h.danger_zone, "forgotten_zone": h.forgotten_zone,
                                   "reasons": reasons(h)} for a, h in d.at_risk],
        "newly_at_risk": [health(a, h) for a, h in d.newly_at_risk],
        "recovered": [health(a, h) for a, h in d.recovered],
        "entered_danger": [health(a, h) for a, h in d.entered_danger],
        "entered_forgotten": [health(a, h) for a, h in d.entered_forgotten],
        "renewals": [health(a, h) | {"renewal_date": a.renewal_date.isoformat() if a.renewal_date else None}
                     for a, h in d.renewals],
        "reviews_due": [brief(a) | {"due": due.isoformat()} for a, due in d.reviews_due],
        "detractors": [brief(a) | {"email": n.email or None, "day": n.day.isoformat(), "score": n.score,
                                   "comment": n.comment} for a, n in d.detractors],
        "overdue_invoices": [brief(a) | {"invoice_id": o.invoice_id, "amount": money(o.amount),
                                         "days_overdue": o.days} for a, o in d.overdue],
        "retention": d.retention.to_dict(),
    }


@dataclass(frozen=True)
class ScoreSummary:
    as_of: date
    accounts: int
    bands: dict[str, int]
    danger: int
    forgotten: int
    seconds: float


@dataclass(frozen=True)
class HealthCard:
    item: Scored
    team: list[tuple[str, str]]
    last_touch: dict[str, Any] | None
    as_of: date


@dataclass(frozen=True)
class DueItem:
    account: Account
    kind: str
    due: date
    days_left: int
    health: HealthScore | None


class Keepwell:
    """The application's use cases over one book and one configuration."""

    def __init__(self, book: Book, config: KeepwellConfig, *, drafts: DraftStore | None = None) -> None:
        self.book = book
        self.config = config
        self.journal = Journal(book.engine)
        self.teamwork = Teamwork(book, self.journal, drafts or NoStore(), config)
        self._peers: dict[date, tuple[datetime, Peers]] = {}

    # import and scoring -------------------------------------------------------------------------

    def import_file(self, kind: str, path: Path, *, dry_run: bool = False) -> ImportReport:
        return import_csv(self.book.engine, kind, path, dry_run=dry_run)

    def _score_all(self, as_of: date) -> tuple[list[tuple[Account, HealthScore]], Peers]:
        """Every account scored from its data, in memory: (account, score) pairs and the peers."""
        cfg = self.config.health
        inputs = self.book.health_inputs(as_of, cfg)
        scores, peers = score_book(inputs, cfg, as_of)
        return [(i.account, s) for i, s in zip(inputs, scores, strict=True)], peers

    def score(self, as_of: date) -> ScoreSummary:
        """Score every account and store the day's snapshots (re-running replaces them)."""
        started = time.perf_counter()
        run = score_and_store(self.book, self.config.health, as_of)
        self._peers.pop(as_of, None)
        return ScoreSummary(
            as_of, run.customers, run.bands, run.danger, run.forgotten, time.perf_counter() - started,
        )

    def book_health(self, as_of: date) -> list[Scored]:
        """Every account with its health on a day: the stored scores if `score` ran, else computed."""
        stored = self.book.stored_health(as_of)  # one query: accounts, the day's and previous scores
        if stored is not None:
            return stored
        pairs, _ = self._score_all(as_of)
        previous = self.book.previous_scores(as_of)
        return [
            Scored(a, dataclasses.replace(s, previous_score=previous.get(a.pk))) for a, s in pairs
        ]

    def _peers_for(self, as_of: date, conn: Connection) -> Peers:
        """The day's peer distribution: from the stored run (cached while it is current), or live."""
        computed = conn.execute(RUN_COMPUTED_AT, {"as_of": as_of}).scalar()
        if computed is not None:
            cached = self._peers.get(as_of)
            if cached is not None and cached[0] == computed:
                return cached[1]
            peers = self.book.run_peers(as_of, self.config.health.danger_quantile)
            if peers is not None:
                self._peers[as_of] = (computed, peers)
                return peers
        return self._score_all(as_of)[1]

    # reports ------------------------------------------------------------------------------------

    def health(self, query: str, as_of: date) -> HealthCard:
        """One account's health, computed now from its data, against the day's peers."""
        with self.book.engine.connect() as conn:
            account = self.book.resolve(query, conn)
            peers = self._peers_for(as_of, conn)
            inputs = self.book.account_inputs(account, as_of, self.config.health, conn)
            previous = self.book.previous_scores(as_of, [account.pk], conn).get(account.pk)
            team = self.book.team(account.pk, conn)
            touch = self.book.latest_touch(account.pk, as_of, conn)
        score = score_account(inputs, self.config.health, as_of, peers, previous)
        return HealthCard(Scored(account, score), team, touch, as_of)

    def _segment(self, expr: str | None) -> Any:
        try:
            return parse_segment(expr)
        except SegmentError as exc:
            raise BadInput(str(exc)) from None

    def accounts(self, as_of: date, segment: str | None = None, *, everyone: bool = False) -> list[Scored]:
        """Customers on `as_of` (or every account) matching a segment, lowest health first."""
        return self._select(self.book_health(as_of), as_of, segment, everyone=everyone)

    def _select(self, book: list[Scored], as_of: date, segment: str | None, *,
                everyone: bool = False, ordered: bool = True) -> list[Scored]:
        seg = self._segment(segment)
        rows = [s for s in book if everyone or s.account.is_customer_on(as_of)]
        if seg.predicates:
            rows = [s for s in rows if seg.matches(s.account, s.health, as_of)]
        if ordered:
            rows.sort(key=lambda s: (s.health.score, s.account.name.casefold()))
        return rows

    def risk(self, as_of: date, segment: str | None = None) -> list[Scored]:
        """Customers at risk, most MRR first (see `is_at_risk`)."""
        rows = [s for s in self.accounts(as_of, segment) if is_at_risk(s.health)]
        rows.sort(key=lambda s: (-(s.account.mrr or 0), s.health.score, s.account.name.casefold()))
        return rows

    def my_accounts(self, as_of: date, user_id: str, email: str | None) -> list[Scored]:
        """Customers this person owns (by email) or whose team they are on (by Slack id or email)."""
        pks = self.journal.accounts_of([m for m in (user_id, email) if m])
        return [
            s for s in self.accounts(as_of)
            if s.account.pk in pks or (email and (s.account.owner_email or "").lower() == email)
        ]

    def digest(self, as_of: date, segment: str | None = None, since: date | None = None) -> Digest:
        """The portfolio digest; with `since` (the last digest's day), retention and movers since then.

        From stored scores it reads lean: no drivers but for the few at-risk accounts it lists, only
        band and zones for the day before, and the accounts once for everything. A million
        short-lived objects and no cycles: no garbage collection meanwhile (`bot.collector`), and
        they are all gone, in `_digest`'s frame, before the collector is back (else its first young
        collection would walk them all: 80 ms at 100,000 accounts).
        """
        with collector.paused():
            return self._digest(as_of, segment, since)

    def _digest(self, as_of: date, segment: str | None, since: date | None) -> Digest:
        stored = self.book.stored_health(as_of, drivers=False, previous=False)
        everyone = stored if stored is not None else self.book_health(as_of)
        rows = self._select(everyone, as_of, segment, ordered=False)  # in the book's (id) order
        previous = self.book.states(since) if since is not None else None
        start = since + timedelta(days=1) if since else as_of - timedelta(days=29)
        report = self.retention(min(start, as_of), as_of, [s.account for s in everyone])
        digest = build_digest([(s.account, s.health) for s in rows], as_of, report, previous=previous,
                              since=since, renewal_days=self.config.reviews.renewal_within_days)
        if stored is not None:  # the drivers of the accounts it names, for their reasons
            found = self.book.drivers_of(as_of, [a.pk for a, _ in digest.at_risk])
            digest = dataclasses.replace(digest, at_risk=tuple(
                (a, dataclasses.replace(h, drivers=found.get(a.pk, ()))) for a, h in digest.at_risk))
        from bot.nudges import Nudges  # the reminder and alert rules (they build on this module)

        return Nudges(self).digest_extras(digest, [s.account for s in rows], min(start, as_of))

    def retention_trend(self, as_of: date, months: int = 6) -> list[tuple[str, float | None, float | None]]:
        """GRR and NRR for each of the last `months` calendar months (the current one up to `as_of`)."""
        out = []
        first = as_of.replace(day=1)
        for back in range(months - 1, -1, -1):
            year, month = divmod(first.year * 12 + first.month - 1 - back, 12)
            start = date(year, month + 1, 1)
            end = min(as_of, (start + timedelta(days=32)).replace(day=1) - timedelta(days=1))
            r = self.retention(start, end)
            out.append((start.strftime("%b %Y"), r.grr_pct, r.nrr_pct))
        return out

    def retention(self, start: date, end: date, accounts: Sequence[Account] | None = None) -> Retention:
        """CONTRACT §5 over the whole book (`accounts`, when the caller has read them already)."""
        if end < start:
            raise BadInput(f"the window ends {end}, before it starts {start}: give the earlier day first")
        history = self.book.mrr_on_months(revenue_months(start, end))  # not every month of every account
        return retention(self.book.accounts() if accounts is None else accounts, start, end, history)

    def cohorts(self, start: date, end: date) -> list[Cohort]:
        if end < start:
            raise BadInput(f"the window ends {end}, before it starts {start}: give the earlier day first")
        return cohorts(self.book.accounts(), start, end)

    def reviews(self, as_of: date, within: int) -> list[DueItem]:
        """Account reviews (on their tier's cadence; overdue ones too) and renewals coming due within
        `within` days, soonest first."""
        from bot.nudges import Nudges  # the cadence rules (they build on this module)

        if within < 0:
            raise BadInput("--within must be 0 or more days")
        health = {s.account.pk: s.health for s in self.book_health(as_of)}
        accounts = self.book.accounts()
        due = [DueItem(d.account, "review", d.due, d.days_left, health.get(d.account.pk))
               for d in Nudges(self).due_reminders(as_of, accounts, remind_days_before=within)
               if d.kind == "review"]
        for a in accounts:
            if not a.is_customer_on(as_of) or a.renewal_date is None:
                continue
            days = (a.renewal_date - as_of).days
            if 0 <= days <= within:
                due.append(DueItem(a, "renewal", a.renewal_date, days, health.get(a.pk)))
        due.sort(key=lambda d: (d.due, d.kind, -(d.account.mrr or 0)))
        return due
