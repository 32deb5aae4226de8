"""Which reviews, renewals, alerts and surveys are due: pure rules over values, no clock, no I/O.

Each thing due carries a stable `subject` (what in the account it is about); with its kind, rule and
account it names one episode, so the scheduler can keep it to one message however often it looks.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from bot.core.model import Account, HealthScore


@dataclass(frozen=True)
class Due:
    """A review or renewal the account team should be reminded of now."""

    kind: str  # review | renewal
    rule: str  # the review kind ("qbr") or the renewal offset ("90d")
    account: Account
    due: date
    days_left: int  # negative: overdue

    @property
    def subject(self) -> str:
        return self.due.isoformat()


def next_review(account: Account, last_review: date | None, cadence_days: int | None) -> date | None:
    """When the account's next review falls due: a cadence after the last one (or the start)."""
    if cadence_days is None:
        return None
    return (last_review or account.start_date) + timedelta(days=cadence_days)


def reviews_due(
    accounts: Iterable[Account], last_reviews: Mapping[int, date], as_of: date,
    cadence_for: Callable[[str | None], int | None], remind_days_before: int, limit: int | None = None,
) -> list[Due]:
    """Customers whose review falls due within `remind_days_before` days (or is overdue), soonest
    first, then most MRR, then in the accounts' order; only the first `limit` when given (a digest
    lists ten of the 26,000 a 100k book has due, and builds only those)."""
    found: list[tuple[date, Decimal | int, int, Account]] = []
    cadences: dict[str | None, int | None] = {}  # per tier: a book has a handful
    for i, a in enumerate(accounts):
        if not a.is_customer_on(as_of):
            continue
        if a.tier not in cadences:
            cadences[a.tier] = cadence_for(a.tier)
        due = next_review(a, last_reviews.get(a.pk), cadences[a.tier])
        if due is not None and (due - as_of).days <= remind_days_before:
            found.append((due, -(a.mrr or 0), i, a))  # i: ties keep the accounts' order
    chosen = sorted(found) if limit is None else heapq.nsmallest(limit, found)
    return [Due("review", "qbr", a, due, (due - as_of).days) for due, _, _, a in chosen]


def renewal_offset(days_left: int, offsets: Sequence[int]) -> int | None:
    """The reminder a renewal `days_left` away is at: the nearest offset it has reached.

    With offsets 90, 60, 30, 7: 85 days left is the 90-day reminder; 59 is the 60-day one. A bot that
    was down at 90 days still reminds at 85, and never sends the 90-day one after the 60-day one.
    """
    if days_left < 0:
        return None
    nearest = None
    for offset in offsets:  # most renewals are further off than every offset: one comparison each
        if days_left <= offset and (nearest is None or offset < nearest):
            nearest = offset
    return nearest


def renewals_due(accounts: Iterable[Account], as_of: date, offsets: Sequence[int]) -> list[Due]:
    out = []
    for a in accounts:
        if not a.is_customer_on(as_of) or a.renewal_date is None:
            continue
        days = (a.renewal_date - as_of).days
        offset = renewal_offset(days, offsets)
        if offset is not None:
            out.append(Due("renewal", f"{offset}d", a, a.renewal_date, days))
    return sorted(out, key=lambda d: (d.due, -(d.account.mrr or 0)))


# alerts -----------------------------------------------------------------------------------------

ALERT_RULES = ("danger_zone", "health_drop", "forgotten_zone", "invoice_overdue", "nps_detractor")


@dataclass(frozen=True)
class Condition:
    """An alert rule that holds for an account today."""

    rule: str
    account: Account
    subject: str  # '' for a state of the account; the NPS answer for a detractor
    detail: str


@dataclass(frozen=True)
class AlertRules:
    danger_zone: bool = True
    forgotten_zone: bool = True
    health_drop_points: int = 15  # 0: off
    health_drop_days: int = 7
    invoice_overdue_days: int = 30  # 0: off
    nps_detractor_max: int = 6  # -1: off


@dataclass(frozen=True)
class Overdue:
    invoice_id: str
    amount: Decimal
    days: int  # days past its due date


@dataclass(frozen=True)
class Answer:
    email: str
    day: date
    score: int
    comment: str | None


def alert_conditions(
    rows: Iterable[tuple[Account, HealthScore]],
    as_of: date,
    rules: AlertRules,
    *,
    earlier: Mapping[int, int],  # score `health_drop_days` ago, by account pk
    overdue: Mapping[int, Overdue],  # the oldest unpaid invoice past due, by account pk
    answers: Mapping[int, Sequence[Answer]],  # recent NPS answers, by account pk
) -> list[Condition]:
    """Every alert rule holding today, for customers."""
    out: list[Condition] = []
    for a, h in rows:
        if not a.is_customer_on(as_of):
            continue
        if rules.danger_zone and h.danger_zone:
            out.append(Condition("danger_zone", a, "",
                                 f"engagement in the bottom of its peers; health {h.score}"))
        if rules.forgotten_zone and h.forgotten_zone:
            out.append(Condition("forgotten_zone", a, "", "no product use in the last 30 days"))
        before = earlier.get(a.pk)
        if rules.health_drop_points and before is not None and before - h.score >= rules.health_drop_points:
            out.append(Condition("health_drop", a, "", f"health {before} → {h.score} "
                                                       f"in {rules.health_drop_days} days"))
        late = overdue.get(a.pk)
        if rules.invoice_overdue_days and late is not None and late.days >= rules.invoice_overdue_days:
            out.append(Condition("invoice_overdue", a, "", f"invoice {late.invoice_id} ({late.amount}) "
                                                           f"is {late.days} days overdue"))
        if rules.nps_detractor_max >= 0:
            for ans in answers.get(a.pk, ()):
                if ans.score <= rules.nps_detractor_max:
                    said = f": “{ans.comment}”" if ans.comment else ""
                    who = ans.email or "the account"
                    out.append(Condition("nps_detractor", a, f"{ans.email}:{ans.day.isoformat()}",
                                         f"NPS {ans.score} from {who} on {ans.day}{said}"))
    return out


# surveys ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SurveyEvent:
    """A touchpoint after which the account's contacts should be asked for feedback."""

    trigger: str  # onboarding | qbr | ticket | renewal
    account: Account
    subject: str  # what happened: the ticket id, the review's day …
    day: date
    detail: str


def onboarding_events(accounts: Iterable[Account], since: date, as_of: date, days: int) -> list[SurveyEvent]:
    """Customers whose onboarding ended (`days` after their start) in (since, as_of]."""
    out = []
    for a in accounts:
        if a.start_date is None or not a.is_customer_on(as_of):
            continue
        ended = a.start_date + timedelta(days=days)
        if since < ended <= as_of:
            out.append(SurveyEvent("onboarding", a, ended.isoformat(), ended, f"onboarding ended on {ended}"))
    return out


def renewal_events(accounts: Iterable[Account], since: date, as_of: date) -> list[SurveyEvent]:
    """Customers whose renewal date passed in (since, as_of] and who are still customers."""
    return [
        SurveyEvent("renewal", a, a.renewal_date.isoformat(), a.renewal_date, f"renewed on {a.renewal_date}")
        for a in accounts
        if a.renewal_date is not None and since < a.renewal_date <= as_of and a.is_customer_on(as_of)
    ]
