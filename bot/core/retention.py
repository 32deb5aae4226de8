"""Retention and churn for a window, exactly as CONTRACT §5 defines them, plus monthly cohorts.

The simple rate (end ÷ start) hides churn behind new business, so a report always carries new and
churned customers beside it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from bot.core.model import Account

ZERO = Decimal("0")


def month_start(day: date) -> date:
    return day.replace(day=1)


def mrr_on(account: Account, day: date, history: Mapping[date, Decimal] | None) -> Decimal:
    """Monthly revenue on a day, from the account's history where it has one.

    The latest history month at or before the day; before the history begins, its first month (the
    nearest known value, rather than today's figure, which would invent expansion or contraction).
    Without history, the account's current mrr.
    """
    if history:
        month = month_start(day)
        exact = history.get(month)
        if exact is not None:  # the usual case: the history was read for exactly these months
            return exact
        best = max((m for m in history if m <= month), default=None)
        return history[best if best is not None else min(history)]
    return account.mrr if account.mrr is not None else ZERO


def revenue_months(start: date, end: date) -> tuple[date, date]:
    """The months whose revenue `retention` reads for [start, end]: the day before it, and its end."""
    return month_start(start - timedelta(days=1)), month_start(end)


def _pct(numerator: Decimal | int, denominator: Decimal | int) -> float | None:
    if not denominator:
        return None
    return round(float(Decimal(numerator) * 100 / Decimal(denominator)), 2)


@dataclass(frozen=True)
class Retention:
    start: date
    end: date
    customers_start: int
    new_customers: int
    churned_customers: int
    customers_end: int
    churned_from_start: int
    mrr_start: Decimal
    expansion_mrr: Decimal
    contraction_mrr: Decimal
    churned_mrr: Decimal
    churn_reasons: tuple[tuple[str, int], ...]

    @property
    def retention_rate_pct(self) -> float | None:
        return _pct(self.customers_end, self.customers_start)

    @property
    def churn_rate_pct(self) -> float | None:
        return _pct(self.churned_from_start, self.customers_start)

    @property
    def grr_pct(self) -> float | None:
        return _pct(self.mrr_start - self.contraction_mrr - self.churned_mrr, self.mrr_start)

    @property
    def nrr_pct(self) -> float | None:
        kept = self.mrr_start + self.expansion_mrr - self.contraction_mrr - self.churned_mrr
        return _pct(kept, self.mrr_start)

    def to_dict(self) -> dict[str, Any]:
        """The keys of CONTRACT §5, money as numbers with two decimals."""
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "customers_start": self.customers_start,
            "new_customers": self.new_customers,
            "churned_customers": self.churned_customers,
            "customers_end": self.customers_end,
            "retention_rate_pct": self.retention_rate_pct,
            "churn_rate_pct": self.churn_rate_pct,
            "mrr_start": float(self.mrr_start),
            "expansion_mrr": float(self.expansion_mrr),
            "contraction_mrr": float(self.contraction_mrr),
            "churned_mrr": float(self.churned_mrr),
            "grr_pct": self.grr_pct,
            "nrr_pct": self.nrr_pct,
            "churn_reasons": [{"reason": r, "count": n} for r, n in self.churn_reasons],
        }


def retention(
    accounts: Sequence[Account],
    start: date,
    end: date,
    mrr_history: Mapping[int, Mapping[date, Decimal]] | None = None,
) -> Retention:
    """Retention over [start, end], both days included."""
    if end < start:
        raise ValueError(f"the window ends ({end}) before it starts ({start})")
    history = mrr_history or {}
    before = start - timedelta(days=1)
    at_start: list[Account] = []
    new: list[Account] = []
    churned: list[Account] = []
    at_end = 0
    for a in accounts:  # one pass: a digest runs this over the whole book
        if a.is_customer_on(before):
            at_start.append(a)
        if start <= a.start_date <= end:
            new.append(a)
        if a.churn_date is not None and start <= a.churn_date <= end:
            churned.append(a)
        at_end += a.is_customer_on(end)
    mrr_start = expansion = contraction = churned_mrr = ZERO
    churned_from_start = 0
    month_before, month_end_ = month_start(before), month_start(end)
    for a in at_start:
        months = history.get(a.pk)
        first = months.get(month_before) if months else None  # the usual case, looked up directly
        if first is None:
            first = mrr_on(a, before, months)
        mrr_start += first
        if a.churn_date is not None and a.churn_date <= end:
            churned_from_start += 1
            churned_mrr += first
            continue
        last = months.get(month_end_) if months else None
        delta = (last if last is not None else mrr_on(a, end, months)) - first
        if delta > 0:
            expansion += delta
        else:
            contraction -= delta
    reasons = Counter((a.churn_reason or "").strip() or "no reason given" for a in churned)
    return Retention(
        start=start, end=end, customers_start=len(at_start), new_customers=len(new),
        churned_customers=len(churned), customers_end=at_end, churned_from_start=churned_from_start,
        mrr_start=mrr_start, expansion_mrr=expansion, contraction_mrr=contraction,
        churned_mrr=churned_mrr,
        churn_reasons=tuple(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
    )


def add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def month_end(day: date) -> date:
    return add_months(day, 1) - timedelta(days=1)


@dataclass(frozen=True)
class Cohort:
    month: date
    size: int
    retained_pct: tuple[float | None, ...]  # at the end of month 0, 1, 2 … after the start month


def cohorts(accounts: Sequence[Account], start: date, end: date) -> list[Cohort]:
    """Accounts grouped by start month; the share still customers at each later month-end."""
    if end < start:
        raise ValueError(f"the window ends ({end}) before it starts ({start})")
    out = []
    month = month_start(start)
    while month <= end:
        members = [a for a in accounts if month_start(a.start_date) == month]
        cells: list[float | None] = []
        offset = 0
        while True:
            checkpoint = month_end(add_months(month, offset))
            if checkpoint > end:
                break
            kept = sum(1 for a in members if a.is_customer_on(checkpoint))
            cells.append(_pct(kept, len(members)))
            offset += 1
        out.append(Cohort(month, len(members), tuple(cells)))
        month = add_months(month, 1)
    return out
