"""Reminders and alerts as episodes: what is due today, kept in the `nudges` table so that each
episode is posted once (and again only when someone snoozed it), whatever the schedule does.

- Reminders: a review falling due on its tier's cadence, a renewal at each offset (90, 60, 30, 7 days).
  One episode per account and due date (and offset); marking it done, or the due date moving,
  ends it.
- Alerts: one episode per account and rule while the condition lasts; when it clears the episode
  closes, and the next time it holds is a new episode. The first alerts run records the conditions
  that already hold without posting them (a baseline), so installing Keepwell is not a flood.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, update

from bot.core.cadence import (
    AlertRules,
    Answer,
    Condition,
    Due,
    Overdue,
    alert_conditions,
    renewals_due,
    reviews_due,
)
from bot.core.digest import Digest
from bot.core.model import Account, HealthScore
from bot.db import models as m
from bot.errors import BadInput
from bot.services import Keepwell
from bot.store import RV, TO, I, N, S, _insert_ignore

NU = m.table_of(m.Nudge)
LIVE = ("open", "acknowledged", "baseline")  # episodes not yet over
ACTIONS = {"done": "done", "acknowledge": "acknowledged", "snooze": "open"}


def _day(value: Any) -> date | None:
    """A date from the database (SQLite returns aggregates of dates as text)."""
    return date.fromisoformat(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class Outgoing:
    """One nudge to post now; `round` counts earlier posts (a snoozed nudge comes back as round 1…)."""

    key: str
    kind: str
    rule: str
    account: Account
    detail: str | None
    due: date | None
    round: int
    health: HealthScore | None = None


@dataclass(frozen=True)
class Acted:
    key: str
    kind: str
    account: Account
    state: str
    changed: bool  # False: someone had already done it
    until: date | None = None


class Nudges:
    def __init__(self, service: Keepwell) -> None:
        self.service = service
        self.engine = service.book.engine
        self.reviews_cfg = service.config.reviews
        self.alerts_cfg = service.config.alerts

    # reads ----------------------------------------------------------------------------------------

    def last_reviews(self, conn: Connection, as_of: date) -> dict[int, date]:
        """Each account's latest review: marked done in Slack, or a meeting note of kind `qbr`."""
        out: dict[int, date] = {}
        marked = select(RV.c.account_pk, func.max(RV.c.done_on)).where(RV.c.done_on <= as_of)
        met = select(TO.c.account_pk, func.max(TO.c.day)).where(TO.c.kind == "qbr", TO.c.day <= as_of)
        for query, column in ((marked, RV.c.account_pk), (met, TO.c.account_pk)):
            for pk, day in conn.execute(query.group_by(column)):
                if (d := _day(day)) is not None and d > out.get(pk, date.min):
                    out[pk] = d
        return out

    def best_scores(self, conn: Connection, since: date, before: date) -> dict[int, int]:
        """Each account's highest stored score in [since, before): what a drop is measured from."""
        rows = conn.execute(select(S.c.account_pk, func.max(S.c.score))
                            .where(S.c.as_of >= since, S.c.as_of < before).group_by(S.c.account_pk))
        return {pk: score for pk, score in rows}

    def overdue(self, conn: Connection, as_of: date) -> dict[int, Overdue]:
        """The oldest invoice of each account unpaid past its due date."""
        out: dict[int, Overdue] = {}
        rows = conn.execute(
            select(I.c.account_pk, I.c.invoice_id, I.c.amount, I.c.due_date)
            .where(I.c.due_date < as_of, or_(I.c.paid_date.is_(None), I.c.paid_date > as_of))
            .order_by(I.c.due_date)
        )
        for pk, invoice_id, amount, due in rows:
            if pk not in out:
                out[pk] = Overdue(invoice_id, Decimal(amount), (as_of - due).days)
        return out

    def answers(self, conn: Connection, since: date, as_of: date) -> dict[int, list[Answer]]:
        out: dict[int, list[Answer]] = defaultdict(list)
        rows = conn.execute(select(N.c.account_pk, N.c.email, N.c.day, N.c.score, N.c.comment)
                            .where(N.c.day > since, N.c.day <= as_of))
        for pk, email, day, score, comment in rows:
            out[pk].append(Answer(email, day, score, comment))
        return out

    def get(self, key: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(NU).where(NU.c.key == key)).first()
        return dict(row._mapping) if row else None

    def digest_extras(
        self, digest: Digest, accounts: Sequence[Account], since: date, top: int = 10
    ) -> Digest:
        """The digest's reviews coming due, recent detractors and overdue invoices, for its accounts."""
        as_of, cfg = digest.as_of, self.alerts_cfg
        pks = {a.pk for a in accounts}
        by_pk = {a.pk: a for a in accounts}
        with self.engine.connect() as conn:
            last = self.last_reviews(conn, as_of)
        reviews = reviews_due(accounts, last, as_of, self.reviews_cfg.cadence_for,
                              self.reviews_cfg.remind_days_before, limit=top)
        with self.engine.connect() as conn:
            answers = self.answers(conn, since - timedelta(days=1), as_of)
            overdue = self.overdue(conn, as_of)
        detractors = sorted(((by_pk[pk], a) for pk, found in answers.items() if pk in pks for a in found
                             if a.score <= cfg.nps_detractor_max), key=lambda p: (p[1].score, p[1].day))
        late = sorted(((by_pk[pk], o) for pk, o in overdue.items()
                       if pk in pks and o.days >= max(cfg.invoice_overdue_days, 1)), key=lambda p: -p[1].days)
        return dataclasses.replace(
            digest, reviews_due=tuple((d.account, d.due) for d in reviews),
            detractors=tuple(detractors[:top]), overdue=tuple(late[:top]))

    # reminders -----------------------------------------------------------------------------------

    def due_reminders(self, as_of: date, accounts: Sequence[Account] | None = None, *,
                      remind_days_before: int | None = None) -> list[Due]:
        """Reviews and renewals the account teams should hear about today."""
        cfg = self.reviews_cfg
        accounts = self.service.book.accounts() if accounts is None else accounts
        ahead = cfg.remind_days_before if remind_days_before is None else remind_days_before
        with self.engine.connect() as conn:
            last = self.last_reviews(conn, as_of)
        return (reviews_due(accounts, last, as_of, cfg.cadence_for, ahead)
                + renewals_due(accounts, as_of, cfg.renewal_offsets))

    def reminders(self, as_of: date) -> list[Outgoing]:
        """Open today's reminder episodes, end those no longer due, and say what to post."""
        wanted = {f"{d.kind}:{d.rule}:{d.account.pk}:{d.subject}": d for d in self.due_reminders(as_of)}
        details = {k: (f"review due {d.due}" if d.kind == "review" else f"renewal on {d.due}")
                   for k, d in wanted.items()}
        rows = [self._row(k, d.kind, d.rule, d.account.pk, d.subject, as_of, d.due, details[k])
                for k, d in wanted.items()]
        self._sync(("review", "renewal"), rows, as_of, baseline=False)
        return self._to_post(("review", "renewal"), as_of, self.reviews_cfg.max_per_run)

    # alerts --------------------------------------------------------------------------------------

    def conditions(self, as_of: date) -> list[Condition]:
        cfg = self.alerts_cfg
        rules = AlertRules(cfg.danger_zone, cfg.forgotten_zone, cfg.health_drop_points, cfg.health_drop_days,
                           cfg.invoice_overdue_days, cfg.nps_detractor_max)
        # the rules read scores and zones only: the lean read of the stored day, when there is one
        stored = self.service.book.stored_health(as_of, drivers=False, previous=False)
        book = stored if stored is not None else self.service.book_health(as_of)
        rows = [(s.account, s.health) for s in book]
        with self.engine.connect() as conn:
            earlier = self.best_scores(conn, as_of - timedelta(days=cfg.health_drop_days), as_of)
            overdue = self.overdue(conn, as_of)
            answers = self.answers(conn, as_of - timedelta(days=cfg.nps_recent_days), as_of)
        return alert_conditions(rows, as_of, rules, earlier=earlier, overdue=overdue, answers=answers)

    def alerts(self, as_of: date, *, baseline: bool) -> list[Outgoing]:
        """Open an episode for each new condition, close those that cleared; what to post today.

        With `baseline`, new episodes are recorded as already known and nothing is posted.
        """
        found = self.conditions(as_of)
        rows = [self._row(f"alert:{c.rule}:{c.account.pk}:{c.subject}:{as_of}", "alert", c.rule,
                          c.account.pk, c.subject, as_of, None, c.detail) for c in found]
        self._sync(("alert",), rows, as_of, baseline=baseline, episode=lambda r: r["key"].rsplit(":", 1)[0])
        return self._to_post(("alert",), as_of, self.alerts_cfg.max_per_run)

    # episodes ------------------------------------------------------------------------------------

    @staticmethod
    def _row(key: str, kind: str, rule: str, pk: int, subject: str, as_of: date, due: date | None,
             detail: str) -> dict[str, Any]:
        return {"key": key, "kind": kind, "rule": rule, "account_pk": pk, "subject": subject[:200],
                "opened_on": as_of, "due": due, "detail": detail, "state": "open", "posts": 0}

    def _sync(self, kinds: Sequence[str], rows: Iterable[dict[str, Any]], as_of: date, *, baseline: bool,
              episode: Any = lambda r: r["key"]) -> None:
        """Make the live episodes of `kinds` exactly those in `rows` (matched by `episode`)."""
        wanted = {episode(r): r for r in rows}
        with self.engine.begin() as conn:
            live = {episode(dict(r._mapping)): r.key for r in conn.execute(
                select(NU.c.key).where(NU.c.kind.in_(kinds), NU.c.state.in_(LIVE)))}
            ended = [key for ep, key in live.items() if ep not in wanted]
            for start in range(0, len(ended), 500):
                conn.execute(update(NU).where(NU.c.key.in_(ended[start:start + 500]))
                             .values(state="closed", closed_on=as_of))
            for ep, row in wanted.items():
                if ep not in live:
                    _insert_ignore(conn, NU, {**row, "state": "baseline" if baseline else "open"}, ["key"])

    def _to_post(self, kinds: Sequence[str], as_of: date, limit: int) -> list[Outgoing]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(NU).where(
                    NU.c.kind.in_(kinds), NU.c.state == "open",
                    or_(NU.c.posts == 0, and_(NU.c.snoozed_until.is_not(None), NU.c.snoozed_until <= as_of)),
                ).order_by(NU.c.due.is_(None), NU.c.due, NU.c.opened_on, NU.c.key).limit(limit)
            ).all()
        accounts = {a.pk: a for a in self.service.book.accounts([r.account_pk for r in rows])} if rows else {}
        return [Outgoing(r.key, r.kind, r.rule, accounts[r.account_pk], r.detail, r.due, r.posts)
                for r in rows if r.account_pk in accounts]

    def posted(self, item: Outgoing) -> None:
        """Every destination has it: the round is over (a snooze starts the next one)."""
        with self.engine.begin() as conn:
            conn.execute(update(NU).where(NU.c.key == item.key, NU.c.posts == item.round)
                         .values(posts=item.round + 1, snoozed_until=None))

    def act(self, key: str, action: str, *, user: str, as_of: date) -> Acted:
        """Mark done, acknowledge or snooze (a week, by default) from a button; a second click is a no-op."""
        if action not in ACTIONS:
            raise BadInput(f"unknown action {action!r}")
        row = self.get(key)
        if row is None:
            raise BadInput("that reminder is no longer known (the book was rebuilt?)")
        account = self.service.book.accounts([row["account_pk"]])[0]
        snoozed = row["snoozed_until"] is not None and row["snoozed_until"] > as_of
        if row["state"] != "open" or (action == "snooze" and snoozed):
            return Acted(key, row["kind"], account, row["state"], False, row["snoozed_until"])
        until = as_of + timedelta(days=self.alerts_cfg.snooze_days) if action == "snooze" else None
        values: dict[str, Any] = {"state": ACTIONS[action], "acted_by": user[:320], "acted_on": as_of}
        if action == "snooze":
            values["snoozed_until"] = until
        if action == "done" and row["kind"] == "review":
            self.service.teamwork.review_done(account.account_id, author=user, as_of=as_of,
                                              ref=f"nudge:{key}")
        with self.engine.begin() as conn:
            changed = conn.execute(update(NU).where(NU.c.key == key, NU.c.state == "open")
                                   .values(**values)).rowcount
        return Acted(key, row["kind"], account, ACTIONS[action], bool(changed), until)
