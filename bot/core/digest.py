"""The portfolio digest as values: what a CS lead reads first about the whole book."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from bot.core.model import Account, HealthScore
from bot.core.retention import Retention

BANDS = ("healthy", "watch", "at_risk")


def is_at_risk(h: HealthScore) -> bool:
    """The at-risk band, or the watch band together with the danger or forgotten zone.

    A healthy account in the danger zone (bottom quartile of engagement) is flagged on its card but
    not listed as at risk: everything else about it is going well.
    """
    return h.band == "at_risk" or (h.band == "watch" and (h.danger_zone or h.forgotten_zone))


def reasons(h: HealthScore, limit: int = 2) -> str:
    """The few drivers that pull the score down most, each in its shortest form."""
    worst = [d for d in h.drivers if d.impact < 0 or d.factor == "forgotten_zone"][:limit]
    return "; ".join(d.explanation.split(";")[0].split(" (")[0] for d in worst)


@dataclass(frozen=True)
class BandLine:
    band: str
    accounts: int
    mrr: Decimal


@dataclass(frozen=True)
class Digest:
    as_of: date
    customers: int
    mrr: Decimal
    bands: tuple[BandLine, ...]
    danger: int
    forgotten: int
    at_risk: tuple[tuple[Account, HealthScore], ...]  # most MRR first
    at_risk_total: int
    renewals: tuple[tuple[Account, HealthScore | None], ...]  # soonest first
    retention: Retention
    since: date | None = None  # the previous digest's day, when there was one
    newly_at_risk: tuple[tuple[Account, HealthScore], ...] = ()
    recovered: tuple[tuple[Account, HealthScore], ...] = ()
    entered_danger: tuple[tuple[Account, HealthScore], ...] = ()
    entered_forgotten: tuple[tuple[Account, HealthScore], ...] = ()
    scores: tuple[int, ...] = ()  # every customer's score: the chart's distribution
    reviews_due: tuple[tuple[Account, date], ...] = ()  # account reviews falling due, soonest first
    detractors: tuple[tuple[Account, Any], ...] = ()  # recent NPS answers at or below the threshold
    overdue: tuple[tuple[Account, Any], ...] = ()  # invoices unpaid past the alert threshold


def build_digest(
    rows: Sequence[tuple[Account, HealthScore]],
    as_of: date,
    retention: Retention,
    *,
    top: int = 10,
    renewal_days: int = 90,
    previous: dict[str, HealthScore] | None = None,
    since: date | None = None,
) -> Digest:
    """The portfolio on `as_of`; with the previous digest's scores (by account id), what moved."""
    customers = [(a, h) for a, h in rows if a.is_customer_on(as_of)]
    mrr = sum((a.mrr or Decimal(0) for a, _ in customers), Decimal(0))
    bands = tuple(
        BandLine(b, sum(1 for _, h in customers if h.band == b),
                 sum((a.mrr or Decimal(0) for a, h in customers if h.band == b), Decimal(0)))
        for b in BANDS
    )
    risky = sorted(
        ((a, h) for a, h in customers if is_at_risk(h)),
        key=lambda p: (-(p[0].mrr or 0), p[1].score),
    )
    renewals = sorted(
        (
            (a, h) for a, h in customers
            if a.renewal_date is not None and 0 <= (a.renewal_date - as_of).days <= renewal_days
        ),
        key=lambda p: (p[0].renewal_date, -(p[0].mrr or 0)),
    )
    before = previous or {}
    by_mrr = sorted(customers, key=lambda p: -(p[0].mrr or 0))

    def moved(test: Callable[[HealthScore, HealthScore], bool]) -> tuple[tuple[Account, HealthScore], ...]:
        return tuple((a, h) for a, h in by_mrr if a.account_id in before and test(before[a.account_id], h))

    return Digest(
        as_of=as_of, customers=len(customers), mrr=mrr, bands=bands,
        since=since if previous else None,
        newly_at_risk=moved(lambda old, new: is_at_risk(new) and not is_at_risk(old)),
        recovered=moved(lambda old, new: is_at_risk(old) and not is_at_risk(new)),
        entered_danger=moved(lambda old, new: new.danger_zone and not old.danger_zone),
        entered_forgotten=moved(lambda old, new: new.forgotten_zone and not old.forgotten_zone),
        danger=sum(h.danger_zone for _, h in customers),
        forgotten=sum(h.forgotten_zone for _, h in customers),
        at_risk=tuple(risky[:top]), at_risk_total=len(risky), renewals=tuple(renewals[:top]),
        retention=retention, scores=tuple(h.score for _, h in customers),
    )
