"""Survey triggers: after onboarding, a review, a closed ticket or a renewal, an NPS survey plan for
the account's owner to review (never sent by itself), with a per-contact cooldown.

Each triggering event is a `survey` nudge (so it triggers once, however often the job runs), and
an account's plan for a day has a fixed id (so a rerun after a crash finds it instead of making
another). The job then tells the owner, exactly once, through the scheduler's claims.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select, update

from bot.core.cadence import SurveyEvent, onboarding_events, renewal_events
from bot.core.model import Account
from bot.drafts import Drafting, Plan
from bot.nudges import NU, Nudges, _day
from bot.services import Keepwell
from bot.store import RV, TO, T, _insert_ignore

WHY = {"onboarding": "onboarding is over", "qbr": "after the account review",
       "ticket": "after a closed ticket", "renewal": "after the renewal"}


@dataclass(frozen=True)
class SurveyPlan:
    """A plan waiting for its owner, with the nudges (events) it answers."""

    account: Account
    plan: Plan
    why: str
    keys: tuple[str, ...]
    round: int


class Surveys:
    def __init__(self, service: Keepwell) -> None:
        self.service = service
        self.cfg = service.config.surveys
        self.engine = service.book.engine

    def events(self, as_of: date) -> list[SurveyEvent]:
        """Touchpoints in the last `lookback_days` that call for a survey."""
        since = as_of - timedelta(days=self.cfg.lookback_days)
        accounts = self.service.book.accounts()
        by_pk = {a.pk: a for a in accounts}
        out: list[SurveyEvent] = []
        if "onboarding" in self.cfg.after:
            out += onboarding_events(accounts, since, as_of, self.cfg.onboarding_days)
        if "renewal" in self.cfg.after:
            out += renewal_events(accounts, since, as_of)
        with self.engine.connect() as conn:
            if "qbr" in self.cfg.after:
                reviews = conn.execute(select(RV.c.account_pk, RV.c.done_on)
                                       .where(RV.c.done_on > since, RV.c.done_on <= as_of))
                meetings = conn.execute(select(TO.c.account_pk, TO.c.day)
                                        .where(TO.c.kind == "qbr", TO.c.day > since, TO.c.day <= as_of))
                days = {(pk, _day(d)) for pk, d in [*reviews, *meetings]}
                out += [SurveyEvent("qbr", by_pk[pk], day.isoformat(), day, f"account review on {day}")
                        for pk, day in sorted(days) if day is not None and pk in by_pk]
            if "ticket" in self.cfg.after:
                start = datetime.combine(since + timedelta(days=1), time(), tzinfo=UTC)
                end = datetime.combine(as_of + timedelta(days=1), time(), tzinfo=UTC)
                tickets = conn.execute(select(T.c.account_pk, T.c.ticket_id, T.c.closed_at)
                                       .where(T.c.closed_at >= start, T.c.closed_at < end))
                out += [SurveyEvent("ticket", by_pk[pk], tid, closed.date(), f"ticket {tid} closed")
                        for pk, tid, closed in tickets if pk in by_pk]
        return [e for e in out if e.account.is_customer_on(as_of)]

    def due(self, as_of: date) -> list[SurveyPlan]:
        """Record new events, then one plan per account with events not yet announced."""
        with self.engine.begin() as conn:
            for e in self.events(as_of):
                _insert_ignore(conn, NU, Nudges._row(
                    f"survey:{e.trigger}:{e.account.pk}:{e.subject}", "survey", e.trigger, e.account.pk,
                    e.subject, as_of, e.day, e.detail), ["key"])
            rows = conn.execute(select(NU).where(NU.c.kind == "survey", NU.c.state == "open", NU.c.posts == 0)
                                .order_by(NU.c.account_pk, NU.c.due)).all()
        grouped = defaultdict(list)
        for r in rows:
            grouped[r.account_pk].append(r)
        accounts = {a.pk: a for a in self.service.book.accounts(list(grouped))} if grouped else {}
        drafting = Drafting(self.service)
        out = []
        for pk, events in grouped.items():
            account = accounts[pk]
            plan = drafting.plan(self.cfg.template, as_of=as_of, account=account.account_id,
                                 author="keepwell:survey", plan_id=f"survey-{pk}-{as_of.isoformat()}",
                                 roles=self.cfg.roles,
                                 cooldown_days=self.cfg.cooldown_days)
            keys = tuple(r.key for r in events)
            why = "; ".join(dict.fromkeys(f"{WHY[r.rule]} ({r.detail})" for r in events))
            if not plan.drafts:  # nobody to ask (cooldown, do-not-contact): nothing to announce
                self.close(keys, plan.plan_id, as_of)
                continue
            out.append(SurveyPlan(account, plan, why, keys, 0))
        return out

    def close(self, keys: tuple[str, ...], plan_id: str, as_of: date) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(NU).where(NU.c.key.in_(keys))
                         .values(state="done", posts=NU.c.posts + 1, closed_on=as_of, detail=plan_id))
