"""The portfolio digest as values: what a CS lead reads first about the whole book."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, NamedTuple

from bot.core.model import Account, HealthScore
from bot.core.retention import Retention

BANDS = ("healthy", "watch", "at_risk")


class State(NamedTuple):
    """What an account's health was on a day, as far as movers are concerned."""

    band: str
    danger_zone: bool
    forgotten_zone: bool


def is_at_risk(h: HealthScore | State) -> bool:
    """The at-risk band, or the watch band together with the danger or forgotten zone.

    A healthy account in the danger zone (bottom quartile of engagement) is flagged on its card but
    not listed as at risk: everything else about it is going well.
    """
    return h.band == "at_risk" or (h.band == "watch" and (h.danger_zone or h.forgotten_zone))


def reasons(h: HealthScore, limit: int = 2) -> str:
    """The few drivers that pull the score down most, each in its shortest form: the forgotten zone
    first, whatever points its cap took (nobody using the product is the reason to call)."""
    worst = sorted((d for d in h.drivers if d.impact < 0 or d.factor == "forgotten_zone"),
                   key=lambda d: d.factor != "forgotten_zone")[:limit]
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
    previous: Mapping[int, HealthScore | State] | None = None,
    since: date | None = None,
) -> Digest:
    """The portfolio on `as_of`; with the previous digest's scores (by account pk), what moved.

    One pass over the book (it is run on 100,000 accounts): counts and sums by band, the at-risk
    list, renewals and the four kinds of movers all at once.
    """
    zero = Decimal(0)
    count = dict.fromkeys(BANDS, 0)
    money = dict.fromkeys(BANDS, zero)
    risky: list[tuple[Account, HealthScore]] = []
    renewals: list[tuple[Account, HealthScore]] = []
    moves: tuple[list[tuple[Account, HealthScore]], ...] = ([], [], [], [])
    scores: list[int] = []
    danger = forgotten = 0
    before = previous or {}
    for a, h in rows:
        if not a.is_customer_on(as_of):
            continue
        scores.append(h.score)
        count[h.band] = count.get(h.band, 0) + 1
        money[h.band] = money.get(h.band, zero) + (a.mrr or zero)
        danger += h.danger_zone
        forgotten += h.forgotten_zone
        risk = is_at_risk(h)
        if risk:
            risky.append((a, h))
        if a.renewal_date is not None and 0 <= (a.renewal_date - as_of).days <= renewal_days:
            renewals.append((a, h))
        old = before.get(a.pk)
        if old is not None:
            was = is_at_risk(old)
            for kind, moved in enumerate((risk and not was, was and not risk,
                                          h.danger_zone and not old.danger_zone,
                                          h.forgotten_zone and not old.forgotten_zone)):
                if moved:
                    moves[kind].append((a, h))

    def by_mrr(pairs: list[tuple[Account, HealthScore]]) -> tuple[tuple[Account, HealthScore], ...]:
        return tuple(sorted(pairs, key=lambda p: -(p[0].mrr or 0)))  # stable: ties keep book order

    risky.sort(key=lambda p: (-(p[0].mrr or 0), p[1].score))
    renewals.sort(key=lambda p: (p[0].renewal_date or as_of, -(p[0].mrr or 0)))
    return Digest(
        as_of=as_of, customers=len(scores), mrr=sum(money.values(), zero),
        bands=tuple(BandLine(b, count[b], money[b]) for b in BANDS),
        since=since if previous else None,
        newly_at_risk=by_mrr(moves[0]), recovered=by_mrr(moves[1]),
        entered_danger=by_mrr(moves[2]), entered_forgotten=by_mrr(moves[3]),
        danger=danger, forgotten=forgotten,
        at_risk=tuple(risky[:top]), at_risk_total=len(risky), renewals=tuple(renewals[:top]),
        retention=retention, scores=tuple(scores),
    )
